"""Data sets held as tensors, with a fixed recorded split and a fingerprint of the files they come from.

`digits` is the embedded default: the 1,797 8×8 handwritten digits that ship inside scikit-learn
(`sklearn/datasets/data/digits.csv.gz`), read directly from that file so that nothing is downloaded
and the file's sha256 can be recorded. `synthetic` is generated from a seed, for tests. `cifar10`,
`cifar100` and `fashion_mnist` are read from `<data_dir>` (see rdml.vision) with their official
train/test split, as uint8.

Inputs are kept raw (uint8 pixels, or floats in [0, 1]); `Dataset.inputs` turns a batch into
normalised floats on its device, after any augmentation, so no per-sample work happens in Python.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rdml.losses import UNLABELLED
from rdml.vision import VISION_DATASETS
from rdml.vision import read as read_vision

__all__ = ["Dataset", "DATASETS", "load_dataset", "batch_starts", "epoch_batches", "sha256_bytes", "sha256_file"]


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALIZATIONS = ("dataset", "imagenet")


@dataclass
class Dataset:
    """Raw train and test inputs (uint8, or float in [0, 1]), int64 labels, the per-channel
    normalisation, and where the data came from."""

    name: str
    x_train: Tensor
    y_train: Tensor  # UNLABELLED (−1) on rows hidden for semi-supervised training
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    mean: Tensor = None  # per channel, applied by `inputs`
    std: Tensor = None
    fingerprint: dict = field(default_factory=dict)

    def inputs(self, x: Tensor, augment: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """A batch of raw inputs as normalised float32, augmented first if given."""
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if augment is not None:
            x = augment(x)
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of always predicting the most frequent test class: what a crashed model scores."""
        return torch.bincount(self.y_test, minlength=self.num_classes).max().item() / len(self.y_test)

    def to(self, device: torch.device) -> Dataset:
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test", "mean", "std")}
        return Dataset(self.name, **moved, num_classes=self.num_classes, fingerprint=self.fingerprint)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _digits_file() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the digits data set ships with scikit-learn, which is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def _load_digits() -> tuple[np.ndarray, np.ndarray, dict]:
    path = _digits_file()
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    images = (table[:, :-1] / 16.0).reshape(-1, 1, 8, 8)  # pixels in [0, 1]
    return images, table[:, -1].astype(np.int64), {"sklearn/datasets/data/digits.csv.gz": sha256_file(path)}


def _load_synthetic(classes: int = 10, per_class: int = 80, seed: int = 1234) -> tuple[np.ndarray, np.ndarray, dict]:
    """Noisy copies of one random 8×8 prototype per class: learnable, not trivially separable."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(classes, 1, 8, 8)).astype(np.float32)
    labels = np.repeat(np.arange(classes), per_class)
    images = prototypes[labels] + 1.5 * rng.normal(size=(len(labels), 1, 8, 8)).astype(np.float32)
    return images, labels, {"generated": f"synthetic(classes={classes}, per_class={per_class}, seed={seed})"}


def _tiny_images(shape: tuple[int, int, int], classes: int, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """uint8 images shaped like a real data set's, for smoke runs of its studies: noisy class prototypes."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, size=(classes, *shape))
    labels = np.repeat(np.arange(classes), per_class)
    images = np.clip(prototypes[labels] + rng.normal(0, 40, size=(len(labels), *shape)), 0, 255).astype(np.uint8)
    return images, labels, {"generated": f"tiny(shape={shape}, classes={classes}, per_class={per_class}, seed={seed})"}


TABLE_DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray, dict]]] = {
    "digits": _load_digits,
    "synthetic": _load_synthetic,
    "tiny_cifar10": lambda: _tiny_images((3, 32, 32), 10, 8, 10),
    "tiny_cifar100": lambda: _tiny_images((3, 32, 32), 100, 4, 100),
    "tiny_fashion_mnist": lambda: _tiny_images((1, 28, 28), 10, 8, 28),
}
DATASETS = (*TABLE_DATASETS, *VISION_DATASETS)


def load_dataset(name: str, *, split_seed: int, test_fraction: float, labelled_fraction: float = 1.0,
                 data_dir: str | Path = "data", normalize: str = "dataset") -> Dataset:
    """Load `name`, split it, hide labels, and set the normalisation (train statistics or ImageNet's).

    digits and synthetic are split stratified by class from split_seed; the vision sets keep their
    official test set. The labelled rows (labelled_fraction < 1) are chosen per class from split_seed,
    never from the training seed, so every run of a study sees the same data.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    rng = np.random.default_rng(split_seed)
    if name in VISION_DATASETS:
        x_train, y_train, x_test, y_test, files = read_vision(name, data_dir)
        test_mask = np.zeros(0, dtype=bool)
        split = {"split": "official", "train_size": len(y_train), "test_size": len(y_test)}
    else:
        images, labels, files = TABLE_DATASETS[name]()
        test_mask = np.zeros(len(labels), dtype=bool)
        for cls in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == cls))
            test_mask[rows[: int(round(test_fraction * len(rows)))]] = True
        x, y = torch.from_numpy(images), torch.from_numpy(labels)
        x_train, y_train, x_test, y_test = x[~test_mask], y[~test_mask], x[test_mask], y[test_mask]
        split = {"split_seed": split_seed, "test_fraction": test_fraction, "train_size": len(y_train),
                 "test_size": len(y_test)}
    labelled_mask = np.zeros(len(y_train), dtype=bool)
    train_labels = y_train.numpy()
    for cls in np.unique(train_labels):
        rows = rng.permutation(np.flatnonzero(train_labels == cls))
        labelled_mask[rows[: max(1, int(round(labelled_fraction * len(rows))))]] = True
    y_train = torch.where(torch.from_numpy(labelled_mask), y_train, torch.tensor(UNLABELLED))
    split.update({
        "labelled_fraction": labelled_fraction,
        "labelled_size": int(labelled_mask.sum()),
        "sha256": sha256_bytes(test_mask.tobytes() + labelled_mask.tobytes()),
    })
    mean, std = _normalisation(x_train, normalize)
    fingerprint = {
        "files": files,
        "split": split,
        "normalize": normalize,
        "sha256": sha256_bytes(repr((sorted(files.items()), split)).encode()),
    }
    classes = int(max(y_test.max(), y_train.max())) + 1
    return Dataset(name, x_train, y_train, x_test, y_test, classes, mean, std, fingerprint)


def _normalisation(x_train: Tensor, normalize: str) -> tuple[Tensor, Tensor]:
    if normalize == "imagenet":
        if x_train.shape[1] != 3:
            raise ValueError(f"normalize=imagenet needs RGB images, got {x_train.shape[1]} channel(s)")
        return torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    if normalize != "dataset":
        raise ValueError(f"normalize={normalize!r} is not allowed; allowed: {', '.join(NORMALIZATIONS)}")
    pixels = x_train.transpose(0, 1).reshape(x_train.shape[1], -1).double()
    if x_train.dtype == torch.uint8:
        pixels = pixels / 255
    return pixels.mean(1).float(), pixels.std(1).float()


def batch_starts(n_rows: int, batch_size: int) -> list[int]:
    """First row of every batch of an epoch; a last batch of one row joins the one before it."""
    starts = list(range(0, n_rows, batch_size))
    if len(starts) > 1 and n_rows - starts[-1] == 1:
        starts.pop()
    return starts


def epoch_batches(n_rows: int, batch_size: int, *, seed: int, epoch: int) -> Iterator[Tensor]:
    """Row indices of each batch of one epoch, shuffled from (seed, epoch) alone.

    Deriving the order from the epoch number instead of a running generator makes a resumed run see
    exactly the batches an uninterrupted one would. A last batch of one row is merged into the one
    before it, since batch norm cannot train on a single row.
    """
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    starts = batch_starts(n_rows, batch_size)
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else n_rows
        yield order[start:end]
