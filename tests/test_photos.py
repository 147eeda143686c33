"""DTD and Flowers102 through the real download, checksum, extract and decode code, on tiny generated
archives in the real layouts, against torchvision's own dataset classes; and the tiny photo sets."""

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat
from torchvision import datasets as tv, transforms

from conftest import md5
from rdml.data import generated, photos
from rdml.data.base import load_dataset
from rdml.data.vision import DataError, Source

S = photos.CACHE_SIDE
DTD_CLASSES = ("zigzagged", "banded", "Blotchy", "cracked")  # listed unsorted, one capitalised: torchvision sorts them
TEST_TRANSFORM = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.PILToTensor()])


def jpeg(rng, height, width, mode="RGB"):
    """JPEG bytes of a smooth random photo (JPEG keeps some structure to resample, unlike pure noise)."""
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.BICUBIC)
    noisy = np.clip(np.asarray(image, dtype=np.int16) + rng.integers(-20, 21, size=(height, width, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).convert(mode).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def add(tar, name, blob):
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))


def sides(rng):
    """Heights and widths from 150 to 560 px: photos below and above the 448-px cache and the 256-px resize."""
    return int(rng.integers(150, 561)), int(rng.integers(150, 561))


def dtd_archive(server, rng):
    """dtd-r1.0.1.tar.gz as the real one: dtd/images/<class>/<class>_NNNN.jpg and dtd/labels/<split><1..2>.txt."""
    lists = {f"{split}{p}": [] for split in ("train", "val", "test") for p in (1, 2)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for c, cls in enumerate(DTD_CLASSES):
            for i in range(1, 6):
                file = f"{cls}/{cls}_{i:04d}.jpg"
                add(tar, f"dtd/images/{file}", jpeg(rng, *sides(rng), mode="L" if (c, i) == (1, 2) else "RGB"))
                # partition 1: images 1-2 train, 3 val, 4-5 test; partition 2 the other way round
                lists[("train1", "train1", "val1", "test1", "test1")[i - 1]].append(file)
                lists[("test2", "test2", "val2", "train2", "train2")[i - 1]].append(file)
        for split, files in lists.items():
            add(tar, f"dtd/labels/{split}.txt", "".join(f"{f}\n" for f in files).encode())
    archive = server / "dtd-r1.0.1.tar.gz"
    archive.write_bytes(buffer.getvalue())
    return archive


def flowers_files(server, rng, images=14):
    """102flowers.tgz (jpg/image_NNNNN.jpg), imagelabels.mat (labels 1..102) and setid.mat (1-based ids)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for i in range(1, images + 1):
            add(tar, f"jpg/image_{i:05d}.jpg", jpeg(rng, *sides(rng)))
    (server / "102flowers.tgz").write_bytes(buffer.getvalue())
    savemat(server / "imagelabels.mat", {"labels": rng.integers(1, 103, size=images).astype(np.uint8)})
    ids = (rng.permutation(images) + 1).astype(np.uint16)
    savemat(server / "setid.mat", {"trnid": ids[:6], "valid": ids[6:8], "tstid": ids[8:]})
    return [server / f for f in ("102flowers.tgz", "imagelabels.mat", "setid.mat")]


def serve(name, tmp_path, monkeypatch, http, seed=0):
    """Tiny files of data set `name` on the local server, and photos.sources() pointing at them."""
    rng = np.random.default_rng(seed)
    sources = photos.sources()  # torchvision's real ones, cached before any test changes torchvision's classes
    if name == "dtd":
        archive = dtd_archive(tmp_path / "server", rng)
        source = Source((http + archive.name,), ((archive.name, md5(archive)),), "dtd")
    else:
        source = Source((http,), tuple((f.name, md5(f)) for f in flowers_files(tmp_path / "server", rng)), "jpg")
    monkeypatch.setitem(sources, name, source)
    return source


def torchvision_set(name, data_dir, split, transform, monkeypatch):
    """torchvision's own dataset class on the folder rdml fetched."""
    if name == "dtd":
        return tv.DTD(data_dir, split=split, transform=transform)  # reads <data_dir>/dtd/dtd, rdml's folder
    root = data_dir / "torchvision"
    root.mkdir(exist_ok=True)
    if not (root / "flowers-102").exists():
        (root / "flowers-102").symlink_to(data_dir / "flowers102")
    files = dict(photos.sources()["flowers102"].files)
    monkeypatch.setattr(tv.Flowers102, "_file_dict", {k: (f, files.get(f, m)) for k, (f, m) in tv.Flowers102._file_dict.items()})
    return tv.Flowers102(root, split=split, transform=transform)


def stacked(dataset):
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.tensor(labels)


@pytest.mark.parametrize("name", ["dtd", "flowers102"])
def test_download_verify_extract_and_decode_equal_torchvision(tmp_path, monkeypatch, http, name):
    source = serve(name, tmp_path, monkeypatch, http)
    data_dir = tmp_path / "data"
    photos.prepare(name, data_dir)
    for file, _ in source.files:
        assert (data_dir / name / file).read_bytes() == (tmp_path / "server" / file).read_bytes()
    raw = photos.load(name, data_dir)
    assert raw.files == {f"{name}/{file}": digest for file, digest in source.files}

    x_test, y_test = stacked(torchvision_set(name, data_dir, "test", TEST_TRANSFORM, monkeypatch))
    assert raw.x_test.dtype == torch.uint8 and raw.x_test.shape == (len(y_test), 3, 224, 224)
    assert torch.equal(raw.x_test, x_test) and torch.equal(raw.y_test, y_test)

    reference = transforms.Resize(256) if name == "flowers102" else transforms.Lambda(lambda image: image)
    cached = transforms.Compose([reference, transforms.Resize((S, S)), transforms.PILToTensor()])
    x_train, y_train = stacked(torchvision_set(name, data_dir, "train", cached, monkeypatch))
    assert raw.x.dtype == torch.uint8 and raw.x.shape == (len(y_train), 3, S, S)
    assert torch.equal(raw.x, x_train) and torch.equal(raw.y, y_train)
    references = torchvision_set(name, data_dir, "train", reference, monkeypatch)
    assert raw.sizes.dtype == torch.int64
    assert raw.sizes.tolist() == [[image.height, image.width] for image, _ in references]
    if name == "flowers102":
        assert raw.sizes.min(1).values.eq(256).all()
    else:
        assert references.classes == sorted(DTD_CLASSES)
        assert raw.y.tolist() == [sorted(DTD_CLASSES).index(c) for c in DTD_CLASSES for _ in range(2)]
        assert len(set(map(tuple, raw.sizes.tolist()))) > 1

    data = load_dataset(name, split_seed=0, test_fraction=0.25, data_dir=data_dir, normalize="none")
    assert data.fingerprint["split"]["split"] == "official" and data.fingerprint["files"] == raw.files
    assert torch.equal(data.x_train, raw.x) and torch.equal(data.train_sizes, raw.sizes)
    assert torch.equal(data.x_test, raw.x_test) and data.spec.input_shape == (3, 224, 224)


@pytest.mark.tamper
def test_corrupt_and_missing_files_name_the_path_and_md5(tmp_path, monkeypatch, http):
    source = serve("flowers102", tmp_path, monkeypatch, http)
    data_dir = tmp_path / "data"
    photos.fetch("flowers102", data_dir)
    setid, expected = data_dir / "flowers102" / "setid.mat", dict(source.files)["setid.mat"]
    blob = bytearray(setid.read_bytes())
    blob[-1] ^= 1
    setid.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=f"{setid} is corrupt: md5 [0-9a-f]+, expected {expected}"):
        photos.load("flowers102", data_dir)
    setid.unlink()
    with pytest.raises(DataError, match=f"{setid} is missing \\(expected md5 {expected}\\); run `rdml pipeline prepare flowers102`"):
        load_dataset("flowers102", split_seed=0, test_fraction=0.25, data_dir=data_dir)

    dtd = serve("dtd", tmp_path, monkeypatch, http)
    archive, good = dtd.files[0]
    with pytest.raises(DataError, match=f"{tmp_path / 'empty/dtd' / archive} is missing \\(expected md5 {good}\\)"):
        photos.load("dtd", tmp_path / "empty")
    monkeypatch.setitem(photos.sources(), "dtd", Source((http + "nowhere.tar.gz",), dtd.files, "dtd"))
    with pytest.raises(DataError, match=f"could not be downloaded .*expected md5 {good}"):
        photos.fetch("dtd", tmp_path / "other")
    monkeypatch.setitem(photos.sources(), "dtd", Source(dtd.urls, dtd.files, "textures"))
    with pytest.raises(DataError, match="dtd-r1.0.1.tar.gz does not unpack into a folder textures/"):
        photos.fetch("dtd", tmp_path / "wrong")
    assert sorted(p.name for p in (tmp_path / "wrong/dtd").iterdir()) == [archive]  # nothing half-unpacked left


def test_prepared_tensor_cache_is_loaded_and_ignored_when_stale(tmp_path, monkeypatch, http):
    serve("dtd", tmp_path, monkeypatch, http, seed=3)
    data_dir = tmp_path / "data"
    cache = photos.prepare("dtd", data_dir)
    decoded = photos.load("dtd", data_dir)
    photo = data_dir / "dtd/dtd/images/banded/banded_0001.jpg"
    raw = photo.read_bytes()
    photo.unlink()  # decoding would now fail: what comes back is the cache
    cached = photos.load("dtd", data_dir)
    assert all(torch.equal(getattr(decoded, k), getattr(cached, k)) for k in ("x", "y", "x_test", "y_test", "sizes"))
    assert cached.files == decoded.files
    saved = torch.load(cache, weights_only=True)
    torch.save({**saved, "files": {"dtd/other.tar.gz": "0" * 32}}, cache)
    with pytest.raises(FileNotFoundError, match="banded_0001.jpg"):
        photos.load("dtd", data_dir)  # made from other files: not used
    torch.save(saved, cache)
    monkeypatch.setattr(photos, "CACHE_SIDE", 64)
    with pytest.raises(FileNotFoundError, match="banded_0001.jpg"):
        photos.load("dtd", data_dir)  # made at another size: not used
    photo.write_bytes(raw)
    photos.prepare("dtd", data_dir)  # rebuilt at the new size, and used
    photo.unlink()
    small = photos.load("dtd", data_dir)
    assert small.x.shape[2:] == (64, 64) and torch.equal(small.sizes, decoded.sizes)
    assert torch.equal(small.x_test, decoded.x_test)


@pytest.mark.parametrize("name,classes", [("tiny_dtd", 47), ("tiny_flowers102", 102)])
def test_tiny_photo_sets_are_decoded_as_the_real_ones_and_seeded(name, classes):
    data = load_dataset(name, split_seed=0, test_fraction=0.25, normalize="none")
    train, test = generated.PHOTOS_PER_CLASS
    assert data.x_train.dtype == torch.uint8 and data.x_train.shape == (train * classes, 3, S, S)
    assert data.x_test.shape == (test * classes, 3, 224, 224) and data.spec.input_shape == (3, 224, 224)
    assert data.y_train.tolist() == np.repeat(np.arange(classes), train).tolist()
    assert data.y_test.tolist() == list(range(classes))
    sizes = data.train_sizes
    assert sizes.shape == (train * classes, 2) and sizes.dtype == torch.int64
    if name == "tiny_flowers102":
        assert sizes.min(1).values.eq(256).all() and sizes.max() > 256  # short side resized to 256 first
    else:
        assert sizes.min() >= generated.PHOTO_SIDES[0] and sizes.max() <= generated.PHOTO_SIDES[1]
        assert len(set(map(tuple, sizes.tolist()))) > classes  # sizes vary
    again = generated.load(name, "unused")
    assert torch.equal(again.x, data.x_train) and torch.equal(again.x_test, data.x_test)
    assert torch.equal(again.sizes, sizes) and again.files == data.fingerprint["files"]
    assert data.x_test.float().std() > 20  # noisy photos, not flat colour
