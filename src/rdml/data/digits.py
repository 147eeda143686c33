"""`digits`, the embedded default: the 1,797 8×8 handwritten digits that ship inside scikit-learn,
read directly from `sklearn/datasets/data/digits.csv.gz`, so nothing is downloaded and the file's
sha256 is recorded. Pixels scaled to [0, 1]."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from rdml.data.base import RawData
from rdml.io import sha256_file

__all__ = ["load"]


def _digits_file() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the digits data set ships with scikit-learn, which is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def load(name: str, data_dir: str | Path) -> RawData:
    path = _digits_file()
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    images = (table[:, :-1] / 16.0).reshape(-1, 1, 8, 8)
    labels = table[:, -1].astype(np.int64)
    return RawData(torch.from_numpy(images), torch.from_numpy(labels), {"sklearn/datasets/data/digits.csv.gz": sha256_file(path)})
