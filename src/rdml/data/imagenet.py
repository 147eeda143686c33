"""ImageNet (ILSVRC2012) as a streamed data set: the user's three archives, read once into WebDataset shards on local
disk, and decoded and augmented per sample by DataLoader workers as TF-slim trained MobileNet v1 and Inception v1.

Where the files go (text for the README and docs/data.md). ImageNet has no public download: an account at
image-net.org gives the ILSVRC2012 archives. Put these three files, as downloaded, into `data/imagenet/`:

    data/imagenet/ILSVRC2012_img_train.tar       147,897,477,120 bytes (138 GiB), md5 1d675b47d978889d74fa0da5fadfb00e
    data/imagenet/ILSVRC2012_img_val.tar           6,744,924,160 bytes (6.3 GiB), md5 29b22e2961454d5413ddabcf34fc5622
    data/imagenet/ILSVRC2012_devkit_t12.tar.gz     about 2.5 MB,                  md5 fa75699e90414af021442c21a62c3abf

then run `rdml pipeline prepare imagenet` (the pipeline runs it before any ImageNet job). It reads the archives as
they are (no unpacking into 1.33 M loose files), checks every member name and count, and writes the JPEG bytes
unchanged into `data/imagenet/shards/` (about 156 GB more on the same disk: keep it local, as a network disk
starves the decoding workers): 1,282 training and 50 validation shards in WebDataset's tar format plus an index
for random access. The archives' md5 sums are torchvision's published ones (torchvision/datasets/imagenet.py
ARCHIVE_META); their sha256 sums are the data's fingerprint and are recorded with the shards, so shards are never
used with a replaced archive (an archive that changes makes `load` refuse until `prepare` runs again). Once
prepared, the archives may be moved away: the shards' record then stands for them.

What is read (torchvision's `ImageNet` reading, torchvision/datasets/imagenet.py parse_devkit_archive,
parse_train_archive, parse_val_archive): the classes are the devkit's `data/meta.mat` synsets with
num_children == 0 (1,000 leaves), labelled 0..999 in the sorted order of their WordNet ids (ImageFolder's sorted
class folders; slim's labels are the same order + 1); training images are `n01440764_<k>.JPEG` in the per-class
tars `n01440764.tar` of the training archive, labelled by their tar; validation image `ILSVRC2012_val_%08d.JPEG` k
is labelled by line k of `data/ILSVRC2012_validation_ground_truth.txt`, an ILSVRC2012_ID that meta.mat maps to its
WNID. The devkit's ids are not in WNID order (id 1 is n02119789, kit fox), so id − 1 is not the label. rdml's models have 1,000 outputs; TF-slim's ImageNet checkpoints
(MobileNet v1, Inception v1) have 1,001, output 0 being a background class (slim's datasets/imagenet.py
`_NUM_CLASSES = 1001`, labels_offset), so a slim checkpoint's logits map to rdml's as logits[:, 1:]. The
validation set is rdml's `test` split (official_split: slim and the papers report on it).

Shards (`prepare`): samples in sorted key order (`n01440764_10026`, `ILSVRC2012_val_00000001`), each as
`<key>.cls` (the label, decimal ASCII) and `<key>.jpg` (the archive's bytes), PER_SHARD samples a shard, tar
headers fixed (ustar, mtime 0, uid/gid 0, mode 0644), so the same archives give the same shard bytes and any
WebDataset reader reads them. `<split>-index.npy` holds (shard, byte offset, size, label) per sample, which the
workers read with os.pread. Everything is written under a temporary folder, recorded in `rdml-shards.json` (the
archives' sha256, each shard's size and sha256), and renamed into place whole.

JPEG shards rather than packed pre-resized uint8 (measured in benchmarks/imagenet_data.md): slim's crop takes
5 % to 100 % of the original photo and resizes it to 224, which a photo stored pre-resized (short side 256: 337 GB
for ImageNet, 2.3x the JPEGs) no longer holds, and packed at the photos' own size (~400 × 350 × 3) ImageNet would
take ~540 GB against 148 GB of JPEGs; reading and decoding are about half of a worker's ~4 ms per sample on the
2-core AMD EPYC measured. Workers return float32: slim resizes and colours in float and clips only at the end,
so uint8 between the steps would move pixels by up to 1/510.

Training inputs (`train_transform`, `draw_train`): slim's `inception_preprocessing.preprocess_for_train` with
fast_mode=True and no bounding box, as `train_image_classifier.py` ran it for mobilenet_v1 and inception_v1
(preprocessing_factory maps both to inception_preprocessing): convert to float (x · (1/255) in float32),
`distorted_bounding_box_crop` (tf.image.sample_distorted_bounding_box, reproduced by
`sample_distorted_bounding_box`), bilinear resize to 224 × 224 (TF 1's align_corners=False kernel, `resize_bilinear`),
random left-right flip, `distort_color` with one of 4 orderings drawn per image (fast mode: ordering 0 is
brightness then saturation, 1-3 saturation then brightness; see COLOR_ORDERINGS), clip to [0, 1], then
(x − 0.5) · 2. Evaluation (`eval_transform`): `preprocess_for_eval`: central_crop(0.875), bilinear resize to
224 × 224, (x − 0.5) · 2. Every draw of a sample comes from numpy's generator seeded with
SeedSequence((seed, epoch, row)), and all float work is element-wise float32 numpy (no reductions, no threads),
so a batch is bit-identical whatever the number of workers and wherever an epoch is resumed.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import fcntl
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import Tensor

from rdml.data.base import batch_starts, epoch_batches
from rdml.data.catalog import DATASETS, DataSpec
from rdml.data.vision import DataError
from rdml.io import atomic_write_json, sha256_bytes
from rdml.keys import ConfigError, one_of

__all__ = ["ARCHIVES", "PUBLISHED_MD5", "PUBLISHED_SIZES", "PUBLISHED_COUNTS", "TINY", "PER_SHARD", "SHARDS", "MARKER", "INDEX_DTYPE",
           "COLOR_ORDERINGS", "OUTPUT", "CENTRAL_FRACTION", "TrainDraws", "expected_counts", "archive_hashes",
           "read_devkit", "prepare", "read_marker", "load", "decode", "generate_random_crop",
           "sample_distorted_bounding_box", "central_crop_box", "resize_bilinear", "adjust_saturation", "draw_train",
           "train_transform", "eval_transform", "sample_generator", "StreamedDataset", "StreamBatch",
           "write_tiny_archives"]

ARCHIVES = {"train": "ILSVRC2012_img_train.tar", "val": "ILSVRC2012_img_val.tar", "devkit": "ILSVRC2012_devkit_t12.tar.gz"}
# torchvision/datasets/imagenet.py ARCHIVE_META: the md5 sums of the archives image-net.org serves
PUBLISHED_MD5 = {"train": "1d675b47d978889d74fa0da5fadfb00e", "val": "29b22e2961454d5413ddabcf34fc5622",
                 "devkit": "fa75699e90414af021442c21a62c3abf"}
PUBLISHED_SIZES = {"train": 147_897_477_120, "val": 6_744_924_160}  # bytes: checked before the long read
PUBLISHED_COUNTS = {"classes": 1_000, "train": 1_281_167, "val": 50_000}
DEVKIT = "ILSVRC2012_devkit_t12"
META = f"{DEVKIT}/data/meta.mat"
GROUND_TRUTH = f"{DEVKIT}/data/ILSVRC2012_validation_ground_truth.txt"
SYNSET_FIELDS = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
                 "num_train_images")  # the devkit's synsets struct, in its order
WNID = re.compile(r"^n\d{8}$")
CLASS_TAR = re.compile(r"^(n\d{8})\.tar$")
TRAIN_IMAGE = re.compile(r"^(n\d{8})_(\d+)\.JPEG$")
VAL_IMAGE = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$")
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG; one training file is a PNG (n02105855_2933.JPEG)

# The generated stand-in: the real archive formats at a few KB (write_tiny_archives). Per-class training counts
# differ, as ImageNet's (732 to 1,300) do.
TINY = {"classes": 5, "train_per_class": (12, 11, 13, 12, 10), "val": 10, "seed": 24, "heights": (40, 150),
        "widths": (40, 150), "noise": 30.0, "extra_synsets": 3}

SHARDS = "shards"
MARKER = "rdml-shards.json"
HASHES = ".rdml-archive-hashes.json"  # sha256 and md5 of each archive with the size and mtime they were taken at
PER_SHARD = 1000
LAYOUT = {"format": "webdataset", "members": ["<key>.cls", "<key>.jpg"], "tar": "ustar, mtime 0, uid/gid 0, mode 0644",
          "version": 1}
SPLIT_FILES = {"train": "train", "test": "val"}  # rdml's split -> the shards' prefix (ILSVRC's name)
INDEX_DTYPE = np.dtype([("shard", "<u4"), ("offset", "<u8"), ("size", "<u4"), ("label", "<i4")])

OUTPUT = (224, 224)  # mobilenet_v1 / inception_v1 default_image_size
CHUNK = 64  # samples a decoding worker returns at a time (3 × 224 × 224 float32: 38 MB)
MAX_OPEN = 128  # shard files a process keeps open
CENTRAL_FRACTION = 0.875  # preprocess_for_eval's central_fraction
# distorted_bounding_box_crop's defaults (inception_preprocessing.py L99-104)
MIN_OBJECT_COVERED, ASPECT_RATIO_RANGE, AREA_RANGE, MAX_ATTEMPTS = 0.1, (0.75, 1.33), (0.05, 1.0), 100
MAX_BRIGHTNESS_DELTA, SATURATION_RANGE = 32.0 / 255.0, (0.5, 1.5)
# Slim as MobileNet v1 (2017) and Inception v1 were trained drew one of 4 colour orderings per image even in fast
# mode (`apply_with_random_selector(..., num_cases=4)`, tensorflow/models @9a4998a slim/preprocessing/
# inception_preprocessing.py L224-228; still so in research/slim in 2018, tensorflow/models issue #5809); fast mode
# makes ordering 0 brightness then saturation and 1, 2, 3 saturation then brightness (L64-70). Later slim
# (research/slim @417e1f5) draws 1 ordering in fast mode, i.e. always brightness first.
COLOR_ORDERINGS = 4
AUGMENTATIONS = ("inception", "none")  # the imagenet_photos kind's (rdml.data.catalog)

_F32 = np.float32


# ----------------------------------------------------------------------------------------------- archives


def expected_counts(name: str) -> dict[str, int]:
    """Classes, training and validation images that `name`'s archives must hold."""
    if name == "imagenet":
        return dict(PUBLISHED_COUNTS)
    if name == "tiny_imagenet":
        return {"classes": TINY["classes"], "train": sum(TINY["train_per_class"]), "val": TINY["val"]}
    raise ConfigError(f"dataset={name!r} is not read by rdml.data.imagenet; allowed: imagenet, tiny_imagenet")


def _missing(folder: Path, archive: str) -> DataError:
    return DataError(f"{folder / archive} is missing: ImageNet has no public download, so put the ILSVRC2012 archives "
                     f"{', '.join(ARCHIVES.values())} (from image-net.org, which needs an account) into {folder}/, "
                     f"then run `rdml pipeline prepare {folder.name}`")


class _Stopped(Exception):
    """Hashing given up: the prepare it ran for failed."""


def _hash_file(path: Path, stop: threading.Event | None = None) -> dict:
    """sha256 and md5 of `path` in one read, with the size and mtime they were taken at."""
    before = path.stat()
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(8 << 20), b""):
            if stop is not None and stop.is_set():
                raise _Stopped(path)
            sha.update(chunk)
            md5.update(chunk)
    return {"size": before.st_size, "mtime_ns": before.st_mtime_ns, "sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def archive_hashes(folder: Path, archives: tuple[str, ...] = tuple(ARCHIVES.values()),
                   stop: threading.Event | None = None) -> dict[str, dict]:
    """{archive: {size, mtime_ns, sha256, md5}} of the archives in `folder` that exist. A hash is taken once and kept in
    HASHES beside them with the file's size and mtime; a file whose size or mtime changed is hashed again. `stop`
    set: the hashing gives up."""
    cache_path = folder / HASHES
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except ValueError:
        cache = {}
    found, fresh = {}, {}
    for archive in archives:
        path = folder / archive
        if not path.is_file():
            continue
        stat, known = path.stat(), cache.get(archive) or {}
        if known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns and "sha256" in known:
            found[archive] = known
        else:
            fresh[archive] = path
    with ThreadPoolExecutor(max(1, len(fresh))) as pool:  # hashlib releases the GIL on large buffers
        for archive, result in zip(fresh, pool.map(lambda path: _hash_file(path, stop), fresh.values())):
            found[archive] = result
    if fresh:
        _remember_hashes(folder, {a: found[a] for a in fresh})
    return {archive: found[archive] for archive in archives if archive in found}


def _remember_hashes(folder: Path, hashes: dict[str, dict]) -> None:
    """Add `hashes` to the cache, keeping only those taken of a file that has not changed since."""
    cache_path = folder / HASHES
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except ValueError:
        cache = {}
    for archive, value in hashes.items():
        stat = (folder / archive).stat()
        if (stat.st_size, stat.st_mtime_ns) == (value["size"], value["mtime_ns"]):
            cache[archive] = value
    atomic_write_json(cache_path, cache)


def _check_member(archive: Path, member: tarfile.TarInfo, *, directories: bool = False) -> None:
    """A member that leaves the folder it would unpack into, or is a link or a device, is refused."""
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"{archive} holds {name!r}, a path that leaves the folder it unpacks into; refusing to read it")
    if not (member.isfile() or (directories and member.isdir())):
        raise DataError(f"{archive} holds {name!r}, a {'link' if member.issym() or member.islnk() else 'special file'}"
                        f" where the ILSVRC2012 archive holds {'files and folders' if directories else 'files'} only")


def _members(archive: Path, handle: tarfile.TarFile, pattern: re.Pattern, what: str) -> dict[str, tarfile.TarInfo]:
    """{name: member} of a flat archive whose every member must be a file named as `pattern` (a leading "./", as
    some tar writers store, aside), none twice."""
    members = {}
    for member in handle.getmembers():
        _check_member(archive, member)
        name = member.name[2:] if member.name.startswith("./") else member.name
        if not pattern.match(name):
            raise DataError(f"{archive} holds {member.name!r}, which is not {what}; a damaged or different archive")
        if name in members:
            raise DataError(f"{archive} holds {name!r} twice; a damaged or different archive")
        members[name] = member
    return members


def _open_tar(path: Path, mode: str = "r:") -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"{path} is not a readable tar archive ({error}); put the ILSVRC2012 archive there") from None


def read_devkit(path: Path, classes: int, val: int) -> tuple[list[str], np.ndarray]:
    """The classes' WordNet ids in label order and the validation images' labels (0-based, in image-number order),
    as torchvision's parse_devkit_archive and ImageFolder read them: the classes are meta.mat's synsets with
    num_children == 0, labelled in the sorted order of their WNIDs (ImageFolder's sorted class folders; slim's
    labels are the same order + 1); line k of the ground truth is the ILSVRC2012_ID of ILSVRC2012_val_k, mapped to
    its WNID through meta.mat (idx_to_wnid) and so to its label. The devkit's ids are not in WNID order (id 1 is
    n02119789, kit fox; the sorted first is n01440764, tench), so id − 1 is not the label."""
    import scipy.io

    with _open_tar(path, "r:gz") as handle:
        files = {}
        for member in handle.getmembers():
            _check_member(path, member, directories=True)
            if PurePosixPath(member.name).parts[:1] != (DEVKIT,):
                raise DataError(f"{path} holds {member.name!r} outside {DEVKIT}/, where the devkit's files are")
            if member.name in (META, GROUND_TRUTH):
                files[member.name] = handle.extractfile(member).read()
    for needed in (META, GROUND_TRUTH):
        if needed not in files:
            raise DataError(f"{path} has no {needed}; a damaged or different devkit archive")
    try:
        synsets = scipy.io.loadmat(io.BytesIO(files[META]), squeeze_me=True)["synsets"]
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: {META} is not the devkit's synsets table ({error!r})") from None
    missing = [f for f in ("ILSVRC2012_ID", "WNID", "num_children") if f not in (synsets.dtype.names or ())]
    if missing:
        raise DataError(f"{path}: {META}'s synsets have no field {', '.join(missing)}; fields: {synsets.dtype.names}")
    leaves = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in np.atleast_1d(synsets) if int(s["num_children"]) == 0}
    count = sum(int(s["num_children"]) == 0 for s in np.atleast_1d(synsets))
    if count != classes:
        raise DataError(f"{path}: {META} has {count:,} leaf synsets (num_children == 0), {classes:,} expected")
    if sorted(leaves) != list(range(1, classes + 1)):
        raise DataError(f"{path}: the leaf synsets' ILSVRC2012_IDs are not 1..{classes}, each once")
    wnids = sorted(leaves.values())
    bad = [w for w in wnids if not WNID.match(w)]
    if bad or len(set(wnids)) != classes:
        raise DataError(f"{path}: the leaf synsets' WNIDs are not {classes:,} distinct ids like n01440764"
                        + (f" ({', '.join(bad[:3])})" if bad else ""))
    lines = files[GROUND_TRUTH].decode("ascii", errors="replace").split()
    try:
        truth = np.array([int(line) for line in lines], dtype=np.int64)
    except ValueError:
        raise DataError(f"{path}: {GROUND_TRUTH} holds a line that is not an ILSVRC2012_ID") from None
    if len(truth) != val or (len(truth) and not (1 <= truth.min() and truth.max() <= classes)):
        raise DataError(f"{path}: {GROUND_TRUTH} holds {len(truth):,} ids in [{truth.min() if len(truth) else '-'}, "
                        f"{truth.max() if len(truth) else '-'}]; {val:,} ids in [1, {classes}] expected")
    label_of_id = np.zeros(classes + 1, dtype=np.int64)
    for ilsvrc_id, wnid in leaves.items():
        label_of_id[ilsvrc_id] = wnids.index(wnid)
    return wnids, label_of_id[truth]


def _image_bytes(archive: Path, name: str, data: bytes) -> bytes:
    if not data.startswith(IMAGE_MAGIC):
        raise DataError(f"{archive}: {name} is neither a JPEG nor a PNG (it starts {data[:4]!r})")
    return data


def _train_samples(path: Path, wnids: list[str], expected: int) -> Iterator[tuple[str, int, bytes]]:
    """(key, label, bytes) of every training image, classes in label order, images in sorted name order. The archive
    must hold exactly one `<wnid>.tar` per class, each holding only `<wnid>_<k>.JPEG` files."""
    with _open_tar(path) as outer:
        classes = _members(path, outer, CLASS_TAR, "a per-class tar named like n01440764.tar")
        found, wanted = set(classes), {f"{w}.tar" for w in wnids}
        if found != wanted:
            def some(names: list[str]) -> str:
                return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")

            missing, extra = sorted(wanted - found), sorted(found - wanted)
            raise DataError(f"{path} holds {len(found):,} per-class tars, {len(wanted):,} expected"
                            + (f"; missing {some(missing)}" if missing else "")
                            + (f"; not a devkit class: {some(extra)}" if extra else ""))
        total = 0
        for label, wnid in enumerate(wnids):
            inner_name = f"{path}/{wnid}.tar"
            try:
                inner = tarfile.open(fileobj=outer.extractfile(classes[f"{wnid}.tar"]), mode="r:")
            except tarfile.TarError as error:
                raise DataError(f"{inner_name} is not a readable tar ({error})") from None
            with inner:
                images = _members(Path(inner_name), inner, TRAIN_IMAGE, f"an image of {wnid} named {wnid}_<k>.JPEG")
                for name in sorted(images):
                    if TRAIN_IMAGE.match(name)[1] != wnid:
                        raise DataError(f"{inner_name} holds {name!r}, an image named for another class")
                    total += 1
                    if total > expected:
                        raise DataError(f"{path} holds more than the {expected:,} training images expected")
                    data = inner.extractfile(images[name]).read()
                    yield name[: -len(".JPEG")], label, _image_bytes(Path(inner_name), name, data)
        if total != expected:
            raise DataError(f"{path} holds {total:,} training images, {expected:,} expected; a damaged or different archive")


def _val_samples(path: Path, labels: np.ndarray) -> Iterator[tuple[str, int, bytes]]:
    """(key, label, bytes) of every validation image in image-number order; the archive must hold exactly
    ILSVRC2012_val_00000001.JPEG .. ILSVRC2012_val_<N>.JPEG."""
    with _open_tar(path) as handle:
        images = _members(path, handle, VAL_IMAGE, "a validation image named like ILSVRC2012_val_00000001.JPEG")
        numbers = sorted(int(VAL_IMAGE.match(name)[1]) for name in images)
        if numbers != list(range(1, len(labels) + 1)):
            raise DataError(f"{path} holds {len(numbers):,} validation images"
                            + (f" numbered {numbers[0]}..{numbers[-1]}" if numbers else "")
                            + f"; ILSVRC2012_val_00000001..{len(labels):08d} expected")
        for number in numbers:
            name = f"ILSVRC2012_val_{number:08d}.JPEG"
            data = handle.extractfile(images[name]).read()
            yield name[: -len(".JPEG")], int(labels[number - 1]), _image_bytes(path, name, data)


class _ShardWriter:
    """Samples written as WebDataset tar shards of `per_shard` samples (`<key>.cls`, `<key>.jpg`, fixed headers), with
    each sample's (shard, offset of its JPEG bytes, size, label)."""

    def __init__(self, folder: Path, prefix: str, per_shard: int):
        self.folder, self.prefix, self.per_shard = folder, prefix, per_shard
        self.rows: list[tuple[int, int, int, int]] = []
        self.shards: list[dict] = []
        self.handle = None

    def _header(self, name: str, size: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o644, 0, 0, "", ""
        return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")

    def _write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.position += len(data)

    def _member(self, name: str, data: bytes) -> int:
        """Write a member; returns the offset of its data."""
        self._write(self._header(name, len(data)))
        offset = self.position
        self._write(data)
        self._write(b"\0" * (-len(data) % tarfile.BLOCKSIZE))
        return offset

    def add(self, key: str, label: int, data: bytes) -> None:
        if self.handle is None:
            self.name = f"{self.prefix}-{len(self.shards):06d}.tar"
            self.handle = open(self.folder / (self.name + ".tmp"), "wb")
            self.digest, self.position, self.count = hashlib.sha256(), 0, 0
        self._member(f"{key}.cls", str(label).encode())
        self.rows.append((len(self.shards), self._member(f"{key}.jpg", data), len(data), label))
        self.count += 1
        if self.count == self.per_shard:
            self._close_shard()

    def _close_shard(self) -> None:
        self._write(b"\0" * (2 * tarfile.BLOCKSIZE))  # end of archive, padded to a record as tarfile pads
        self._write(b"\0" * (-self.position % tarfile.RECORDSIZE))
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.folder / (self.name + ".tmp"), self.folder / self.name)
        self.shards.append({"name": self.name, "size": self.position, "sha256": self.digest.hexdigest(),
                            "samples": self.count})
        self.handle = None

    def close(self) -> dict:
        """Finish the last shard and write the index; returns the split's record for the marker."""
        if self.handle is not None:
            self._close_shard()
        index = np.array(self.rows, dtype=INDEX_DTYPE)
        buffer = io.BytesIO()
        np.save(buffer, index, allow_pickle=False)
        (self.folder / f"{self.prefix}-index.npy").write_bytes(buffer.getvalue())
        return {"index": f"{self.prefix}-index.npy", "index_sha256": sha256_bytes(buffer.getvalue()), "samples": len(index),
                "shards": self.shards}


def prepare(name: str, data_dir: str | Path, *, per_shard: int = PER_SHARD, counts: dict[str, int] | None = None) -> Path:
    """Read the user's three archives in `<data_dir>/<name>/` (streamed: no member is unpacked to disk), check every
    member name and the counts, and write the images into `<data_dir>/<name>/shards/` (see the module docstring):
    under a temporary folder, the record (MARKER) written last, renamed into place whole. The archives are hashed
    (sha256 and md5, one read) while the shards are written; an archive whose md5 is not the published one is
    refused before the shards are put in place. `counts` replaces `expected_counts(name)` (classes, train, val) for
    archives of another size (benchmarks/imagenet_data.py). Returns the shards' folder."""
    if isinstance(per_shard, bool) or not isinstance(per_shard, int) or per_shard < 1:
        raise ConfigError(f"per_shard={per_shard!r} must be an integer >= 1 (samples a shard)")
    folder = Path(data_dir) / name
    counts = expected_counts(name) if counts is None else dict(counts)
    with _locked(folder):
        return _prepare(name, folder, per_shard, counts)


@contextmanager
def _locked(folder: Path):
    """One prepare of a folder at a time (an flock on `<folder>/.rdml-prepare.lock`); the scratch folders a killed
    prepare left are removed first."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".rdml-prepare.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for stale in folder.glob(".shards-*"):
                shutil.rmtree(stale, ignore_errors=True)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _prepare(name: str, folder: Path, per_shard: int, counts: dict[str, int]) -> Path:
    for archive in ARCHIVES.values():
        if not (folder / archive).is_file():
            raise _missing(folder, archive)
    if name == "imagenet":  # what can be checked in a moment, before hours of reading
        for part, size in PUBLISHED_SIZES.items():
            if (folder / ARCHIVES[part]).stat().st_size != size:
                raise DataError(f"{folder / ARCHIVES[part]} is {(folder / ARCHIVES[part]).stat().st_size:,} bytes, not the "
                                f"published {size:,}: a partial download or a different archive")
        _check_md5(folder, archive_hashes(folder, (ARCHIVES["devkit"],)), ("devkit",))
    # the shards hold the images' bytes plus 1 KB of headers a sample: about the two image archives' size
    needed = sum((folder / ARCHIVES[part]).stat().st_size for part in ("train", "val")) \
        + 1024 * (counts["train"] + counts["val"])
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DataError(f"{folder} has {free / 1e9:,.1f} GB free; the shards need about {needed / 1e9:,.1f} GB beside the "
                        "archives (the JPEG bytes unchanged); free room on that disk and run prepare again")
    scratch = Path(tempfile.mkdtemp(dir=folder, prefix=".shards-"))
    stop = threading.Event()
    try:
        with ThreadPoolExecutor(1) as pool:
            hashing = pool.submit(archive_hashes, folder, stop=stop)
            try:
                wnids, splits = _write_shards(folder, scratch, counts, per_shard)
            except BaseException:
                stop.set()  # before the pool waits for the hashing thread
                raise
            hashes = hashing.result()
        if name == "imagenet":
            _check_md5(folder, hashes, ("train", "val"))
        marker = {"dataset": name, "layout": LAYOUT, "per_shard": per_shard, "counts": counts, "classes": wnids,
                  "archives": {a: {"sha256": h["sha256"], "md5": h["md5"], "size": h["size"]} for a, h in hashes.items()},
                  "splits": splits, **({"generated": _tiny_description()} if name == "tiny_imagenet" else {})}
        atomic_write_json(scratch / MARKER, marker)
        return _put_in_place(folder, scratch, marker)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_md5(folder: Path, hashes: dict[str, dict], parts: tuple[str, ...]) -> None:
    for part in parts:
        archive = ARCHIVES[part]
        if hashes[archive]["md5"] != PUBLISHED_MD5[part]:
            raise DataError(f"{folder / archive} has md5 {hashes[archive]['md5']}, not the published {PUBLISHED_MD5[part]}: "
                            "a damaged or different archive; put the ILSVRC2012 archive from image-net.org there")


def _write_shards(folder: Path, scratch: Path, counts: dict[str, int], per_shard: int) -> tuple[list[str], dict]:
    """The classes and each split's shards written into `scratch`, from the archives in `folder`."""
    wnids, val_labels = read_devkit(folder / ARCHIVES["devkit"], counts["classes"], counts["val"])
    splits = {}
    for split, part, samples in (("train", "train", _train_samples(folder / ARCHIVES["train"], wnids, counts["train"])),
                                 ("test", "val", _val_samples(folder / ARCHIVES["val"], val_labels))):
        writer = _ShardWriter(scratch, SPLIT_FILES[split], per_shard)
        try:
            for key, label, data in samples:
                writer.add(key, label, data)
        except (tarfile.TarError, EOFError) as error:
            raise DataError(f"{folder / ARCHIVES[part]} cannot be read to its end ({error}): a damaged or truncated "
                            "archive; put the ILSVRC2012 archive there again") from None
        splits[split] = writer.close()
    return wnids, splits


def _put_in_place(folder: Path, scratch: Path, marker: dict) -> Path:
    """Rename the finished shards folder `scratch` to `<folder>/shards`, moving any older one away first; shards already
    there from the same archives and layout (another process prepared them) are kept."""
    target = folder / SHARDS
    try:
        current = read_marker(folder)
    except DataError:
        current = None
    same = ("archives", "layout", "per_shard", "counts", "generated")
    if current is not None and {k: current.get(k) for k in same} == {k: marker.get(k) for k in same}:
        return target
    old = Path(tempfile.mkdtemp(dir=folder, prefix=".shards-old-"))
    try:
        if target.exists():
            os.replace(target, old / SHARDS)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return target


def read_marker(folder: Path) -> dict:
    """The shards' record in `<folder>/shards`, after checking every shard and index file is there at its size."""
    shards = folder / SHARDS
    path = shards / MARKER
    if not path.is_file():
        raise DataError(f"{shards} holds no prepared shards ({MARKER} is missing); put the ILSVRC2012 archives "
                        f"{', '.join(ARCHIVES.values())} into {folder}/ and run `rdml pipeline prepare {folder.name}`")
    marker = json.loads(path.read_text())
    for split in SPLIT_FILES:
        record = marker["splits"][split]
        if not (shards / record["index"]).is_file():
            raise DataError(f"{shards / record['index']} is missing; run `rdml pipeline prepare {folder.name}` again")
        for shard in record["shards"]:
            file = shards / shard["name"]
            if not file.is_file() or file.stat().st_size != shard["size"]:
                raise DataError(f"{file} is missing or not {shard['size']:,} bytes as written; run "
                                f"`rdml pipeline prepare {folder.name}` again")
    return marker


# ----------------------------------------------------------------------------------------------- transforms


def decode(data: bytes) -> np.ndarray:
    """uint8 (3, H, W) RGB of a JPEG's (or PNG's) bytes: PIL's decoder (libjpeg-turbo; no draft mode, which would
    change the pixels) and convert("RGB"), which turns ImageNet's greyscale and CMYK (Adobe) JPEGs into 3 channels.
    torchvision.io.decode_image gives the same pixels ~0.4 ms sooner a photo but is deprecated from torchvision 0.29
    on (benchmarks/imagenet_data.md)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise DataError(f"an image of the shards cannot be decoded ({error}); run `rdml pipeline prepare` again") from None
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def generate_random_crop(width: int, height: int, min_relative_area: float, max_relative_area: float,
                         aspect_ratio: np.float32, uniform: Callable[[int], int]) -> tuple[int, int, int, int] | None:
    """TF's GenerateRandomCrop (tensorflow v1.5 core/kernels/sample_distorted_bounding_box_op.cc L110-191), in its
    float32 arithmetic: a height drawn uniformly from the whole numbers between round(sqrt(min_area / ratio)) and
    round(sqrt(max_area / ratio)) (capped so the width fits), width = round(height · ratio), one step up or down
    where rounding left the area outside its range, then y and x uniform in [0, H − h) and [0, W − w) (the kernel's
    Uniform(n) is [0, n): a crop never touches the bottom or right edge unless it spans the image). `uniform(n)` draws
    a whole number in [0, n). Returns (top, left, height, width), or None where the kernel returns false."""
    f32 = _F32
    if max_relative_area <= 0 or aspect_ratio <= 0 or width <= 0 or height <= 0 or min_relative_area > max_relative_area:
        return None
    min_area = f32(min_relative_area) * f32(width) * f32(height)
    max_area = f32(max_relative_area) * f32(width) * f32(height)
    h = int(np.rint(np.sqrt(min_area / aspect_ratio)))  # lrintf: nearest, ties to even
    max_h = int(np.rint(np.sqrt(max_area / aspect_ratio)))
    if int(np.rint(f32(max_h) * aspect_ratio)) > width:
        max_h = int((width + 0.5 - float(f32(0.0000001))) / float(aspect_ratio))  # in double, truncated
    max_h = min(max_h, height)
    h = min(h, max_h)
    if h < max_h:
        h += uniform(max_h - h + 1)
    w = int(np.rint(f32(h) * aspect_ratio))
    area = f32(w * h)
    if area < min_area:
        h += 1
        w = int(np.rint(f32(h) * aspect_ratio))
        area = f32(w * h)
    if area > max_area:
        h -= 1
        w = int(np.rint(f32(h) * aspect_ratio))
        area = f32(w * h)
    if area < min_area or area > max_area or w > width or h > height or w <= 0 or h <= 0:
        return None
    y = uniform(height - h) if h < height else 0
    x = uniform(width - w) if w < width else 0
    return y, x, h, w


def sample_distorted_bounding_box(rng: np.random.Generator, height: int, width: int, *,
                                  min_object_covered: float = MIN_OBJECT_COVERED,
                                  aspect_ratio_range: tuple[float, float] = ASPECT_RATIO_RANGE,
                                  area_range: tuple[float, float] = AREA_RANGE,
                                  max_attempts: int = MAX_ATTEMPTS) -> tuple[int, int, int, int]:
    """tf.image.sample_distorted_bounding_box with the whole image as the one box (slim's bbox [[[0, 0, 1, 1]]] when
    train_image_classifier passes none), as its CPU kernel samples (sample_distorted_bounding_box_op.cc L299-359 of
    tensorflow v1.5): up to `max_attempts` times an aspect ratio RandFloat() · (max − min) + min in float32, a crop from
    `generate_random_crop`, kept if its area is ≥ 1 px and it covers ≥ min_object_covered of the image (L71-97:
    intersection area / box area in float32); else the whole image. TF's draws come from Philox; these come from
    `rng` (numpy's PCG64) with the same distributions. Returns (top, left, height, width)."""
    f32 = _F32
    low, high = f32(aspect_ratio_range[0]), f32(aspect_ratio_range[1])
    image_area, covered = f32(width * height), f32(min_object_covered)

    def uniform(n: int) -> int:
        return int(rng.integers(n))

    for _ in range(max_attempts):
        ratio = rng.random(dtype=f32) * (high - low) + low
        crop = generate_random_crop(width, height, area_range[0], area_range[1], ratio, uniform)
        if crop is None:
            continue
        area = f32(crop[2] * crop[3])  # inside the image, so its intersection with the whole image is itself
        if area >= f32(1.0) and image_area >= f32(1.0) and area / image_area >= covered:
            return crop
    return 0, 0, height, width


def central_crop_box(height: int, width: int, fraction: float = CENTRAL_FRACTION) -> tuple[int, int, int, int]:
    """tf.image.central_crop's box (tensorflow v1.5 python/ops/image_ops_impl.py L398-410): start = int32((s − s ·
    fraction) / 2) in float64, size = s − 2 · start. Returns (top, left, height, width)."""
    if fraction == 1.0:
        return 0, 0, height, width
    top = int((float(height) - float(height) * fraction) / 2)
    left = int((float(width) - float(width) * fraction) / 2)
    return top, left, height - 2 * top, width - 2 * left


def _positions(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper source pixel and float32 lerp of each output pixel along one axis, as TF 1's ResizeBilinear
    computes them with align_corners=False (resize_bilinear_op.cc L77-89, image_resizer_state.h: scale = in / (float)
    out; in = i · scale in float32), the same positions as rdml.data.resize.tf_legacy_weights."""
    scale = _F32(size_in) / _F32(size_out)
    position = np.arange(size_out, dtype=_F32) * scale
    lower = position.astype(np.int64)  # static_cast<int64>: floor of a non-negative float
    return lower, np.minimum(lower + 1, size_in - 1), position - lower.astype(_F32)


def resize_bilinear(image: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int] = OUTPUT) -> np.ndarray:
    """The `box` (top, left, height, width) of a uint8 (3, H, W) image, converted to float32 as convert_image_dtype
    converts (u · float32(1/255)) and resized to `size` as TF 1's ResizeBilinear (align_corners=False) computes each
    output: top = tl + (tr − tl) · x_lerp, bottom = bl + (br − bl) · x_lerp, top + (bottom − top) · y_lerp
    (resize_bilinear_op.cc L95-101), in float32, element by element. rdml.data.resize.resize_tf computes the same
    weights as matrix products (tests/test_imagenet_data.py); this form reads 4 pixels per output, not the whole
    crop, and gives the same bits in any process. Returns float32 (3, size)."""
    top, left, height, width = box
    y_low, y_high, y_lerp = _positions(height, size[0])
    x_low, x_high, x_lerp = _positions(width, size[1])
    rows = image[:, np.concatenate([top + y_low, top + y_high])]
    pixels = np.take(rows, np.concatenate([left + x_low, left + x_high]), axis=2).astype(_F32) * _F32(1.0 / 255)
    n, m = size
    tl, tr, bl, br = pixels[:, :n, :m], pixels[:, :n, m:], pixels[:, n:, :m], pixels[:, n:, m:]
    upper = tl + (tr - tl) * x_lerp
    lower = bl + (br - bl) * x_lerp
    return upper + (lower - upper) * y_lerp[:, None]


# hsv_to_rgb's switch (adjust_saturation_op.cc L132-167): per channel, the hue categories whose value is the chroma c
# and those whose value is the in-between x (the others, and category 6 of a hue rounded up to 1.0, are 0), before + m
_HSV_CHROMA = ((0, 5), (1, 2), (3, 4))
_HSV_BETWEEN = ((1, 4), (0, 3), (2, 5))


def adjust_saturation(x: np.ndarray, factor: np.float32) -> np.ndarray:
    """TF's AdjustSaturation CPU kernel on float32 (3, H, W) RGB (tensorflow v1.5 core/kernels/adjust_saturation_op.cc
    L88-171, L199-205), element by element in its float32 arithmetic: rgb_to_hsv, s = min(1, max(0, s · factor)),
    hsv_to_rgb. Its quirks are kept: the hue offsets 2/6 and 4/6 are added in double; a hue that rounds up to 1.0
    gives category 6, whose rgb is (0, 0, 0) + m. The kernel's branches are taken as sums of each candidate times a
    0/1 mask (a + 0 · b is a exactly for finite b), which numpy computes several times faster than np.where."""
    f32 = _F32
    r, g, b = x[0], x[1], x[2]
    v = np.maximum(r, np.maximum(g, b))
    spread = v - np.minimum(r, np.minimum(g, b))
    positive = spread > 0
    # range 0: the kernel's norm is inf and its hue 0 (L106-108); a finite stand-in keeps the sums below finite
    safe = np.where(positive, spread, f32(1))
    s = spread / np.where(v > 0, v, f32(1)) * (v > 0)
    norm = f32(1) / (f32(6) * safe)
    red = r == v
    green = ~red & (g == v)
    blue = ~(red | green)
    # hh = norm · (b − r) + 2.0 / 6.0 (green largest) or norm · (r − g) + 4.0 / 6.0: float, plus a double, to float
    h = norm * (g - b) * red \
        + ((norm * (b - r)).astype(np.float64) + 2.0 / 6.0).astype(f32) * green \
        + ((norm * (r - g)).astype(np.float64) + 4.0 / 6.0).astype(f32) * blue
    h = h * positive
    h = h + (h < 0)  # hh + 1 where hh < 0
    s = np.clip(s * factor, f32(0), f32(1))  # min(1, max(0, ·)) of a number
    c = s * v
    m = v - c
    dh = h * f32(6)
    category = dh.astype(np.int32)  # static_cast<int>
    fmodu = dh - (category >> 1 << 1).astype(f32)  # the kernel's ±2 loops, dh in [0, 6]: exact
    between = c * (f32(1) - np.abs(fmodu - f32(1)))
    out = np.empty_like(x)
    for channel in range(3):
        (c1, c2), (b1, b2) = _HSV_CHROMA[channel], _HSV_BETWEEN[channel]
        out[channel] = c * ((category == c1) | (category == c2)) + between * ((category == b1) | (category == b2)) + m
    return out


@dataclass(frozen=True)
class TrainDraws:
    """One training sample's draws: the crop box (top, left, height, width), the flip, the colour ordering and the
    brightness delta and saturation factor (float32)."""

    box: tuple[int, int, int, int]
    flip: bool
    ordering: int
    delta: np.float32
    factor: np.float32


def _uniform_f32(rng: np.random.Generator, low: float, high: float) -> np.float32:
    """tf.random_uniform([], low, high) for float32: u · (high − low) + low, with u in [0, 1) and float32 bounds."""
    low32, high32 = _F32(low), _F32(high)
    return rng.random(dtype=_F32) * (high32 - low32) + low32


def draw_train(rng: np.random.Generator, height: int, width: int) -> TrainDraws:
    """The draws of preprocess_for_train for an image of height × width, in slim's order: the crop, the flip
    (random_uniform < 0.5), the colour ordering (uniform in [0, COLOR_ORDERINGS)), the brightness delta in
    [−32/255, 32/255) and the saturation factor in [0.5, 1.5)."""
    box = sample_distorted_bounding_box(rng, height, width)
    flip = bool(rng.random(dtype=_F32) < _F32(0.5))
    ordering = int(rng.integers(COLOR_ORDERINGS))
    delta = _uniform_f32(rng, -MAX_BRIGHTNESS_DELTA, MAX_BRIGHTNESS_DELTA)
    factor = _uniform_f32(rng, *SATURATION_RANGE)
    return TrainDraws(box, flip, ordering, delta, factor)


def train_transform(image: np.ndarray, draws: TrainDraws) -> np.ndarray:
    """preprocess_for_train(fast_mode=True) of a uint8 (3, H, W) image under `draws`: crop, bilinear resize to OUTPUT,
    flip, distort_color (ordering 0: brightness then saturation; others: saturation then brightness), clip to [0, 1],
    (x − 0.5) · 2. Float32 (3, 224, 224)."""
    x = resize_bilinear(image, draws.box)
    if draws.flip:
        x = np.ascontiguousarray(x[:, :, ::-1])
    if draws.ordering == 0:
        x = adjust_saturation(x + draws.delta, draws.factor)
    else:
        x = adjust_saturation(x, draws.factor) + draws.delta
    x = np.clip(x, _F32(0), _F32(1))
    return (x - _F32(0.5)) * _F32(2)


def eval_transform(image: np.ndarray) -> np.ndarray:
    """preprocess_for_eval of a uint8 (3, H, W) image: central_crop(0.875), bilinear resize to OUTPUT, (x − 0.5) · 2."""
    x = resize_bilinear(image, central_crop_box(image.shape[1], image.shape[2]))
    return (x - _F32(0.5)) * _F32(2)


def sample_generator(seed: int, epoch: int, row: int) -> np.random.Generator:
    """The generator of one training sample's draws: numpy's default_rng(SeedSequence((seed, epoch, row)))."""
    return np.random.default_rng(np.random.SeedSequence((seed, epoch, row)))


# ----------------------------------------------------------------------------------------------- the streamed set


class _Samples(torch.utils.data.Dataset):
    """Map-style samples of one split: key (row, seed, epoch, kind) -> float32 (3, 224, 224). Shard files are opened
    lazily in each process (a worker never uses its parent's handles), at most MAX_OPEN at once (the least recently
    used closed first: a shuffled epoch touches all 1,282 shards, more than a default limit of 1,024 open files), and
    read with os.pread."""

    def __init__(self, paths: list[Path], index: np.ndarray):
        self.paths, self.index = paths, index
        self._handles: OrderedDict[int, int] = OrderedDict()
        self._pid = None

    def __getstate__(self):
        return {"paths": self.paths, "index": self.index, "_handles": OrderedDict(), "_pid": None}

    def _handle(self, shard: int) -> int:
        if self._pid != os.getpid():
            self._handles, self._pid = OrderedDict(), os.getpid()
        if shard in self._handles:
            self._handles.move_to_end(shard)
        else:
            while len(self._handles) >= MAX_OPEN:
                os.close(self._handles.popitem(last=False)[1])
            self._handles[shard] = os.open(self.paths[shard], os.O_RDONLY)
        return self._handles[shard]

    def read(self, row: int) -> bytes:
        shard, offset, size, _ = self.index[row]
        data = os.pread(self._handle(int(shard)), int(size), int(offset))
        if len(data) != size:
            raise DataError(f"{self.paths[int(shard)]} ends before sample {row}'s {int(size):,} bytes at {int(offset):,}; "
                            "the shard is damaged: run `rdml pipeline prepare` again")
        return data

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: tuple[int, int, int, str]) -> Tensor:
        row, seed, epoch, kind = key
        image = decode(self.read(row))
        if kind == "inception":
            x = train_transform(image, draw_train(sample_generator(seed, epoch, row), image.shape[1], image.shape[2]))
        else:
            x = eval_transform(image)
        return torch.from_numpy(np.ascontiguousarray(x))

    def __del__(self):
        if self._pid == os.getpid():
            for handle in self._handles.values():
                os.close(handle)


def _stack(samples: list[Tensor]) -> Tensor:
    """The batch (torch's default_collate: in a worker it stacks straight into shared memory, no second copy)."""
    return torch.utils.data.default_collate(samples)


# glibc's mallopt parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _worker_init(_: int) -> None:
    """A decoding worker keeps its freed memory: each sample's float32 temporaries (200 KB a channel) are over glibc's
    128 KB mmap threshold, so each would otherwise be mapped and zeroed afresh, which costs more than the arithmetic
    (about 3x the time of a sample's saturation here, benchmarks/imagenet_data.md). No effect off glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):
        pass


def _augment_kind(augment) -> str:
    """The augmentation a batch's `inputs(augment)` asks for: None is "none" (preprocess_for_eval's crop), a kind's
    name, or the training loop's partial(augment_batch, kind=...)."""
    if augment is None:
        kind = "none"
    elif isinstance(augment, str):
        kind = augment
    elif isinstance(augment, functools.partial) and "kind" in augment.keywords:
        kind = augment.keywords["kind"]
    else:
        raise ConfigError(f"augment={augment!r}: a streamed data set augments in its decoding workers, per sample; give "
                          f"an augmentation's name ({', '.join(AUGMENTATIONS)}) or None")
    one_of("augment", kind, AUGMENTATIONS)
    return kind


class _EpochReader:
    """The batches of one epoch (from batch `start` on), decoded by a DataLoader started at the first `inputs` call
    with that call's augmentation; batches are read in order."""

    def __init__(self, data: StreamedDataset, rows: list[Tensor], seed: int, epoch: int, start: int):
        self.data, self.rows, self.seed, self.epoch, self.start = data, rows, seed, epoch, start
        self.kind = None
        self.iterator = None
        self.next = start
        self.last: tuple[int, Tensor] | None = None

    def inputs(self, i: int, augment) -> Tensor:
        kind = _augment_kind(augment)
        if self.kind is None:
            self.kind = kind
            keys = [[(int(r), self.seed, self.epoch, kind) for r in rows] for rows in self.rows]
            self.iterator = self.data._batches("train", keys)
        elif kind != self.kind:
            raise ConfigError(f"augment={kind}: this epoch's batches are decoded with augment={self.kind}; a streamed "
                              "data set gives one view of each batch")
        if self.last is not None and self.last[0] == i:
            return self.last[1]
        if i < self.next:
            raise ConfigError(f"batch {i} of epoch {self.epoch} was read already; a streamed data set's batches are "
                              "read in order, each once")
        while self.next <= i:
            x = next(self.iterator)
            self.next += 1
        self.last = (i, x)
        return x


@dataclass
class StreamBatch:
    """A training batch of a streamed set: its labels at once, its inputs decoded by the epoch's workers."""

    reader: _EpochReader
    index: int
    rows: Tensor

    @property
    def labels(self) -> Tensor:
        return self.reader.data.y_train[self.rows].to(self.reader.data.device)

    def inputs(self, augment=None) -> Tensor:
        """Float32 (B, 3, 224, 224) in [-1, 1] on the set's device: slim's training preprocessing with
        augment="inception" (or the loop's partial(augment_batch, kind="inception")), its evaluation preprocessing
        with None or "none"."""
        return self.reader.inputs(self.index, augment)


class StreamedDataset:
    """A data set read from shards on disk (rdml.data.base.Dataset's loader interface): labels in memory, images
    decoded per sample by `workers` DataLoader processes (0: in this process), as `prepare` wrote them."""

    probes = None
    embeddings = None
    x_val = y_val = None
    train_sizes = None

    def __init__(self, name: str, shards: Path, marker: dict, spec: DataSpec, fingerprint: dict, *, workers: int = 0,
                 device: torch.device | str = "cpu", _index: dict | None = None):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"workers={workers!r} must be an integer >= 0 (decoding processes; 0: in this process)")
        self.name, self.shards, self.marker, self.spec, self.fingerprint = name, shards, marker, spec, fingerprint
        self.workers, self.device = workers, torch.device(device)
        if _index is None:
            _index = {split: np.load(shards / marker["splits"][split]["index"], allow_pickle=False) for split in SPLIT_FILES}
        self.index = _index
        self.paths = {split: [shards / s["name"] for s in marker["splits"][split]["shards"]] for split in SPLIT_FILES}
        self.y_train = torch.from_numpy(self.index["train"]["label"].astype(np.int64))
        self.y_test = torch.from_numpy(self.index["test"]["label"].astype(np.int64))

    def _to_device(self, x: Tensor) -> Tensor:
        return x.to(self.device, non_blocking=self.device.type == "cuda")

    def _batches(self, split: str, keys: list[list]) -> Iterator[Tensor]:
        """The batches of samples `keys` (lists of (row, seed, epoch, kind)), on the device. Workers decode chunks of at
        most CHUNK samples (so a batch of 1,024 evaluated rows is not one 600 MB message), put back together here."""
        chunks = [batch[i: i + CHUNK] for batch in keys for i in range(0, len(batch), CHUNK)]
        loader = iter(torch.utils.data.DataLoader(
            _Samples(self.paths[split], self.index[split]), batch_sampler=chunks, num_workers=self.workers,
            collate_fn=_stack, pin_memory=self.device.type == "cuda", worker_init_fn=_worker_init if self.workers else None))
        for batch in keys:
            parts = [self._to_device(next(loader)) for _ in range(0, len(batch), CHUNK)]
            yield parts[0] if len(parts) == 1 else torch.cat(parts)

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(batch_starts(len(self.y_train), batch_size))

    def train_batches(self, batch_size: int, *, seed: int, epoch: int, start: int = 0) -> Iterator[StreamBatch]:
        """The training batches of one epoch from batch `start` on, in rdml.data.base.epoch_batches' order (seed ·
        1,000,003 + epoch; batch_starts' last-batch rule); each sample's draws from (seed, epoch, row) alone, so a run
        resumed at batch k sees the batches an uninterrupted one sees."""
        rows = list(islice(epoch_batches(len(self.y_train), batch_size, seed=seed, epoch=epoch), start, None))
        reader = _EpochReader(self, rows, seed, epoch, start)
        for i, batch_rows in enumerate(rows, start):
            yield StreamBatch(reader, i, batch_rows)

    def student_train_batches(self, batch_size: int, *, seed: int, epoch: int, student: int, start: int = 0):
        raise ConfigError(f"batches=own (a mini-batch per network) is not available on the streamed data set {self.name}; "
                          "it is the official DML Market-1501 loop's; use batches=shared")

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """(inputs, labels) of `split` (test: the ILSVRC2012 validation images; train) in row order, under
        preprocess_for_eval, on the set's device."""
        labels = self._labels(split)
        starts = list(range(0, len(labels), batch_size))
        keys = [[(r, 0, 0, "none") for r in range(s, min(s + batch_size, len(labels)))] for s in starts]
        for s, x in zip(starts, self._batches(split, keys)):
            yield x, labels[s: s + batch_size].to(self.device)

    def _labels(self, split: str) -> Tensor:
        if split == "train":
            return self.y_train
        if split == "test":
            return self.y_test
        raise ValueError(f"dataset {self.name} has no {split!r} split; it has: train, test")

    def split_size(self, split: str) -> int:
        return 0 if split == "val" else len(self._labels(split))

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def chance_accuracy(self) -> float:
        return torch.bincount(self.y_test, minlength=self.num_classes).max().item() / len(self.y_test)

    def to(self, device: torch.device | str) -> StreamedDataset:
        return StreamedDataset(self.name, self.shards, self.marker, self.spec, self.fingerprint, workers=self.workers,
                               device=device, _index=self.index)


# ----------------------------------------------------------------------------------------------- loading


def _tiny_description() -> str:
    return (f"tiny_imagenet(classes={TINY['classes']}, train_per_class={TINY['train_per_class']}, val={TINY['val']}, "
            f"seed={TINY['seed']}, heights={TINY['heights']}, widths={TINY['widths']}, noise={TINY['noise']}, "
            f"layout={LAYOUT['version']})")


def load(name: str, data_dir: str | Path, *, workers: int = 0) -> StreamedDataset:
    """The streamed set `name` from its prepared shards in `<data_dir>/<name>/shards`. The archives still beside them
    must be the ones the shards were written from (sha256, kept with each file's size and mtime, so an unchanged
    archive is not read again); the shards' record stands for archives moved away. tiny_imagenet is generated in
    the real archive formats and prepared on first use."""
    folder = Path(data_dir) / name
    if name == "tiny_imagenet":
        _ensure_tiny(folder)
    marker = read_marker(folder)
    present = archive_hashes(folder)
    for archive, recorded in marker["archives"].items():
        if archive in present and present[archive]["sha256"] != recorded["sha256"]:
            raise DataError(f"{folder / archive} is not the archive the shards in {folder / SHARDS} were written from "
                            f"(sha256 {present[archive]['sha256'][:12]}…, the shards' {recorded['sha256'][:12]}…); run "
                            f"`rdml pipeline prepare {name}` again")
    if name == "tiny_imagenet":
        files = {"generated": _tiny_description()}
    else:
        files = {f"{name}/{archive}": recorded["sha256"] for archive, recorded in sorted(marker["archives"].items())}
    train, test = (marker["splits"][split]["samples"] for split in SPLIT_FILES)
    split = {"split": "official", "train_size": train, "test_size": test, "labelled_fraction": 1.0,
             "labelled_size": train, "storage": "stream"}
    fingerprint = {"files": files, "split": split, "normalize": "inception",
                   "sha256": sha256_bytes(repr((sorted(files.items()), split)).encode())}
    return StreamedDataset(name, folder / SHARDS, marker, DATASETS[name].spec, fingerprint, workers=workers)


def _ensure_tiny(folder: Path) -> None:
    """Write tiny_imagenet's archives and shards into `folder` unless shards of this generator are there (checked again
    under the prepare lock, so runs starting together generate them once)."""
    def current() -> bool:
        try:
            return read_marker(folder).get("generated") == _tiny_description()
        except DataError:
            return False

    if current():
        return
    with _locked(folder):
        if not current():
            write_tiny_archives(folder)
            _prepare("tiny_imagenet", folder, PER_SHARD, expected_counts("tiny_imagenet"))


def _jpeg(image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.getvalue()


def _tar_bytes(members: list[tuple[str, bytes | None]]) -> bytes:
    """A tar (ustar, fixed headers) of (name, bytes) files and (name, None) folders, in the order given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as handle:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                handle.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                handle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _meta_mat(wnids: list[str], extra: list[str]) -> bytes:
    """The devkit's data/meta.mat: a synsets struct array (SYNSET_FIELDS, in that order) of the leaf classes with
    ILSVRC2012_ID 1..K in the order given (the real devkit's is not WNID order), then inner synsets
    (num_children > 0) with the next ids, as the real devkit lists 1,000 leaves then 860 inner synsets. The MAT
    header's date is fixed, so the bytes are too."""
    import scipy.io

    rows = [(i + 1, w, f"class {i}, words", f"gloss of {w}", 0, np.zeros(0), 0, 10) for i, w in enumerate(wnids)]
    rows += [(len(wnids) + j + 1, w, f"group {j}", f"gloss of {w}", 2, np.array([1, 2], dtype=np.int16), 1, 0)
             for j, w in enumerate(extra)]
    synsets = np.empty((len(rows), 1), dtype=[(f, object) for f in SYNSET_FIELDS])
    for i, row in enumerate(rows):
        synsets[i, 0] = row
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    data = bytearray(buffer.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by rdml.data.imagenet (tiny_imagenet)".ljust(116)
    return bytes(data)


def write_tiny_archives(folder: Path, *, classes: int = TINY["classes"], train_per_class=TINY["train_per_class"],
                        val: int = TINY["val"], seed: int = TINY["seed"], heights=TINY["heights"],
                        widths=TINY["widths"], noise: float = TINY["noise"],
                        extra_synsets: int = TINY["extra_synsets"]) -> dict[str, Path]:
    """A tiny ILSVRC2012 in the real archives' formats, from `seed`: a training tar of per-class tars of JPEGs
    (quality 90) of heights and widths drawn from the given ranges (a colour pattern per class stretched over the
    photo, plus Gaussian noise of sd `noise`), one of them greyscale, one CMYK and one PNG under a .JPEG name (as
    ImageNet's n02105855_2933.JPEG), members in shuffled order; a flat validation tar; a devkit tar.gz with meta.mat
    (scipy.io.savemat, the devkit's struct layout) and the ground-truth txt. Written atomically; returns
    {part: path}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    wnids = sorted({f"n{int(v):08d}" for v in rng.integers(1_000_000, 15_000_000, size=classes + extra_synsets)})
    while len(wnids) < classes + extra_synsets:  # a repeated draw: draw again
        wnids = sorted(set(wnids) | {f"n{int(rng.integers(1_000_000, 15_000_000)):08d}"})
    order = rng.permutation(len(wnids))
    leaves, inner = sorted(wnids[i] for i in order[:classes]), sorted(wnids[i] for i in order[classes:])
    ids = rng.permutation(classes)  # leaf ids[k] + 1 is the ILSVRC2012_ID of leaves[k], not in WNID order
    patterns = rng.integers(0, 256, size=(classes, 4, 4, 3), dtype=np.uint8)

    def photo(label: int) -> Image.Image:
        height, width = int(rng.integers(heights[0], heights[1] + 1)), int(rng.integers(widths[0], widths[1] + 1))
        base = np.asarray(Image.fromarray(patterns[label]).resize((width, height), Image.BILINEAR), dtype=np.float64)
        return Image.fromarray(np.clip(base + rng.normal(0, noise, size=base.shape), 0, 255).astype(np.uint8))

    special = {(0, 1): "L", (1, 2): "CMYK", (2, 0): "PNG"}  # (class, image) -> how it is stored
    class_tars = []
    for label, wnid in enumerate(leaves):
        numbers = sorted(rng.choice(np.arange(1, 20_000), size=train_per_class[label], replace=False).tolist())
        images = []
        for k, number in enumerate(numbers):
            image, how = photo(label), special.get((label, k), "RGB")
            data = _jpeg(image, format="PNG") if how == "PNG" else _jpeg(image.convert(how), format="JPEG", quality=90)
            images.append((f"{wnid}_{number}.JPEG", data))
        class_tars.append((f"{wnid}.tar", _tar_bytes([images[i] for i in rng.permutation(len(images))])))
    truth = np.concatenate([np.arange(classes), rng.integers(0, classes, size=max(0, val - classes))])[:val]
    truth = truth[rng.permutation(val)]
    val_images = [(f"ILSVRC2012_val_{i + 1:08d}.JPEG", _jpeg(photo(int(c)), format="JPEG", quality=90))
                  for i, c in enumerate(truth)]
    devkit = _tar_bytes([(f"{DEVKIT}", None), (f"{DEVKIT}/data", None), (f"{DEVKIT}/COPYING", b"tiny_imagenet\n"),
                         (META, _meta_mat([leaves[k] for k in np.argsort(ids)], inner)),
                         (GROUND_TRUTH, "".join(f"{ids[c] + 1}\n" for c in truth).encode())])
    contents = {"train": _tar_bytes([class_tars[i] for i in rng.permutation(classes)]),
                "val": _tar_bytes([val_images[i] for i in rng.permutation(val)]),
                "devkit": gzip.compress(devkit, mtime=0)}
    from rdml.io import atomic_write_bytes

    paths = {}
    for part, data in contents.items():
        atomic_write_bytes(folder / ARCHIVES[part], data)
        paths[part] = folder / ARCHIVES[part]
    return paths
