"""Market-1501 (Zheng et al., ICCV 2015), DML §4.1's re-identification set, read from the published archive's
layout into rdml's tensor cache.

No public address serves `Market-1501-v15.09.15.zip` any more (torchreid's URL is dead, deep-person-reid
issue #551), so the user puts the archive, or the folder it unpacks into, in `<data_dir>/market1501/`;
`prepare` unpacks the archive (refusing any member path that leaves that folder) and records its sha256 (for a
folder alone, a sha256 of its images' names and sha256 sums), which a run's fingerprint then holds.

The rows are the ones the official DML code (YingZhangDUT/Deep-Mutual-Learning @34a2058) converts
(scripts/format_and_convert_market.sh:21-29), read from the file names as it reads them:
- training: bounding_box_train's images in sorted name order, the identities (the name's first four digits)
  relabelled 0..750 in sorted order (datasets/format_market_train.py:19-39: a sorted glob, a new label at
  each new identity);
- query, gallery (bounding_box_test, every image kept: identity -1 marks a junk image, 0 a distractor,
  datasets/make_filename_list.py:32-48, as rdml.retrieval reads them) and multiquery (gt_bbox, the images a
  query's (identity, camera) pools, rdml.retrieval.pool_queries): sorted names, with each image's identity and
  its camera, the digit after `c` as written (1..6), which the official lists leave out but the Market-1501
  evaluation needs.
Every crop is stored at 160 × 64 (datasets/convert_to_tfrecords.py:15-16) as `misc.imresize(image, [160, 64])`
resized it (L43-44): scipy's imresize (scipy ≤ 1.2, scipy/misc/pilutil.py, `imresize`; scipy/scipy @b7abf2a)
turns a uint8 RGB array into a PIL image unchanged (`bytescale` passes uint8 through) and calls
`im.resize((64, 160), resample=2)` with its default interp='bilinear' (2 = PIL's BILINEAR), which this module
calls directly on each decoded JPEG. The models' square input is made on the device (rdml.data.resize).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from rdml.data.base import Probe, RawData
from rdml.data.vision import TENSOR_CACHE, DataError
from rdml.io import atomic_torch_save, sha256_file

__all__ = ["ARCHIVE", "EXTRACTED", "FOLDERS", "HEIGHT", "WIDTH", "RESIZE", "PUBLISHED_COUNTS", "Entry", "parse_name",
           "list_folder", "list_archive_folder", "counts", "check_counts", "crops", "read", "raw_data",
           "files_hash", "extract", "fetch", "load", "prepare"]

ARCHIVE = "Market-1501-v15.09.15.zip"
EXTRACTED = "Market-1501-v15.09.15"  # the one folder the archive unpacks into
# rdml's split → the archive's folder (scripts/format_and_convert_market.sh:21)
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test", "multiquery": "gt_bbox"}
HEIGHT, WIDTH = 160, 64  # datasets/convert_to_tfrecords.py:15-16
RESIZE = "PIL bilinear (scipy.misc.imresize's default interp)"  # the rule the cache is made with (its layout)
UNPACKED_FROM = ".rdml-unpacked-from"  # in the extracted folder: the sha256 of the archive it came from
JUNK, DISTRACTOR = -1, 0
# What the published archive holds: 12,936 training and 19,732 gallery images, 750 query identities (the
# Market-1501 readme), 751 training identities (DML §4.1), 3,368 query images, and bounding_box_test's 3,819
# junk and 2,798 distractor images. Another count means a damaged or different archive. Read at call time, so
# tests check the check with counts of their own.
PUBLISHED_COUNTS = {
    "train images": 12_936, "train identities": 751, "query images": 3_368, "query identities": 750,
    "gallery images": 19_732, "gallery junk (-1)": 3_819, "gallery distractors (0000)": 2_798,
}
# `0002_c1s1_000451_03.jpg`: identity (four digits, or -1 for junk), camera 1-6, sequence, frame, box
NAME = re.compile(r"^(-1|\d{4})_c([1-6])s(\d)_(\d{6})_(\d{2})\.jpg$")
WORKERS = min(8, os.cpu_count() or 1)  # threads: PIL decodes and resizes without holding the GIL

Entry = tuple[Path, int, int]  # an image file, its identity, its camera


def parse_name(name: str) -> tuple[int, int]:
    """(identity, camera) of a Market-1501 file name; a name that is not of the pattern is a DataError."""
    match = NAME.match(name)
    if match is None:
        raise DataError(f"{name!r} is not a Market-1501 image name (like 0002_c1s1_000451_03.jpg or "
                        f"-1_c1s1_000401_03.jpg: identity, camera 1-6, sequence, frame, box)")
    return int(match[1]), int(match[2])


def list_folder(folder: Path) -> list[Entry]:
    """The `*.jpg` files of `folder` in sorted name order (the official code's sorted glob), each with its
    identity and camera; other files (the archive's Thumbs.db) are skipped, as the glob skips them."""
    if not folder.is_dir():
        raise DataError(f"{folder} is missing: the Market-1501 archive's folder {folder.name}/ holds those images")
    entries = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".jpg"):
            try:
                entries.append((folder / name, *parse_name(name)))
            except DataError as error:
                raise DataError(f"{folder / name}: {error}") from None
    return entries


def list_archive_folder(root: Path) -> dict[str, list[Entry]]:
    """Every split's entries (FOLDERS) under the extracted folder `root`. A junk or distractor image among the
    training or query images is refused: neither is an identity to learn or to search for."""
    listing = {split: list_folder(root / folder) for split, folder in FOLDERS.items()}
    for split in ("train", "query"):
        for path, identity, _ in listing[split]:
            if identity in (JUNK, DISTRACTOR):
                raise DataError(f"{path} is a {'junk' if identity == JUNK else 'distractor'} image in "
                                f"{FOLDERS[split]}/, which holds only identities of 0001 and above")
    return listing


def counts(listing: dict[str, list[Entry]]) -> dict[str, int]:
    """What PUBLISHED_COUNTS states, counted in `listing`."""
    gallery = [identity for _, identity, _ in listing["gallery"]]
    return {
        "train images": len(listing["train"]),
        "train identities": len({identity for _, identity, _ in listing["train"]}),
        "query images": len(listing["query"]),
        "query identities": len({identity for _, identity, _ in listing["query"]}),
        "gallery images": len(gallery),
        "gallery junk (-1)": gallery.count(JUNK),
        "gallery distractors (0000)": gallery.count(DISTRACTOR),
    }


def check_counts(listing: dict[str, list[Entry]], expected: dict[str, int], where: Path | str = "the archive") -> None:
    """A DataError listing every count of `listing` that differs from `expected`."""
    found = counts(listing)
    wrong = [f"{key}: {found[key]:,} found, {value:,} expected" for key, value in expected.items() if found[key] != value]
    if wrong:
        raise DataError(f"{where} does not hold the published Market-1501 images ({'; '.join(wrong)}): a damaged or "
                        f"different archive; put the published {ARCHIVE} beside it, delete it and run "
                        f"`rdml pipeline prepare market1501`")


def crops(paths: Sequence[Path]) -> torch.Tensor:
    """uint8 (N, 3, HEIGHT, WIDTH): each JPEG decoded with PIL (scipy's imread) and resized as
    `misc.imresize(image, [HEIGHT, WIDTH])` resizes it (PIL's bilinear filter; see the module docstring),
    on a few threads, each writing its own row, so the result is the one of a loop in order."""
    from PIL import Image

    x = np.empty((len(paths), 3, HEIGHT, WIDTH), dtype=np.uint8)

    def row(i: int) -> None:
        with open(paths[i], "rb") as handle:
            image = Image.open(handle).convert("RGB")
        x[i] = np.asarray(image.resize((WIDTH, HEIGHT), Image.BILINEAR), dtype=np.uint8).transpose(2, 0, 1)

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(row, range(len(paths))))  # list: re-raises the first error
    return torch.from_numpy(x)


def read(root: Path, expected: dict[str, int] | None) -> dict[str, torch.Tensor]:
    """The tensors of the extracted folder `root` (the cache's entries): x_train, y_train, and per probe split
    `<split>_x`, `<split>_ids`, `<split>_cams`. The counts are checked against `expected` first (None: not
    checked), before any image is decoded."""
    listing = list_archive_folder(root)
    if expected is not None:
        check_counts(listing, expected, root)
    train = listing["train"]
    label = {identity: i for i, identity in enumerate(sorted({identity for _, identity, _ in train}))}
    tensors = {"x_train": crops([path for path, _, _ in train]),
               "y_train": torch.tensor([label[identity] for _, identity, _ in train], dtype=torch.int64)}
    for split in ("query", "gallery", "multiquery"):
        entries = listing[split]
        tensors[f"{split}_x"] = crops([path for path, _, _ in entries])
        tensors[f"{split}_ids"] = torch.tensor([identity for _, identity, _ in entries], dtype=torch.int64)
        tensors[f"{split}_cams"] = torch.tensor([camera for _, _, camera in entries], dtype=torch.int64)
    return tensors


def raw_data(tensors: dict[str, torch.Tensor], files: dict) -> RawData:
    """RawData of `read`'s tensors: a retrieval set has no classification test split, so x_test is empty."""
    probes = {split: Probe(tensors[f"{split}_x"], tensors[f"{split}_ids"], tensors[f"{split}_cams"])
              for split in ("query", "gallery", "multiquery")}
    return RawData(tensors["x_train"], tensors["y_train"], files, torch.empty((0, 3, HEIGHT, WIDTH), dtype=torch.uint8),
                   torch.empty(0, dtype=torch.int64), probes=probes)


def files_hash(folder: Path) -> dict[str, str]:
    """What the data is made from, for the fingerprint: the archive's sha256 where `folder` holds it, else a
    sha256 over the sorted lines `<relative path> <sha256>` of the extracted folder's images (every split's
    `*.jpg`)."""
    archive = folder / ARCHIVE
    if archive.is_file():
        return {f"{folder.name}/{ARCHIVE}": sha256_file(archive)}
    root = folder / EXTRACTED
    if not root.is_dir():
        raise _missing(folder)
    images = sorted(f"{sub}/{name}" for sub in FOLDERS.values() if (root / sub).is_dir()
                    for name in os.listdir(root / sub) if name.endswith(".jpg"))
    with ThreadPoolExecutor(WORKERS) as pool:  # hashlib releases the GIL on large buffers
        sums = list(pool.map(lambda image: sha256_file(root / image), images))
    listing = "".join(f"{image} {digest}\n" for image, digest in zip(images, sums))
    return {f"{folder.name}/{EXTRACTED}/": hashlib.sha256(listing.encode()).hexdigest()}


def _missing(folder: Path) -> DataError:
    return DataError(f"Market-1501 is missing: no public address serves it, so put the published archive {ARCHIVE} "
                     f"(or the folder {EXTRACTED}/ it unpacks into) into {folder}/, then run "
                     f"`rdml pipeline prepare {folder.name}`")


def extract(archive: Path, folder: Path) -> Path:
    """Unpack `archive` into `folder`/EXTRACTED, replacing what is there. Every member path is checked first
    (none absolute, none leaving the folder, no links); the files are unpacked into a scratch folder beside it,
    marked with the archive's sha256 (UNPACKED_FROM) and moved into place at the end, so an interrupted
    unpacking never leaves a partial folder."""
    digest = sha256_file(archive)
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for member in members:
                parts = PurePosixPath(member.filename.replace("\\", "/")).parts
                link = (member.external_attr >> 16) & 0o170000 == 0o120000
                if member.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]) or link:
                    raise DataError(f"{archive} holds {member.filename!r}, a {'link' if link else 'path'} that leaves "
                                    f"the folder it unpacks into; refusing to unpack it")
            if not any(PurePosixPath(m.filename).parts[:1] == (EXTRACTED,) for m in members):
                raise DataError(f"{archive} does not unpack into a folder {EXTRACTED}/, as the published archive does")
            with tempfile.TemporaryDirectory(dir=folder, prefix=".unpacking-") as scratch:
                bundle.extractall(Path(scratch) / "new")
                (Path(scratch) / "new" / EXTRACTED / UNPACKED_FROM).write_text(digest + "\n")
                if (folder / EXTRACTED).exists():
                    os.replace(folder / EXTRACTED, Path(scratch) / "old")  # deleted with the scratch folder
                os.replace(Path(scratch) / "new" / EXTRACTED, folder / EXTRACTED)
    except zipfile.BadZipFile as error:
        raise DataError(f"{archive} is not a readable zip archive ({error}); put the published {ARCHIVE} there") from None
    return folder / EXTRACTED


def _unpacked_from(root: Path) -> str | None:
    """The sha256 of the archive `root` was unpacked from by `extract`; None for a folder unpacked otherwise."""
    marker = root / UNPACKED_FROM
    return marker.read_text().strip() if marker.is_file() else None


def fetch(name: str, data_dir: str | Path, download: bool = True) -> Path:
    """The extracted folder `<data_dir>/<name>/Market-1501-v15.09.15` of the archive the user put beside it
    (there is nothing to download): with download=True, unpacked when it is missing or was unpacked from
    another archive (or by hand: the archive is the data's fingerprint, so its own files are read). The folder
    alone, without the archive, is read as it is. Neither: a DataError saying where to put which file."""
    folder = Path(data_dir) / name
    root, archive = folder / EXTRACTED, folder / ARCHIVE
    if not archive.is_file():
        if root.is_dir():
            return root
        raise _missing(folder)
    if root.is_dir() and _unpacked_from(root) == sha256_file(archive):
        return root
    if not download:
        raise DataError(f"{archive} is not unpacked yet (or {root} holds another archive's files); "
                        f"run `rdml pipeline prepare {name}`")
    return extract(archive, folder)


def _layout() -> dict:
    """What the cached tensors depend on besides the files: a cache of another layout is not used."""
    return {"height": HEIGHT, "width": WIDTH, "resize": RESIZE, "folders": dict(FOLDERS)}


def load(name: str, data_dir: str | Path) -> RawData:
    """Training crops uint8 (N, 3, 160, 64) with identities 0..750, the query, gallery and multiquery probes, and
    the files' hash; from the cache when it was made from these files with this layout, else decoded from the
    extracted folder (counts checked)."""
    folder = Path(data_dir) / name
    files = files_hash(folder)
    cache = folder / TENSOR_CACHE
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved.get("files") == files and saved.get("layout") == _layout():
            return raw_data(saved, files)
    try:
        root = fetch(name, data_dir, download=False)
    except DataError as error:
        raise DataError(f"{cache} is missing or was made from other files or another layout, and {error}") from None
    return raw_data(read(root, PUBLISHED_COUNTS), files)


def prepare(name: str, data_dir: str | Path) -> Path:
    """Unpack the archive where needed, check the counts, and decode the images once into the tensor file that
    `load` reads from then on (written atomically)."""
    root = fetch(name, data_dir)
    folder = root.parent
    tensors = read(root, PUBLISHED_COUNTS)
    atomic_torch_save(folder / TENSOR_CACHE, {"files": files_hash(folder), "layout": _layout(), **tensors})
    return folder / TENSOR_CACHE
