"""Data generated from a seed: `synthetic` (tests) and `tiny_<data set>` (smoke runs of a study's
tables on images shaped like the real data set's). Both are noisy copies of one prototype per class:
learnable, not trivially separable. The tiny photo sets are PIL photos of varied sizes, put through the
real sets' decoding (rdml.data.photos), with an official test set as theirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rdml.data.base import RawData
from rdml.data.catalog import DATASETS

__all__ = ["load"]

TINY = {"tiny_cifar10": (8, 10), "tiny_cifar100": (4, 100), "tiny_fashion_mnist": (8, 28)}  # per class, seed
TINY_PHOTOS = {"tiny_dtd": ("dtd", 11), "tiny_flowers102": ("flowers102", 12)}  # the real set decoded as, seed
PHOTO_SIDES = (40, 120)  # the range of a tiny photo's height and width, in pixels
PHOTOS_PER_CLASS = (2, 1)  # training, test


def load(name: str, data_dir: str | Path) -> RawData:
    if name == "synthetic":
        return _synthetic()
    if name in TINY_PHOTOS:
        return _tiny_photos(*TINY_PHOTOS[name], DATASETS[name].spec.num_classes)
    per_class, seed = TINY[name]
    spec = DATASETS[name].spec
    return _tiny_images(spec.input_shape, spec.num_classes, per_class, seed)


def _synthetic(classes: int = 10, per_class: int = 80, seed: int = 1234) -> RawData:
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(classes, 1, 8, 8)).astype(np.float32)
    labels = np.repeat(np.arange(classes), per_class)
    images = prototypes[labels] + 1.5 * rng.normal(size=(len(labels), 1, 8, 8)).astype(np.float32)
    files = {"generated": f"synthetic(classes={classes}, per_class={per_class}, seed={seed})"}
    return RawData(torch.from_numpy(images), torch.from_numpy(labels), files)


def _tiny_images(shape: tuple[int, ...], classes: int, per_class: int, seed: int) -> RawData:
    """uint8 images: noisy class prototypes."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, size=(classes, *shape))
    labels = np.repeat(np.arange(classes), per_class)
    images = np.clip(prototypes[labels] + rng.normal(0, 40, size=(len(labels), *shape)), 0, 255).astype(np.uint8)
    files = {"generated": f"tiny(shape={tuple(shape)}, classes={classes}, per_class={per_class}, seed={seed})"}
    return RawData(torch.from_numpy(images), torch.from_numpy(labels), files)


def _tiny_photos(real: str, seed: int, classes: int) -> RawData:
    """RGB photos of random height and width: a 4×4 colour pattern per class stretched over the photo,
    plus noise; decoded as the real set `real` is, so the training rows are cached at its size with each
    photo's reference (H, W), and the test rows are the test transform's 224-px output."""
    from PIL import Image

    from rdml.data import photos

    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, size=(classes, 4, 4, 3), dtype=np.uint8)

    def photo(cls: int) -> Image.Image:
        height, width = (int(v) for v in rng.integers(PHOTO_SIDES[0], PHOTO_SIDES[1] + 1, size=2))
        base = np.asarray(Image.fromarray(prototypes[cls]).resize((width, height), Image.NEAREST), dtype=np.float64)
        return Image.fromarray(np.clip(base + rng.normal(0, 40, size=base.shape), 0, 255).astype(np.uint8))

    y, y_test = (np.repeat(np.arange(classes), n) for n in PHOTOS_PER_CLASS)
    train, test = [photo(c) for c in y], [photo(c) for c in y_test]
    x, sizes = photos.train_rows(real, train)
    files = {"generated": f"tiny_photos(as={real}, classes={classes}, per_class={PHOTOS_PER_CLASS}, sides={PHOTO_SIDES}, "
                          f"seed={seed}, cache_side={photos.CACHE_SIDE})"}
    return RawData(x, torch.from_numpy(y), files, photos.test_rows(test), torch.from_numpy(y_test), sizes)
