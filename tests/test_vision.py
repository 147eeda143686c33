"""Vision data sets through the real download, checksum, extract and read code, on tiny generated
files in the real on-disk formats; and the batched augmentations against torchvision's per-image ones."""

import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from conftest import md5
from rdml.config import load_config
from rdml.data import vision
from rdml.data.augment import augment_batch, random_crop, random_flip, random_rotate
from rdml.data.base import load_dataset
from rdml.data.vision import DataError, Source, fetch
from rdml.train.loop import train


def cifar_archive(tmp_path, name, rng):
    """A tar.gz laid out as the real one: pickled dicts of uint8 rows and labels."""
    folder, label_key = ("cifar-10-batches-py", b"labels") if name == "cifar10" else ("cifar-100-python", b"fine_labels")
    classes = 10 if name == "cifar10" else 100
    parts = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10" else ["train", "test"]
    arrays = {}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for part in parts:
            data = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
            labels = rng.integers(0, classes, size=6).tolist()
            arrays[part] = (data, labels)
            blob = pickle.dumps({b"batch_label": part.encode(), b"data": data, label_key: labels, b"filenames": [b"x"] * 6})
            info = tarfile.TarInfo(f"{folder}/{part}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    archive = tmp_path / "server" / ("cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz")
    archive.parent.mkdir(exist_ok=True)  # the http fixture's folder
    archive.write_bytes(buffer.getvalue())
    return archive, arrays


def idx(path, array, magic_dims):
    header = bytes([0, 0, 8, magic_dims]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_download_verify_extract_read(tmp_path, monkeypatch, http, name):
    archive, arrays = cifar_archive(tmp_path, name, np.random.default_rng(0))
    monkeypatch.setitem(vision.sources(), name, Source((http + archive.name,), ((archive.name, md5(archive)),),
                                                     vision.sources()[name].extracted))
    data_dir = tmp_path / "data"
    fetch(name, data_dir)
    assert (data_dir / name / archive.name).read_bytes() == archive.read_bytes()
    data = load_dataset(name, split_seed=0, test_fraction=0.25, data_dir=data_dir)
    train_parts = [p for p in arrays if p not in ("test_batch", "test")]
    expected = np.concatenate([arrays[p][0] for p in train_parts]).reshape(-1, 3, 32, 32)
    assert data.x_train.dtype == torch.uint8 and torch.equal(data.x_train, torch.from_numpy(expected))
    test_part = "test_batch" if name == "cifar10" else "test"
    assert data.y_test.tolist() == arrays[test_part][1]
    assert data.fingerprint["files"] == {f"{name}/{archive.name}": md5(archive)}
    assert data.fingerprint["split"]["split"] == "official"


def test_prepared_tensor_cache_is_loaded_and_a_stale_one_ignored(tmp_path, monkeypatch, http):
    archive, arrays = cifar_archive(tmp_path, "cifar10", np.random.default_rng(4))
    monkeypatch.setitem(vision.sources(), "cifar10", Source((http + archive.name,), ((archive.name, md5(archive)),),
                                                           "cifar-10-batches-py"))
    data_dir = tmp_path / "data"
    fetch("cifar10", data_dir)
    decoded = vision.load("cifar10", data_dir)
    cache = vision.prepare("cifar10", data_dir)
    batch = data_dir / "cifar10/cifar-10-batches-py/data_batch_1"
    raw = batch.read_bytes()
    batch.unlink()  # decoding would now fail: what comes back is the cache
    cached = vision.load("cifar10", data_dir)
    assert all(torch.equal(getattr(decoded, k), getattr(cached, k)) for k in ("x", "y", "x_test", "y_test"))
    assert cached.files == decoded.files
    torch.save({**torch.load(cache, weights_only=True), "files": {"cifar10/other.tar.gz": "0" * 32}}, cache)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        vision.load("cifar10", data_dir)  # made from other files: not used
    batch.write_bytes(raw)
    assert torch.equal(vision.load("cifar10", data_dir).x, decoded.x)


def test_fashion_mnist_idx_files(tmp_path, monkeypatch, http):
    rng = np.random.default_rng(1)
    server = tmp_path / "server"
    images = {"train": rng.integers(0, 256, (7, 28, 28)), "t10k": rng.integers(0, 256, (5, 28, 28))}
    labels = {"train": rng.integers(0, 10, 7), "t10k": rng.integers(0, 10, 5)}
    for split in ("train", "t10k"):
        idx(server / f"{split}-images-idx3-ubyte.gz", images[split], 3)
        idx(server / f"{split}-labels-idx1-ubyte.gz", labels[split], 1)
    files = tuple((f, md5(server / f)) for f, _ in vision.sources()["fashion_mnist"].files)
    monkeypatch.setitem(vision.sources(), "fashion_mnist", Source((http,), files))
    fetch("fashion_mnist", tmp_path / "data")
    data = load_dataset("fashion_mnist", split_seed=0, test_fraction=0.25, data_dir=tmp_path / "data")
    assert data.x_train.shape == (7, 1, 28, 28) and data.spec.input_shape == (1, 28, 28)
    assert torch.equal(data.x_test[:, 0], torch.from_numpy(images["t10k"].astype(np.uint8)))
    assert data.y_train.tolist() == labels["train"].tolist()


@pytest.mark.tamper
def test_corrupt_and_missing_files_name_the_file_and_checksum(tmp_path, monkeypatch, http):
    archive, _ = cifar_archive(tmp_path, "cifar10", np.random.default_rng(2))
    good = md5(archive)
    monkeypatch.setitem(vision.sources(), "cifar10", Source((http + archive.name,), ((archive.name, good),), "cifar-10-batches-py"))
    data_dir = tmp_path / "data"
    fetch("cifar10", data_dir)
    local = data_dir / "cifar10" / archive.name
    blob = bytearray(local.read_bytes())
    blob[10] ^= 1
    local.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=f"{local} is corrupt: md5 [0-9a-f]+, expected {good}"):
        fetch("cifar10", data_dir)
    monkeypatch.setitem(vision.sources(), "cifar10", Source((http + "nowhere.tar.gz",), ((archive.name, good),), "x"))
    with pytest.raises(DataError, match=f"could not be downloaded .*expected md5 {good}"):
        fetch("cifar10", tmp_path / "other")
    with pytest.raises(DataError, match=f"is missing \\(expected md5 {good}\\); run `rdml pipeline prepare cifar10`"):
        load_dataset("cifar10", split_seed=0, test_fraction=0.25, data_dir=tmp_path / "empty")


def test_training_on_cifar_files_with_rotation_and_imagenet_normalisation(tmp_path, monkeypatch, http):
    archive, _ = cifar_archive(tmp_path, "cifar10", np.random.default_rng(3))
    monkeypatch.setitem(vision.sources(), "cifar10", Source((http + archive.name,), ((archive.name, md5(archive)),), "cifar-10-batches-py"))
    fetch("cifar10", tmp_path / "data")
    cfg = load_config(None, ["dataset=cifar10", f"data_dir={tmp_path / 'data'}", "arch=resnet20", "method=dml", "epochs=1",
                             "batch_size=8", "augment=crop_flip_rotate", "normalize=imagenet", f"out={tmp_path / 'run'}"])
    record = train(cfg, argv=["test"], progress=False)
    assert record["status"] == "ok" and record["data"]["normalize"] == "imagenet"
    assert record["data"]["files"] == {f"cifar10/{archive.name}": md5(archive)}


@pytest.mark.parametrize("mode,torchvision_mode", [("constant", "constant"), ("reflect", "reflect")])
def test_batched_crop_equals_torchvision_pad_and_crop(mode, torchvision_mode):
    x = torch.rand(16, 3, 32, 32)
    got = random_crop(x, 4, mode, torch.Generator().manual_seed(5))
    draws = torch.Generator().manual_seed(5)
    top, left = torch.randint(0, 9, (16,), generator=draws), torch.randint(0, 9, (16,), generator=draws)
    for i in range(16):
        padded = TF.pad(x[i], [4, 4, 4, 4], padding_mode=torchvision_mode)
        assert torch.equal(got[i], TF.crop(padded, int(top[i]), int(left[i]), 32, 32))
    assert len({(int(t), int(l)) for t, l in zip(top, left)}) > 1


def test_batched_flip_and_rotation_equal_torchvision():
    x = torch.rand(32, 3, 32, 32)
    flipped = random_flip(x, torch.Generator().manual_seed(6))
    which = torch.rand(32, generator=torch.Generator().manual_seed(6)) < 0.5
    for i in range(32):
        assert torch.equal(flipped[i], TF.horizontal_flip(x[i]) if which[i] else x[i])
    assert 0 < which.sum() < 32
    rotated = random_rotate(x[:8], 15.0, torch.Generator().manual_seed(7))
    angles = (torch.rand(8, generator=torch.Generator().manual_seed(7)) * 2 - 1) * 15
    for i in range(8):
        assert torch.equal(rotated[i], TF.rotate(x[i], float(angles[i]), interpolation=InterpolationMode.NEAREST))


def test_augmentation_is_reproducible_and_identity_when_none():
    x = torch.rand(4, 3, 32, 32)
    a = augment_batch(x, "crop_flip_rotate", torch.Generator().manual_seed(1))
    b = augment_batch(x, "crop_flip_rotate", torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert augment_batch(x, "none", torch.Generator()) is x
