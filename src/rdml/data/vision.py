"""CIFAR-10, CIFAR-100 and Fashion-MNIST: download with checksum, then read the raw files as tensors.

The archives, their addresses and md5 sums are torchvision's own (`torchvision.datasets`), downloaded
and extracted with torchvision's utilities into `<data_dir>/<name>/` (DVC tracks that folder). The
extracted files are then read directly (CIFAR python pickles, Fashion-MNIST idx files) into uint8
tensors, so no per-sample Python runs at training time. `rdml pipeline prepare` also saves those
tensors once as `<data_dir>/<name>/rdml-tensors.pt`, which each training job then loads instead
of decoding the raw files (and importing torchvision) again. Tests build tiny files in the same formats.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rdml.data.base import RawData
from rdml.io import atomic_torch_save
from rdml.keys import ConfigError

__all__ = ["DataError", "Source", "fetch", "md5_file", "load", "prepare", "sources"]

TENSOR_CACHE = "rdml-tensors.pt"
SPLITS = ("x_train", "y_train", "x_test", "y_test")


class DataError(ConfigError):
    """A data file that is missing or corrupt; the message names it and its expected checksum."""


@dataclass(frozen=True)
class Source:
    """Files to fetch (name → md5), where from, and the folder an archive extracts to."""

    urls: tuple[str, ...]  # an address ending in "/" is a folder that each file name is appended to
    files: tuple[tuple[str, str], ...]
    extracted: str | None = None  # a directory the first file, an archive, unpacks into


_SOURCES: dict[str, Source] = {}


def sources() -> dict[str, Source]:
    """torchvision's addresses and checksums, imported on first use: importing torchvision costs
    about 1.5 s, which every job on the other data sets is spared."""
    if not _SOURCES:
        from torchvision import datasets as tv

        _SOURCES.update({
            "cifar10": Source((tv.CIFAR10.url,), ((tv.CIFAR10.filename, tv.CIFAR10.tgz_md5),), tv.CIFAR10.base_folder),
            "cifar100": Source((tv.CIFAR100.url,), ((tv.CIFAR100.filename, tv.CIFAR100.tgz_md5),), tv.CIFAR100.base_folder),
            "fashion_mnist": Source(tuple(tv.FashionMNIST.mirrors), tuple(tv.FashionMNIST.resources)),
        })
    return _SOURCES


def md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, data_dir: str | Path, download: bool = True, source: Source | None = None) -> Path:
    """Make sure `<data_dir>/<name>` holds the verified files of data set `name` (from `source`, else
    from `sources()`); returns that folder."""
    from torchvision.datasets.utils import download_url

    source = source or sources()[name]
    folder = Path(data_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, md5 in source.files:
        path = folder / filename
        if not path.is_file() and download:
            url = source.urls[0] + filename if source.urls[0].endswith("/") else source.urls[0]
            try:
                download_url(url, str(folder), filename, md5=None)
            except Exception as exc:  # network errors come in many kinds
                path.unlink(missing_ok=True)
                raise DataError(f"{path} is missing and could not be downloaded from {url} ({exc}); "
                                f"place the file there by hand (expected md5 {md5})") from None
        if not path.is_file():
            raise DataError(f"{path} is missing (expected md5 {md5}); run `rdml pipeline prepare {name}` to download it")
        actual = md5_file(path)
        if actual != md5:
            raise DataError(f"{path} is corrupt: md5 {actual}, expected {md5}; delete it and download it again")
    if source.extracted and not (folder / source.extracted).is_dir():
        _extract(folder / source.files[0][0], folder, source.extracted)
    return folder


def _extract(archive: Path, folder: Path, extracted: str) -> None:
    """Unpack into a scratch folder, then move `extracted` into place: an interrupted unpacking (thousands
    of photos) never leaves a partial folder that the next fetch would take as complete."""
    from torchvision.datasets.utils import extract_archive

    with tempfile.TemporaryDirectory(dir=folder, prefix=".unpacking-") as scratch:
        extract_archive(str(archive), scratch)
        if not (Path(scratch) / extracted).is_dir():
            raise DataError(f"{archive} does not unpack into a folder {extracted}/; delete it and download it again")
        os.replace(Path(scratch) / extracted, folder / extracted)


def load(name: str, data_dir: str | Path) -> RawData:
    """uint8 images (N, C, H, W) and int64 labels of the official train and test sets, and file hashes.

    The files are verified first; their tensors come from the cache when it was made from these files.
    """
    folder = fetch(name, data_dir, download=False)
    files = _file_hashes(name)
    cache = folder / TENSOR_CACHE
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved.get("files") == files:
            return _raw(*(saved[k] for k in SPLITS), files)
    return _raw(*_decode(name, folder), files)


def _raw(x_train, y_train, x_test, y_test, files) -> RawData:
    return RawData(x_train, y_train, files, x_test, y_test)


def prepare(name: str, data_dir: str | Path) -> Path:
    """Fetch and verify the files, and decode them once into the tensor file that `load` reads from then on."""
    folder = fetch(name, data_dir)
    atomic_torch_save(folder / TENSOR_CACHE, {"files": _file_hashes(name), **dict(zip(SPLITS, _decode(name, folder)))})
    return folder / TENSOR_CACHE


def _file_hashes(name: str) -> dict[str, str]:
    return {f"{name}/{filename}": md5 for filename, md5 in sources()[name].files}


def _decode(name: str, folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if name == "fashion_mnist":
        x_train, y_train = _idx_images(folder / "train-images-idx3-ubyte.gz"), _idx_labels(folder / "train-labels-idx1-ubyte.gz")
        x_test, y_test = _idx_images(folder / "t10k-images-idx3-ubyte.gz"), _idx_labels(folder / "t10k-labels-idx1-ubyte.gz")
        return x_train, y_train, x_test, y_test
    from torchvision import datasets as tv

    root = folder / sources()[name].extracted
    key = b"labels" if name == "cifar10" else b"fine_labels"
    train_files = [f for f, _ in (tv.CIFAR10.train_list if name == "cifar10" else tv.CIFAR100.train_list)]
    test_files = [f for f, _ in (tv.CIFAR10.test_list if name == "cifar10" else tv.CIFAR100.test_list)]
    return (*_cifar(root, train_files, key), *_cifar(root, test_files, key))


def _cifar(root: Path, names: list[str], key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in names:
        with open(root / name, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[key])
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def _idx(path: Path, magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path} is not an idx file of magic {magic} (found {found})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(data[3])]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def _idx_images(path: Path) -> torch.Tensor:
    return torch.from_numpy(_idx(path, 2051).copy()).unsqueeze(1)


def _idx_labels(path: Path) -> torch.Tensor:
    return torch.from_numpy(_idx(path, 2049).astype(np.int64))
