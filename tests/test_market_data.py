"""Market-1501 through the real reader (rdml.data.market) on small zip archives in the published layout: the
file names, junk (-1) and distractor (0000) images, gt_bbox and the archive's Thumbs.db; every count and label
against the names read independently here, the 160 × 64 crops against PIL, the tensor cache, the refusals and
the count check; and the generated tiny_market1501 through load_dataset."""

import hashlib
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from rdml import retrieval
from rdml.data import generated, market
from rdml.data.base import load_dataset
from rdml.data.vision import TENSOR_CACHE, DataError

TOP = market.EXTRACTED
# Written in no particular order: the reader sorts. Identities 7, 2 and 1500 train (labels 0, 1, 2 by identity).
TRAIN = ["0007_c2s1_000100_01.jpg", "0002_c1s1_000451_03.jpg", "1500_c6s3_094992_05.jpg", "0002_c3s2_000300_02.jpg",
         "0007_c1s1_000050_01.jpg"]
QUERY = ["0042_c5s2_003000_00.jpg", "0010_c1s1_001051_00.jpg", "0010_c2s1_001100_00.jpg"]
GALLERY = ["0010_c1s1_001200_01.jpg", "-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg", "0042_c1s1_000500_01.jpg",
           "0000_c4s2_000152_02.jpg", "-1_c3s1_000402_01.jpg", "0010_c3s1_001300_02.jpg", "0000_c2s1_000153_01.jpg"]
MULTIQUERY = ["0010_c1s1_001060_00.jpg", "0042_c5s2_003000_00.jpg", "0010_c1s1_001051_00.jpg", "0002_c1s1_000451_00.jpg"]
SMALL_COUNTS = {"train images": 5, "train identities": 3, "query images": 3, "query identities": 2,
                "gallery images": 8, "gallery junk (-1)": 2, "gallery distractors (0000)": 3}
SPLITS = {"train": TRAIN, "query": QUERY, "gallery": GALLERY, "multiquery": MULTIQUERY}


def jpeg(rng, height=128, width=64):
    """JPEG bytes of a smooth random crop with noise."""
    small = rng.integers(0, 256, size=(4, 2, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.BICUBIC)
    noisy = np.clip(np.asarray(image, dtype=np.int16) + rng.integers(-20, 21, size=(height, width, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_zip(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as bundle:
        for name, blob in members.items():
            bundle.writestr(name, blob)


def market_members(seed=0, splits=SPLITS):
    """{member path: bytes} of an archive in the published layout; the gt_bbox crops have hand-drawn sizes."""
    rng = np.random.default_rng(seed)
    members = {}
    for split, names in splits.items():
        folder = f"{TOP}/{market.FOLDERS[split]}"
        members[f"{folder}/Thumbs.db"] = b"\x00thumbnails"
        for name in names:
            size = (int(rng.integers(90, 200)), int(rng.integers(40, 90))) if split == "multiquery" else (128, 64)
            members[f"{folder}/{name}"] = jpeg(rng, *size)
    members[f"{TOP}/readme.txt"] = b"Market-1501"
    return members


@pytest.fixture
def small(tmp_path, monkeypatch):
    """data_dir holding a small archive at market1501/Market-1501-v15.09.15.zip, its members, and the counts
    check set to its counts."""
    monkeypatch.setattr(market, "PUBLISHED_COUNTS", SMALL_COUNTS)
    members = market_members()
    write_zip(tmp_path / "data" / "market1501" / market.ARCHIVE, members)
    return tmp_path / "data", members


def identity_and_camera(name):
    """Read independently of the reader's pattern: '-1_c3s1_...' → (-1, 3), '0042_c5s2_...' → (42, 5)."""
    person, rest = name.split("_", 1)
    return int(person), int(rest[1])


def expected_crop(blob):
    image = Image.open(io.BytesIO(blob)).convert("RGB").resize((64, 160), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())


@pytest.mark.parametrize("name,identity,camera", [("0002_c1s1_000451_03.jpg", 2, 1), ("-1_c1s1_000401_03.jpg", -1, 1),
                                                  ("0000_c6s3_094992_05.jpg", 0, 6), ("1501_c4s6_001234_00.jpg", 1501, 4)])
def test_names_give_identity_and_camera(name, identity, camera):
    assert market.parse_name(name) == (identity, camera)


@pytest.mark.bad_input
@pytest.mark.parametrize("name", ["0002_c7s1_000451_03.jpg", "0002_c0s1_000451_03.jpg", "2_c1s1_000451_03.jpg",
                                  "0002_c1s1_451_03.jpg", "-2_c1s1_000401_03.jpg", "0002_c1_000451_03.jpg",
                                  "0002_c1s1_000451_03.png", "x0002_c1s1_000451_03.jpg"])
def test_names_of_another_pattern_are_refused(name):
    with pytest.raises(DataError, match="is not a Market-1501 image name"):
        market.parse_name(name)


def test_prepare_reads_every_count_label_and_camera(small):
    data_dir, members = small
    cache = market.prepare("market1501", data_dir)
    assert cache == data_dir / "market1501" / TENSOR_CACHE and cache.is_file()
    raw = market.load("market1501", data_dir)

    train = sorted(TRAIN)
    identities = sorted({identity_and_camera(n)[0] for n in TRAIN})
    assert identities == [2, 7, 1500]
    assert raw.y.tolist() == [identities.index(identity_and_camera(n)[0]) for n in train] == [0, 0, 1, 1, 2]
    assert raw.x.dtype == torch.uint8 and raw.x.shape == (5, 3, 160, 64)
    assert raw.x_test.shape == (0, 3, 160, 64) and raw.x_test.dtype == torch.uint8
    assert raw.y_test.shape == (0,) and raw.y_test.dtype == torch.int64
    for row, name in enumerate(train):
        assert torch.equal(raw.x[row], expected_crop(members[f"{TOP}/bounding_box_train/{name}"]))

    assert set(raw.probes) == {"query", "gallery", "multiquery"}
    for split in ("query", "gallery", "multiquery"):
        names = sorted(SPLITS[split])
        probe = raw.probes[split]
        assert probe.x.dtype == torch.uint8 and probe.x.shape == (len(names), 3, 160, 64)
        assert probe.ids.dtype == probe.cams.dtype == torch.int64
        assert probe.ids.tolist() == [identity_and_camera(n)[0] for n in names]
        assert probe.cams.tolist() == [identity_and_camera(n)[1] for n in names]
        for row, name in enumerate(names):
            assert torch.equal(probe.x[row], expected_crop(members[f"{TOP}/{market.FOLDERS[split]}/{name}"]))
    gallery = raw.probes["gallery"]
    assert gallery.ids.tolist() == [-1, -1, 0, 0, 0, 10, 10, 42]  # '-' sorts before digits: junk first
    assert gallery.cams.tolist() == [1, 3, 1, 2, 4, 1, 3, 1]
    assert raw.probes["query"].ids.tolist() == [10, 10, 42] and raw.probes["query"].cams.tolist() == [1, 2, 5]

    archive = data_dir / "market1501" / market.ARCHIVE
    assert raw.files == {f"market1501/{market.ARCHIVE}": hashlib.sha256(archive.read_bytes()).hexdigest()}
    assert market.counts(market.list_archive_folder(data_dir / "market1501" / TOP)) == SMALL_COUNTS


def test_crops_are_pil_bilinear_at_half_pixel_centres(tmp_path):
    """misc.imresize's rule on the archive's 128 × 64 crops: linear interpolation between the two nearest rows
    at half-pixel centres (edges clamped), rounded; not TF 1's legacy rule (rdml.data.resize) that the models'
    input goes through later."""
    rng = np.random.default_rng(3)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"000{i + 1}_c1s1_00000{i}_01.jpg")
        paths[-1].write_bytes(jpeg(rng))
    x = market.crops(paths)
    for path, row in zip(paths, x):
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        source = np.clip((np.arange(160) + 0.5) * 128 / 160 - 0.5, 0, 127)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, 127)
        frac = (source - low)[:, None, None]
        exact = pixels[low] * (1 - frac) + pixels[high] * frac
        assert np.abs(row.numpy().transpose(1, 2, 0) - exact).max() <= 0.5 + 1e-6


def test_the_cache_is_reused_and_rebuilt_when_the_archive_changes(small, monkeypatch):
    data_dir, members = small
    market.prepare("market1501", data_dir)
    first = market.load("market1501", data_dir)
    decode = market.crops
    calls = []
    monkeypatch.setattr(market, "crops", lambda paths: calls.append(len(paths)) or decode(paths))
    again = market.load("market1501", data_dir)
    assert calls == [] and torch.equal(again.x, first.x) and again.files == first.files

    changed = dict(members)
    name = f"{TOP}/query/{sorted(QUERY)[0]}"
    changed[name] = jpeg(np.random.default_rng(99))
    write_zip(data_dir / "market1501" / market.ARCHIVE, changed)
    with pytest.raises(DataError, match="run `rdml pipeline prepare market1501`"):  # unpacked from the old archive
        market.load("market1501", data_dir)
    market.prepare("market1501", data_dir)
    rebuilt = market.load("market1501", data_dir)
    assert rebuilt.files != first.files
    assert torch.equal(rebuilt.probes["query"].x[0], expected_crop(changed[name]))
    assert not torch.equal(rebuilt.probes["query"].x[0], first.probes["query"].x[0])
    assert torch.equal(rebuilt.probes["query"].x[1:], first.probes["query"].x[1:])

    calls.clear()
    monkeypatch.setattr(market, "RESIZE", "another rule")  # a cache of another layout is not used
    market.load("market1501", data_dir)
    assert calls == [5, 3, 8, 4]


def test_an_extracted_folder_alone_is_read_and_hashed_by_its_images(small):
    data_dir, members = small
    folder = data_dir / "market1501"
    market.prepare("market1501", data_dir)
    (folder / market.ARCHIVE).unlink()
    lines = sorted(f"{member.split('/', 1)[1]} {hashlib.sha256(blob).hexdigest()}\n"
                   for member, blob in members.items() if member.endswith(".jpg"))
    expected = {f"market1501/{TOP}/": hashlib.sha256("".join(lines).encode()).hexdigest()}
    assert market.files_hash(folder) == expected
    raw = market.load("market1501", data_dir)  # the cache names the archive: decoded from the folder
    assert raw.files == expected and raw.y.tolist() == [0, 0, 1, 1, 2]
    market.prepare("market1501", data_dir)
    assert torch.load(folder / TENSOR_CACHE, weights_only=True)["files"] == expected

    (folder / TOP / "gt_bbox" / MULTIQUERY[0]).write_bytes(jpeg(np.random.default_rng(7)))
    changed = market.load("market1501", data_dir)
    assert changed.files != expected
    row = sorted(MULTIQUERY).index(MULTIQUERY[0])
    assert torch.equal(changed.probes["multiquery"].x[row],
                       expected_crop((folder / TOP / "gt_bbox" / MULTIQUERY[0]).read_bytes()))


@pytest.mark.bad_input
def test_a_missing_archive_says_where_to_put_it(tmp_path):
    for call in (market.prepare, market.load):
        with pytest.raises(DataError) as error:
            call("market1501", tmp_path)
        assert f"{tmp_path / 'market1501'}/" in str(error.value) and market.ARCHIVE in str(error.value)


@pytest.mark.bad_input
def test_load_without_prepare_is_refused(small):
    data_dir, _ = small
    with pytest.raises(DataError, match="is not unpacked yet.*run `rdml pipeline prepare market1501`"):
        market.load("market1501", data_dir)


@pytest.mark.bad_input
@pytest.mark.parametrize("escaping", [f"{TOP}/../../escaped.jpg", "/tmp/rdml-escaped.jpg", f"{TOP}/query/../../../escaped.jpg"])
def test_an_archive_with_a_path_leaving_its_folder_is_refused(tmp_path, escaping):
    members = {**market_members(), escaping: b"x"}
    archive = tmp_path / "data" / "market1501" / market.ARCHIVE
    write_zip(archive, members)
    with pytest.raises(DataError, match="leaves the folder it unpacks into"):
        market.prepare("market1501", tmp_path / "data")
    assert not (tmp_path / "data" / "market1501" / TOP).exists()
    assert not list(tmp_path.rglob("escaped.jpg"))


@pytest.mark.bad_input
def test_an_archive_of_another_layout_or_no_zip_is_refused(tmp_path):
    archive = tmp_path / "market1501" / market.ARCHIVE
    write_zip(archive, {"bounding_box_train/0002_c1s1_000451_03.jpg": b"x"})
    with pytest.raises(DataError, match=f"does not unpack into a folder {TOP}/"):
        market.prepare("market1501", tmp_path)
    archive.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="is not a readable zip archive"):
        market.prepare("market1501", tmp_path)


@pytest.mark.bad_input
@pytest.mark.parametrize("split, name, message", [
    ("query", "0010_c9s1_001051_00.jpg", r"query/0010_c9s1_001051_00\.jpg: '0010_c9s1_001051_00\.jpg' is not a Market"),
    ("train", "-1_c1s1_000401_03.jpg", "-1_c1s1_000401_03.jpg is a junk image in bounding_box_train/"),
])
def test_a_file_that_cannot_be_in_its_folder_is_refused_by_name(tmp_path, monkeypatch, split, name, message):
    """A name that is not Market's pattern (camera 9), and a junk image among the training identities."""
    monkeypatch.setattr(market, "PUBLISHED_COUNTS", SMALL_COUNTS)
    write_zip(tmp_path / "market1501" / market.ARCHIVE, market_members(splits={**SPLITS, split: [*SPLITS[split], name]}))
    with pytest.raises(DataError, match=message):
        market.prepare("market1501", tmp_path)


@pytest.mark.bad_input
def test_the_count_check_lists_every_count_that_differs(small, monkeypatch):
    data_dir, _ = small
    monkeypatch.setattr(market, "PUBLISHED_COUNTS", {"train images": 12_936, "train identities": 751,
                                                     "query images": 3_368, "query identities": 750,
                                                     "gallery images": 19_732, "gallery junk (-1)": 3_819,
                                                     "gallery distractors (0000)": 2_798})
    with pytest.raises(DataError) as error:
        market.prepare("market1501", data_dir)
    message = str(error.value)
    for line in ("train images: 5 found, 12,936 expected", "train identities: 3 found, 751 expected",
                 "query images: 3 found, 3,368 expected", "query identities: 2 found, 750 expected",
                 "gallery images: 8 found, 19,732 expected", "gallery junk (-1): 2 found, 3,819 expected",
                 "gallery distractors (0000): 3 found, 2,798 expected", "a damaged or different archive"):
        assert line in message
    assert not (data_dir / "market1501" / TENSOR_CACHE).exists()

    listing = market.list_archive_folder(data_dir / "market1501" / TOP)
    market.check_counts(listing, SMALL_COUNTS)
    with pytest.raises(DataError, match=r"\(gallery junk \(-1\): 2 found, 3 expected\)"):
        market.check_counts(listing, {**SMALL_COUNTS, "gallery junk (-1)": 3})


def test_the_published_counts_are_the_papers():
    """Market-1501 as the Market-1501 readme and DML §4.1 count it."""
    assert market.PUBLISHED_COUNTS == {"train images": 12936, "train identities": 751, "query images": 3368,
                                       "query identities": 750, "gallery images": 19732, "gallery junk (-1)": 3819,
                                       "gallery distractors (0000)": 2798}


def test_tiny_market1501_is_a_retrieval_set_read_by_the_real_reader(monkeypatch):
    decode = market.crops
    calls = []
    monkeypatch.setattr(market, "crops", lambda paths: calls.append(len(paths)) or decode(paths))
    data = load_dataset("tiny_market1501", split_seed=0, test_fraction=0.25, normalize="inception")
    counts = generated.TINY_MARKET
    queries = 2 * counts["test_ids"]
    gallery = 3 * counts["gallery_per_camera"] * counts["test_ids"] + counts["junk"] + counts["distractors"]
    assert calls == [len(data.y_train), queries, gallery, queries * counts["multiquery_per_query"]]
    assert data.x_train.shape == (12 * 2 * counts["train_per_camera"], 3, 160, 64)
    assert sorted(set(data.y_train.tolist())) == list(range(data.num_classes)) == list(range(12))
    assert data.x_test.shape == (0, 3, 160, 64) and data.y_test.shape == (0,)
    shapes = {split: tuple(p.x.shape) for split, p in data.probes.items()}
    assert shapes == {"query": (queries, 3, 160, 64), "gallery": (gallery, 3, 160, 64),
                      "multiquery": (queries * counts["multiquery_per_query"], 3, 160, 64)}
    ids, cams = data.probe_labels("gallery")
    assert (ids == -1).sum() == counts["junk"] and (ids == 0).sum() == counts["distractors"]
    assert cams.min() >= 1 and cams.max() <= 6
    query_ids, query_cams = data.probe_labels("query")
    assert not set(query_ids.tolist()) & {0, -1}
    assert all(((ids == i) & (cams == c)).any() and ((ids == i) & (cams != c)).any()  # same- and other-camera matches
               for i, c in zip(query_ids.tolist(), query_cams.tolist()))
    pooled_ids, pooled_cams = data.probe_labels("multiquery")
    assert all(((pooled_ids == i) & (pooled_cams == c)).sum() == counts["multiquery_per_query"]
               for i, c in zip(query_ids.tolist(), query_cams.tolist()))

    batches = list(data.eval_batches("query", 5))
    assert [len(y) for _, y in batches] == [5, 5, 5, 1]
    assert all(x.shape[1:] == (3, 224, 224) and x.dtype == torch.float32 for x, _ in batches)
    assert torch.equal(torch.cat([y for _, y in batches]), query_ids)
    assert -1.0 <= min(x.min() for x, _ in batches) and max(x.max() for x, _ in batches) <= 1.0


def test_tiny_market1501_identities_are_retrievable_and_not_trivially():
    """Mean colours of 8 × 4 blocks find the same identity in another camera far above chance (a gallery in a
    shuffled order), and not perfectly: a network has something to learn."""
    raw = generated.load("tiny_market1501", "unused")
    query, gallery = raw.probes["query"], raw.probes["gallery"]

    def features(x):
        return torch.nn.functional.adaptive_avg_pool2d(x.double(), (8, 4)).flatten(1).numpy()

    def score(gallery_features):
        return retrieval.evaluate(retrieval.distances(features(query.x), gallery_features), query.ids.numpy(),
                                  query.cams.numpy(), gallery.ids.numpy(), gallery.cams.numpy()).mAP

    found = score(features(gallery.x))
    shuffled = score(features(gallery.x)[np.random.default_rng(0).permutation(len(gallery.ids))])
    assert 0.6 < found < 1.0 and shuffled < 0.3
    assert torch.equal(generated.load("tiny_market1501", "unused").x, raw.x)
