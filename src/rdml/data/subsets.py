"""The limited-data settings of OKDPH (Zhang et al., CVPR 2023; supplement Table 4, "10 %" and "1 %"):
CIFAR-10 and CIFAR-100 trained on the training rows that the official code's stored index lists name,
tested on the full official test sets.

The official code (tianlizhang/OKDPH) keeps the lists as pickles in experiment/sample/<data set>.pkl
(cifar10_10, cifar10_1, cifar100_10, cifar100_1), written by experiment/sample/simple_cifar.ipynb:
for each class, in the order in which the classes first appear in the training set (cells 3, 15:
`label2inds`, a defaultdict filled in row order), `np.random.choice(inds, round(len(inds) · ratio / 100))`
after one `np.random.seed(42)` per list (cells 5, 7, 17, 19). `np.random.choice` draws WITH replacement,
so the lists hold duplicates: cifar10_10 5000 rows, 4739 distinct; cifar10_1 500 / 499; cifar100_10
5000 / 4766; cifar100_1 500 / 498. Training indexes the training set with the list as it is
(src/data/cifar.py L96-99: `self.data[sample_id]`, `np.array(self.targets)[sample_id]`), duplicates
included, in the stored order; the test set is the full one (src/data/data_loader.py L53-71). A
file is a pickled Python list of numpy int64 scalars (`numpy.core.multiarray.scalar`, dtype i8,
protocol 4); it is read here by an unpickler that can build nothing else.

The lists are one shared Resource, `okdph_samples` (rdml.data.catalog.RESOURCES): the four files as the
repository holds them at commit 1f3ff7e (where they were added; the same blobs through a562089), from
raw.githubusercontent.com, each checked against its md5, in `<data_dir>/okdph_samples/`.
`fetch_samples` is its prepare step. The parent CIFAR set is the set's other need, prepared by its own
step; a subset's `prepare` checks its list and writes `<data_dir>/<name>/subset.json` (what the list
holds); `load` reads the parent's verified tensors
through rdml.data.vision.load and keeps the training rows at the stored indices. A run's fingerprint
names the parent's archive and the list's md5.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
from pathlib import Path

import numpy as np
import torch

from rdml.data import vision
from rdml.data.base import RawData
from rdml.data.catalog import DATASETS
from rdml.data.vision import DataError, Source
from rdml.io import atomic_write_json

__all__ = ["OKDPH_COMMIT", "SAMPLES", "PARENTS", "sources", "fetch_samples", "read_indices", "load", "prepare"]

OKDPH_COMMIT = "1f3ff7e8f973ab5c14b7d8fa49690ac36cfec83a"  # "experiment": adds experiment/sample/ (unchanged to a562089)
SAMPLES = "okdph_samples"  # the Resource and its folder under data_dir
PARENTS = {"cifar10_10": "cifar10", "cifar10_1": "cifar10", "cifar100_10": "cifar100", "cifar100_1": "cifar100"}

# md5 of `git show 1f3ff7e:experiment/sample/<file>` (blobs 6ae49aa, bab6cbe, d63b2f2, 23882bf)
_SOURCES: dict[str, Source] = {
    SAMPLES: Source((f"https://raw.githubusercontent.com/tianlizhang/OKDPH/{OKDPH_COMMIT}/experiment/sample/",),
                    (("cifar10_10.pkl", "581ac13f858f170a1bfe1ca2dd0b976b"),
                     ("cifar10_1.pkl", "4963fbdd626303ef48619b3cd56d482b"),
                     ("cifar100_10.pkl", "0570e206d2414d46a7e061a0bd98eb5f"),
                     ("cifar100_1.pkl", "946afb0eb0e8d6372f31298a4ef1fedd"))),
}


def sources() -> dict[str, Source]:
    """Where the index lists come from (the dict itself: tests point it at a local server)."""
    return _SOURCES


def fetch_samples(data_dir: str | Path, download: bool = True) -> tuple[Path, str]:
    """`<data_dir>/okdph_samples/`, holding the four verified index lists (downloaded where missing), and
    the sha256 of the four files' bytes one after the other, in the order of `sources()` (so
    `cat cifar10_10.pkl cifar10_1.pkl cifar100_10.pkl cifar100_1.pkl | sha256sum`)."""
    source = _SOURCES[SAMPLES]
    folder = vision.fetch(SAMPLES, data_dir, download, source=source)
    digest = hashlib.sha256()
    for filename, _ in source.files:
        digest.update((folder / filename).read_bytes())
    return folder, digest.hexdigest()


def _samples_file(name: str, data_dir: str | Path, download: bool) -> tuple[Path, str]:
    """The verified list of data set `name` and its md5 (the other three lists are not read)."""
    source = _SOURCES[SAMPLES]
    filename, md5 = next((f, m) for f, m in source.files if f == f"{name}.pkl")
    folder = vision.fetch(SAMPLES, data_dir, download, source=Source(source.urls, ((filename, md5),)))
    return folder / filename, md5


# What a list may be built from: numpy scalars of a dtype. The module moved in numpy 2
# (numpy.core → numpy._core); the official files name the old one.
_ALLOWED = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype")}


class _IndexUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if name == "dtype":
            return np.dtype
        return importlib.import_module("numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray").scalar


def read_indices(path: Path) -> np.ndarray:
    """The int64 indices a list file holds, in its order: a pickled list of integers (numpy integer
    scalars, as the official files hold, or Python ints); anything else is a DataError naming the file."""
    try:
        with open(path, "rb") as handle:
            values = _IndexUnpickler(handle).load()
    except Exception as exc:  # a restricted unpickler on a malformed file fails in many ways
        raise DataError(f"{path} is not an OKDPH index list (a pickled list of integers): {exc}") from None
    if not isinstance(values, list) or not values or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
        raise DataError(f"{path} is not an OKDPH index list: expected a non-empty list of integers, "
                        f"found {type(values).__name__}")
    return np.asarray(values, dtype=np.int64)


def load(name: str, data_dir: str | Path) -> RawData:
    """The parent CIFAR set's training rows at the stored indices (duplicates kept, in the stored order),
    its full official test set, and the files: the parent's archive and the list, with their md5 sums."""
    return _subset(name, data_dir)[0]


def _subset(name: str, data_dir: str | Path) -> tuple[RawData, Path, np.ndarray]:
    raw = vision.load(PARENTS[name], data_dir)
    path, md5 = _samples_file(name, data_dir, download=False)
    indices = read_indices(path)
    if indices.min() < 0 or indices.max() >= len(raw.y):
        raise DataError(f"{path} (md5 {md5}) names training rows {indices.min()} to {indices.max()}, but "
                        f"{PARENTS[name]} in {data_dir} has {len(raw.y)}")
    rows = torch.from_numpy(indices)
    files = {**raw.files, f"{SAMPLES}/{path.name}": md5}
    return RawData(raw.x[rows], raw.y[rows], files, raw.x_test, raw.y_test), path, indices


def prepare(name: str, data_dir: str | Path) -> Path:
    """Read the parent set (its own prepare step, one of this set's `needs`, has fetched and cached it),
    fetch the list where its own step has not, and write `<data_dir>/<name>/subset.json`: the parent, the
    list's file, md5 and address, and its rows."""
    _samples_file(name, data_dir, download=True)
    raw, path, indices = _subset(name, data_dir)
    summary = {"dataset": name, "parent": PARENTS[name], "samples": f"{SAMPLES}/{path.name}",
               "md5": raw.files[f"{SAMPLES}/{path.name}"], "source": _SOURCES[SAMPLES].urls[0] + path.name,
               "rows": len(indices), "distinct_rows": len(np.unique(indices)), "test_rows": len(raw.y_test),
               "rows_per_class": torch.bincount(raw.y, minlength=DATASETS[name].spec.num_classes).tolist()}
    out = Path(data_dir) / name / "subset.json"
    atomic_write_json(out, summary)
    return out
