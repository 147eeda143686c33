"""Data generated from a seed: `synthetic` (tests) and `tiny_<data set>` (smoke runs of a study's
tables on images shaped like the real data set's). Both are noisy copies of one prototype per class:
learnable, not trivially separable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rdml.data.base import RawData
from rdml.data.catalog import DATASETS

__all__ = ["load"]

TINY = {"tiny_cifar10": (8, 10), "tiny_cifar100": (4, 100), "tiny_fashion_mnist": (8, 28)}  # per class, seed


def load(name: str, data_dir: str | Path) -> RawData:
    if name == "synthetic":
        return _synthetic()
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
