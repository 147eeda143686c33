"""Data sets held as tensors, with a fixed recorded split and a fingerprint of the files they come from.

`digits` is the embedded default: the 1,797 8×8 handwritten digits that ship inside scikit-learn
(`sklearn/datasets/data/digits.csv.gz`), read directly from that file so that nothing is downloaded
and the file's sha256 can be recorded. `synthetic` is generated from a seed, for tests.
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

__all__ = ["Dataset", "DATASETS", "load_dataset", "epoch_batches", "sha256_bytes", "sha256_file"]


@dataclass
class Dataset:
    """Train and test tensors (float32 inputs, int64 labels) plus where they came from."""

    name: str
    x_train: Tensor
    y_train: Tensor  # UNLABELLED (−1) on rows hidden for semi-supervised training
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    fingerprint: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of always predicting the most frequent test class: what a crashed model scores."""
        return torch.bincount(self.y_test, minlength=self.num_classes).max().item() / len(self.y_test)

    def to(self, device: torch.device) -> Dataset:
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
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
    images = (table[:, :-1] / 16.0).reshape(-1, 1, 8, 8)
    return images, table[:, -1].astype(np.int64), {"sklearn/datasets/data/digits.csv.gz": sha256_file(path)}


def _load_synthetic(classes: int = 10, per_class: int = 80, seed: int = 1234) -> tuple[np.ndarray, np.ndarray, dict]:
    """Noisy copies of one random 8×8 prototype per class: learnable, not trivially separable."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(classes, 1, 8, 8)).astype(np.float32)
    labels = np.repeat(np.arange(classes), per_class)
    images = prototypes[labels] + 1.5 * rng.normal(size=(len(labels), 1, 8, 8)).astype(np.float32)
    return images, labels, {"generated": f"synthetic(classes={classes}, per_class={per_class}, seed={seed})"}


DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray, dict]]] = {
    "digits": _load_digits,
    "synthetic": _load_synthetic,
}


def load_dataset(name: str, *, split_seed: int, test_fraction: float, labelled_fraction: float = 1.0) -> Dataset:
    """Load `name`, split it stratified by class, standardise with train statistics, hide labels.

    The split, and the choice of labelled rows when labelled_fraction < 1, depend only on split_seed,
    never on the training seed, so every run of a study sees the same data.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(sorted(DATASETS))}")
    images, labels, files = DATASETS[name]()
    rng = np.random.default_rng(split_seed)
    test_mask = np.zeros(len(labels), dtype=bool)
    labelled_mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        n_test = int(round(test_fraction * len(rows)))
        test_mask[rows[:n_test]] = True
        train_rows = rows[n_test:]
        labelled_mask[train_rows[: max(1, int(round(labelled_fraction * len(train_rows))))]] = True
    train_idx, test_idx = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    mean, std = images[train_idx].mean(), images[train_idx].std()
    x = torch.from_numpy((images - mean) / std)
    y = torch.from_numpy(labels)
    y_train = torch.where(torch.from_numpy(labelled_mask[train_idx]), y[train_idx], torch.tensor(UNLABELLED))
    split = {
        "split_seed": split_seed,
        "test_fraction": test_fraction,
        "labelled_fraction": labelled_fraction,
        "train_size": len(train_idx),
        "test_size": len(test_idx),
        "labelled_size": int((y_train != UNLABELLED).sum()),
        "sha256": sha256_bytes(test_mask.tobytes() + labelled_mask.tobytes()),
    }
    fingerprint = {
        "files": files,
        "split": split,
        "sha256": sha256_bytes(repr((sorted(files.items()), split)).encode()),
    }
    return Dataset(name, x[train_idx], y_train, x[test_idx], y[test_idx], int(labels.max()) + 1, fingerprint)


def epoch_batches(n_rows: int, batch_size: int, *, seed: int, epoch: int) -> Iterator[Tensor]:
    """Row indices of each batch of one epoch, shuffled from (seed, epoch) alone.

    Deriving the order from the epoch number instead of a running generator makes a resumed run see
    exactly the batches an uninterrupted one would. A last batch of one row is merged into the one
    before it, since batch norm cannot train on a single row.
    """
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    starts = list(range(0, n_rows, batch_size))
    if len(starts) > 1 and n_rows - starts[-1] == 1:
        starts.pop()
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else n_rows
        yield order[start:end]
