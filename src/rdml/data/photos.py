"""DTD and Flowers102, the RDML paper's transfer-learning photos (Table 2): download with checksum, then
decode once into tensors of one size.

The archives, addresses and md5 sums are torchvision's own (`torchvision.datasets.DTD`, `Flowers102`),
fetched with rdml.data.vision's download, checksum and extract code into `<data_dir>/<name>/`, where
torchvision's classes find them too. The splits are the released RDML code's: DTD partition 1's train
and test lists, Flowers102's trnid and tstid (the validation lists are unused by both). The photos come
in many sizes, so `prepare` decodes them once, a photo at a time with PIL as torchvision's loader does,
into `<data_dir>/<name>/rdml-tensors.pt`:
- test rows: the released test transform's output, torchvision's Resize(256) then CenterCrop(224), uint8;
- training rows: the photo the released training crop applies to (DTD: the photo itself; Flowers102: the
  photo after Resize(256)), resized to CACHE_SIDE × CACHE_SIDE, and that photo's (H, W) in `sizes`.
Training then augments whole batches on the device (rdml.data.augment), with no per-sample Python.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rdml.data import vision
from rdml.data.base import RawData
from rdml.data.vision import TENSOR_CACHE, DataError, Source
from rdml.io import atomic_torch_save

__all__ = ["CACHE_SIDE", "TEST_RESIZE", "TEST_CROP", "sources", "fetch", "load", "prepare", "train_rows", "test_rows"]

# The batched augmentation samples crop boxes in the reference photo's geometry, from `sizes`, and maps them
# onto this cache, so only the resolution it resamples from differs from torchvision's per-image path.
# 448 is twice the models' 224-px input and above Flowers102's 256-px short side; DTD photos (300 to 640 px a
# side) larger than that give their smallest crops from fewer pixels than the photo has.
CACHE_SIDE = 448
TEST_RESIZE, TEST_CROP = 256, 224  # the released test transform: Resize(256), CenterCrop(224), ToTensor
TRAIN_RESIZE = {"dtd": None, "flowers102": 256}  # the short side a training photo is resized to before its crop
SPLITS = ("x_train", "y_train", "x_test", "y_test", "sizes")
WORKERS = min(8, os.cpu_count() or 1)  # threads: PIL decodes and resizes without holding the GIL

_SOURCES: dict[str, Source] = {}


def sources() -> dict[str, Source]:
    """torchvision's addresses and checksums, imported on first use (as rdml.data.vision.sources)."""
    if not _SOURCES:
        from torchvision import datasets as tv

        _SOURCES.update({
            "dtd": Source((tv.DTD._URL,), ((tv.DTD._URL.rsplit("/", 1)[1], tv.DTD._MD5),), "dtd"),
            "flowers102": Source((tv.Flowers102._download_url_prefix,), tuple(tv.Flowers102._file_dict.values()), "jpg"),
        })
    return _SOURCES


def fetch(name: str, data_dir: str | Path, download: bool = True) -> Path:
    """Make sure `<data_dir>/<name>` holds the verified, extracted files of `name`; returns that folder."""
    return vision.fetch(name, data_dir, download, source=sources()[name])


def load(name: str, data_dir: str | Path) -> RawData:
    """Training rows uint8 (N, 3, CACHE_SIDE, CACHE_SIDE) with their photos' (H, W), test rows uint8
    (M, 3, 224, 224), int64 labels, and file hashes. The files are verified first; the tensors come from
    the cache when it was made from these files with this layout."""
    folder = fetch(name, data_dir, download=False)
    files = _file_hashes(name)
    cache = folder / TENSOR_CACHE
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved.get("files") == files and saved.get("layout") == _layout():
            return _raw(*(saved[k] for k in SPLITS), files)
    return _raw(*_decode(name, folder), files)


def prepare(name: str, data_dir: str | Path) -> Path:
    """Fetch and verify the files, and decode them once into the tensor file that `load` reads from then on."""
    folder = fetch(name, data_dir)
    tensors = dict(zip(SPLITS, _decode(name, folder)))
    atomic_torch_save(folder / TENSOR_CACHE, {"files": _file_hashes(name), "layout": _layout(), **tensors})
    return folder / TENSOR_CACHE


def _raw(x_train, y_train, x_test, y_test, sizes, files) -> RawData:
    return RawData(x_train, y_train, files, x_test, y_test, sizes)


def _layout() -> dict:
    """What the cached tensors depend on besides the files: a cache of another layout is not used."""
    return {"cache_side": CACHE_SIDE, "test": [TEST_RESIZE, TEST_CROP], "train_resize": dict(TRAIN_RESIZE)}


def _file_hashes(name: str) -> dict[str, str]:
    return {f"{name}/{filename}": md5 for filename, md5 in sources()[name].files}


def train_rows(name: str, photos: Sequence[Path | Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 3, CACHE_SIDE, CACHE_SIDE): each photo's reference (the photo `name`'s training crop
    applies to) resized to a square, bilinear with antialias (torchvision's Resize((S, S)) on PIL), and
    int64 (N, 2): the reference's (H, W), in which the augmentation draws its crop boxes."""
    from torchvision import transforms

    first = transforms.Resize(TRAIN_RESIZE[name]) if TRAIN_RESIZE[name] else (lambda image: image)
    square = transforms.Resize((CACHE_SIDE, CACHE_SIDE))
    x = np.empty((len(photos), 3, CACHE_SIDE, CACHE_SIDE), dtype=np.uint8)
    sizes = np.empty((len(photos), 2), dtype=np.int64)

    def row(i: int) -> None:
        reference = first(_rgb(photos[i]))
        sizes[i] = reference.height, reference.width
        x[i] = _pixels(square(reference))

    _each(row, len(photos))
    return torch.from_numpy(x), torch.from_numpy(sizes)


def test_rows(photos: Sequence[Path | Image.Image]) -> torch.Tensor:
    """uint8 (M, 3, 224, 224): the released test transform, torchvision's Resize(256) and CenterCrop(224)."""
    from torchvision import transforms

    transform = transforms.Compose([transforms.Resize(TEST_RESIZE), transforms.CenterCrop(TEST_CROP)])
    x = np.empty((len(photos), 3, TEST_CROP, TEST_CROP), dtype=np.uint8)

    def row(i: int) -> None:
        x[i] = _pixels(transform(_rgb(photos[i])))

    _each(row, len(photos))
    return torch.from_numpy(x)


def _each(row, n: int) -> None:
    """row(i) for i < n on a few threads; each writes its own row of a numpy array (no torch thread pools
    inside threads), so the result is the one of a loop in order."""
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(row, range(n)))  # list: re-raises the first error


def _rgb(photo: Path | Image.Image) -> Image.Image:
    """An RGB PIL image, opened as torchvision's pil_loader opens it."""
    if isinstance(photo, Image.Image):
        return photo.convert("RGB")
    with open(photo, "rb") as handle:
        return Image.open(handle).convert("RGB")


def _pixels(image: Image.Image) -> np.ndarray:
    """(3, H, W) uint8, as torchvision's PILToTensor."""
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def _decode(name: str, folder: Path) -> tuple[torch.Tensor, ...]:
    (train, y_train), (test, y_test) = _dtd(folder) if name == "dtd" else _flowers(folder)
    x_train, sizes = train_rows(name, train)
    return x_train, y_train, test_rows(test), y_test, sizes


Split = tuple[list[Path], torch.Tensor]  # photo files and their 0-based labels, in torchvision's order


def _dtd(folder: Path) -> tuple[Split, Split]:
    """Partition 1's train and test lists (lines `class/file.jpg`); labels index the sorted class names."""
    lists = {}
    for split in ("train", "test"):
        with open(folder / "dtd" / "labels" / f"{split}1.txt") as handle:
            lists[split] = [line.strip().split("/") for line in handle if line.strip()]
    classes = sorted({cls for cls, _ in lists["train"]})
    if {cls for cls, _ in lists["test"]} != set(classes):
        raise DataError(f"{folder / 'dtd/labels/test1.txt'} names other classes than train1.txt does; "
                        f"delete {folder / 'dtd'} to extract it again")
    index = {cls: i for i, cls in enumerate(classes)}
    return tuple(([folder / "dtd" / "images" / cls / file for cls, file in lists[split]],
                  torch.tensor([index[cls] for cls, _ in lists[split]], dtype=torch.int64))
                 for split in ("train", "test"))


def _flowers(folder: Path) -> tuple[Split, Split]:
    """setid.mat's trnid and tstid (1-based image ids), imagelabels.mat's labels (1 to 102) less one."""
    from scipy.io import loadmat

    labels = np.atleast_1d(loadmat(folder / "imagelabels.mat", squeeze_me=True)["labels"]).astype(np.int64) - 1
    sets = loadmat(folder / "setid.mat", squeeze_me=True)
    splits = []
    for key in ("trnid", "tstid"):
        ids = np.atleast_1d(sets[key]).astype(np.int64)
        splits.append(([folder / "jpg" / f"image_{i:05d}.jpg" for i in ids.tolist()], torch.from_numpy(labels[ids - 1])))
    return tuple(splits)
