"""ImageNet as a streamed data set (rdml.data.imagenet) on tiny archives in the real ILSVRC2012 formats, generated in
tmp_path: prepare's shards (WebDataset pairs readable by tarfile, the index's offsets, labels against the archives
read independently here, deterministic bytes), its refusals (a path leaving the folder, an unexpected name, a wrong
count, a missing or replaced archive, a devkit whose ids are not in sorted order), the loader (0 and 2 workers and a
resumed epoch bit for bit, eval batches in order), and slim's preprocessing op by op against independent
computations: TF 1's resize as rdml.data.resize.resize_tf's matrices, adjust_saturation against a per-pixel float32
transcription of TF's kernel and against colorsys, the central crop's closed form, the crop sampler's ranges, and
the whole training and evaluation transforms against float64 compositions."""

import colorsys
import functools
import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from rdml.data import imagenet
from rdml.data.augment import augment_batch
from rdml.data.base import epoch_batches, load_dataset
from rdml.data.resize import resize_tf
from rdml.data.vision import DataError
from rdml.keys import ConfigError

TINY = "tiny_imagenet"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """tiny_imagenet's archives and shards (7 samples a shard, so several shards a split) in a data folder."""
    root = tmp_path_factory.mktemp("data")
    imagenet.write_tiny_archives(root / TINY)
    imagenet.prepare(TINY, root, per_shard=7)
    return root


def independent_reading(folder):
    """{key: (label, bytes)} of the archives, read here without rdml as torchvision's ImageNet reads them: labels in
    sorted WNID order (ImageFolder), the ground truth's line k the ILSVRC2012_ID of ILSVRC2012_val_k, mapped to its
    WNID by meta.mat (parse_devkit_archive's idx_to_wnid)."""
    import scipy.io

    with tarfile.open(folder / imagenet.ARCHIVES["devkit"], "r:gz") as devkit:
        meta = scipy.io.loadmat(io.BytesIO(devkit.extractfile(imagenet.META).read()), squeeze_me=True)["synsets"]
        truth = [int(line) for line in devkit.extractfile(imagenet.GROUND_TRUTH).read().split()]
    leaves = sorted(str(s["WNID"]) for s in meta if int(s["num_children"]) == 0)
    idx_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in meta if int(s["num_children"]) == 0}
    samples = {}
    with tarfile.open(folder / imagenet.ARCHIVES["train"]) as outer:
        for member in outer.getmembers():
            wnid = member.name[:-4]
            with tarfile.open(fileobj=outer.extractfile(member)) as inner:
                for image in inner.getmembers():
                    samples[image.name[:-5]] = (leaves.index(wnid), inner.extractfile(image).read())
    val = {}
    with tarfile.open(folder / imagenet.ARCHIVES["val"]) as handle:
        for image in handle.getmembers():
            wnid = idx_to_wnid[truth[int(image.name[15:23]) - 1]]
            val[image.name[:-5]] = (leaves.index(wnid), handle.extractfile(image).read())
    return samples, val


def test_prepare_writes_webdataset_shards_with_an_index_of_the_archives_bytes(prepared):
    folder = prepared / TINY
    marker = imagenet.read_marker(folder)
    counts = imagenet.expected_counts(TINY)
    assert marker["counts"] == counts == {"classes": 5, "train": 58, "val": 10}
    train, val = independent_reading(folder)
    for split, expected in (("train", train), ("test", val)):
        record = marker["splits"][split]
        index = np.load(folder / "shards" / record["index"])
        assert record["samples"] == len(index) == len(expected)
        assert [s["samples"] for s in record["shards"]] == [7] * (len(index) // 7) + ([len(index) % 7] if len(index) % 7 else [])
        keys = []
        for shard_no, shard in enumerate(record["shards"]):
            path = folder / "shards" / shard["name"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
            with tarfile.open(path) as handle:  # any tar reader; WebDataset groups <key>.cls and <key>.jpg
                members = handle.getmembers()
                assert [m.name for m in members] == sorted(m.name for m in members)
                assert all((m.mtime, m.uid, m.gid, m.mode, m.uname, m.gname) == (0, 0, 0, 0o644, "", "") for m in members)
                for cls, jpg in zip(members[::2], members[1::2]):
                    key = cls.name[:-4]
                    assert (cls.name, jpg.name) == (f"{key}.cls", f"{key}.jpg")
                    label, data = expected[key]
                    assert int(handle.extractfile(cls).read()) == label and handle.extractfile(jpg).read() == data
                    row = index[len(keys)]
                    assert (row["shard"], row["offset"], row["size"], row["label"]) == (shard_no, jpg.offset_data, len(data), label)
                    keys.append(key)
        assert keys == sorted(expected)  # every image once, in sorted key order
        with open(folder / "shards" / record["shards"][1]["name"], "rb") as handle:  # the index alone finds the bytes
            row = index[7]
            handle.seek(int(row["offset"]))
            assert handle.read(int(row["size"])) == expected[keys[7]][1]
    assert marker["classes"] == sorted(marker["classes"])
    hashes = {a: hashlib.sha256((folder / a).read_bytes()).hexdigest() for a in imagenet.ARCHIVES.values()}
    assert {a: v["sha256"] for a, v in marker["archives"].items()} == hashes


def test_preparing_again_gives_the_same_bytes(prepared, tmp_path):
    (tmp_path / TINY).mkdir()
    for archive in imagenet.ARCHIVES.values():
        (tmp_path / TINY / archive).write_bytes((prepared / TINY / archive).read_bytes())
    again = imagenet.prepare(TINY, tmp_path, per_shard=7)
    first = json.loads((prepared / TINY / "shards" / imagenet.MARKER).read_text())
    assert json.loads((again / imagenet.MARKER).read_text()) == first
    # members stored as ./name (some tar writers do) are the same members
    def dotted(members):
        for member, _ in members:
            member.name = "./" + member.name
        return members

    rewrite_tar(tmp_path / TINY / imagenet.ARCHIVES["val"], dotted)
    dotted_marker = json.loads((imagenet.prepare(TINY, tmp_path, per_shard=7) / imagenet.MARKER).read_text())
    assert dotted_marker["splits"] == first["splits"]
    assert not [p for p in (tmp_path / TINY).iterdir() if p.name.startswith(".shards")]  # no scratch left


def rewrite_tar(path, change):
    """The tar at `path` rewritten with `change(list of (TarInfo, bytes))` applied to its members."""
    with tarfile.open(path) as handle:
        members = [(m, handle.extractfile(m).read()) for m in handle.getmembers()]
    members = change(members)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as handle:
        for member, data in members:
            member.size = len(data)
            handle.addfile(member, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())


def renamed(index, name):
    def change(members):
        members[index][0].name = name
        return members
    return change


def copy_archives(source, target):
    target.mkdir(parents=True)
    for archive in imagenet.ARCHIVES.values():
        (target / archive).write_bytes((source / archive).read_bytes())
    return target


@pytest.mark.bad_input
@pytest.mark.parametrize("archive,change,message", [
    ("val", renamed(0, "../ILSVRC2012_val_00000001.JPEG"), "a path that leaves the folder"),
    ("val", renamed(0, "/tmp/ILSVRC2012_val_00000001.JPEG"), "a path that leaves the folder"),
    ("train", renamed(0, "../n00000001.tar"), "a path that leaves the folder"),
    ("val", renamed(0, "ILSVRC2012_val_00000001.jpg"), "which is not a validation image named like"),
    ("val", lambda m: m[1:], r"holds 9 validation images .*ILSVRC2012_val_00000001..00000010 expected"),
    ("val", lambda m: m + [(tarfile.TarInfo("ILSVRC2012_val_00000011.JPEG"), m[0][1])], "holds 11 validation images"),
    ("train", lambda m: m[1:], "holds 4 per-class tars, 5 expected; missing"),
    ("val", lambda m: [(m[0][0], b"GIF89a" + m[0][1])] + m[1:], "is neither a JPEG nor a PNG"),
])
def test_prepare_refuses_archives_that_are_not_ilsvrc2012s(prepared, tmp_path, archive, change, message):
    folder = copy_archives(prepared / TINY, tmp_path / TINY)
    rewrite_tar(folder / imagenet.ARCHIVES[archive], change)
    with pytest.raises(DataError, match=message):
        imagenet.prepare(TINY, tmp_path)
    assert not (folder / "shards").exists() and not [p for p in folder.iterdir() if p.name.startswith(".shards")]


@pytest.mark.tamper
def test_a_truncated_archive_is_refused_and_a_killed_prepares_scratch_removed(prepared, tmp_path):
    folder = copy_archives(prepared / TINY, tmp_path / TINY)
    (folder / ".shards-killed").mkdir()  # what a killed prepare leaves
    (folder / ".shards-killed" / "train-000000.tar.tmp").write_bytes(b"partial")
    val = folder / imagenet.ARCHIVES["val"]
    val.write_bytes(val.read_bytes()[: val.stat().st_size // 2 + 100])
    with pytest.raises(DataError, match="ILSVRC2012_img_val.tar cannot be read to its end .*truncated"):
        imagenet.prepare(TINY, tmp_path)
    assert not [p for p in folder.iterdir() if p.name.startswith(".shards")] and not (folder / "shards").exists()


@pytest.mark.bad_input
def test_prepare_refuses_a_class_tar_with_a_wrong_count_or_another_class(prepared, tmp_path):
    folder = copy_archives(prepared / TINY, tmp_path / TINY)

    def drop_one_image(members):
        inner, data = members[0]
        buffer = io.BytesIO(data)
        with tarfile.open(fileobj=buffer) as handle:
            images = [(m, handle.extractfile(m).read()) for m in handle.getmembers()]
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as handle:
            for m, d in images[1:]:
                handle.addfile(m, io.BytesIO(d))
        return [(inner, out.getvalue())] + members[1:]

    rewrite_tar(folder / imagenet.ARCHIVES["train"], drop_one_image)
    with pytest.raises(DataError, match="holds 57 training images, 58 expected"):
        imagenet.prepare(TINY, tmp_path)
    copy_archives(prepared / TINY, tmp_path / "again" / TINY)

    def foreign_image(members):
        inner, data = members[0]
        with tarfile.open(fileobj=io.BytesIO(data)) as handle:
            images = [(m, handle.extractfile(m).read()) for m in handle.getmembers()]
        images[0][0].name = "n00000001_1.JPEG"
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as handle:
            for m, d in images:
                handle.addfile(m, io.BytesIO(d))
        return [(inner, out.getvalue())] + members[1:]

    rewrite_tar(tmp_path / "again" / TINY / imagenet.ARCHIVES["train"], foreign_image)
    with pytest.raises(DataError, match="an image named for another class"):
        imagenet.prepare(TINY, tmp_path / "again")


def test_the_devkits_ids_are_mapped_to_sorted_wnid_labels(prepared):
    """The real devkit's ILSVRC2012_IDs are not in WNID order (1 is n02119789, kit fox); neither are the generated
    one's, so a reader taking id − 1 as the label fails here."""
    import scipy.io

    with tarfile.open(prepared / TINY / imagenet.ARCHIVES["devkit"], "r:gz") as devkit:
        meta = scipy.io.loadmat(io.BytesIO(devkit.extractfile(imagenet.META).read()), squeeze_me=True)["synsets"]
    by_id = [str(s["WNID"]) for s in sorted(meta, key=lambda s: int(s["ILSVRC2012_ID"])) if int(s["num_children"]) == 0]
    assert by_id != sorted(by_id) and len(meta) == 5 + 3
    wnids, labels = imagenet.read_devkit(prepared / TINY / imagenet.ARCHIVES["devkit"], 5, 10)
    assert wnids == sorted(by_id) == imagenet.read_marker(prepared / TINY)["classes"]
    _, val = independent_reading(prepared / TINY)
    assert labels.tolist() == [val[key][0] for key in sorted(val)]


def devkit_with(folder, wnids_by_id, truth=None):
    """`folder`'s devkit archive rewritten with leaves `wnids_by_id` (ILSVRC2012_ID 1, 2, ...) and ground truth ids."""
    with tarfile.open(folder / imagenet.ARCHIVES["devkit"], "r:gz") as handle:
        members = [(m, handle.extractfile(m).read() if m.isfile() else None) for m in handle.getmembers()]
    if truth is not None:
        members = [(m, "".join(f"{t}\n" for t in truth).encode() if m.name == imagenet.GROUND_TRUTH else d)
                   for m, d in members]
    members = [(m, imagenet._meta_mat(wnids_by_id, ["n00000009"]) if m.name == imagenet.META else d) for m, d in members]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        for m, d in members:
            if d is not None:
                m.size = len(d)
            handle.addfile(m, None if d is None else io.BytesIO(d))
    (folder / imagenet.ARCHIVES["devkit"]).write_bytes(buffer.getvalue())


@pytest.mark.bad_input
@pytest.mark.parametrize("wnids,truth,message", [
    (["n00000005", "n00000002", "n00000003", "n00000002", "n00000001"], None, "are not 5 distinct ids like n01440764"),
    (["n00000005", "n00000002", "n00000003", "n0000004", "n00000001"], None, r"distinct ids like n01440764 \(n0000004\)"),
    (["n00000005", "n00000002", "n00000003", "n00000004"], None, "has 4 leaf synsets .* 5 expected"),
    (["n00000005", "n00000002", "n00000003", "n00000004", "n00000001"], [1] * 9, "holds 9 ids in .1, 1.; 10 ids in .1, 5."),
    (["n00000005", "n00000002", "n00000003", "n00000004", "n00000001"], [6] + [1] * 9, r"holds 10 ids in \[1, 6\]"),
])
def test_prepare_refuses_a_devkit_that_is_not_ilsvrc2012s(tmp_path, wnids, truth, message):
    folder = tmp_path / TINY
    imagenet.write_tiny_archives(folder)
    devkit_with(folder, wnids, truth)
    with pytest.raises(DataError, match=message):
        imagenet.prepare(TINY, tmp_path)


@pytest.mark.bad_input
def test_a_missing_archive_is_named_with_where_to_put_it(tmp_path):
    folder = tmp_path / "imagenet"
    imagenet.write_tiny_archives(folder)
    (folder / imagenet.ARCHIVES["val"]).unlink()
    with pytest.raises(DataError, match=r"ILSVRC2012_img_val.tar is missing: ImageNet has no public download.*"
                                        r"rdml pipeline prepare imagenet"):
        imagenet.prepare("imagenet", tmp_path)
    with pytest.raises(DataError, match=r"holds no prepared shards .*rdml pipeline prepare imagenet"):
        load_dataset("imagenet", split_seed=0, test_fraction=0.25, data_dir=tmp_path, normalize="inception")


@pytest.mark.bad_input
def test_imagenet_archives_of_another_size_or_md5_are_refused_before_the_long_read(prepared, tmp_path):
    folder = copy_archives(prepared / TINY, tmp_path / "imagenet")  # the tiny archives under the real set's name
    with pytest.raises(DataError, match=r"ILSVRC2012_img_train.tar is [\d,]+ bytes, not the published 147,897,477,120"):
        imagenet.prepare("imagenet", tmp_path)
    for part in ("train", "val"):
        with open(folder / imagenet.ARCHIVES[part], "r+b") as handle:
            handle.truncate(imagenet.PUBLISHED_SIZES[part])  # sparse: the published size, not its bytes
    with pytest.raises(DataError, match="ILSVRC2012_devkit_t12.tar.gz has md5 [0-9a-f]+, not the published fa75699e"):
        imagenet.prepare("imagenet", tmp_path)
    assert not (folder / "shards").exists()


@pytest.mark.tamper
def test_a_replaced_archive_is_never_paired_with_old_shards(prepared, tmp_path):
    folder = copy_archives(prepared / TINY, tmp_path / TINY)
    imagenet.prepare(TINY, tmp_path, per_shard=7)
    imagenet.load(TINY, tmp_path)  # unchanged archives pass (hashed once, then by size and mtime)
    rewrite_tar(folder / imagenet.ARCHIVES["val"], lambda m: m[::-1])  # the same images in another order
    with pytest.raises(DataError, match="is not the archive the shards .* were written from"):
        imagenet.load(TINY, tmp_path)
    for archive in imagenet.ARCHIVES.values():  # archives moved away: the shards' record stands for them
        (folder / archive).unlink()
    assert imagenet.load(TINY, tmp_path).split_size("test") == 10


@pytest.mark.tamper
def test_a_truncated_shard_is_refused(prepared, tmp_path):
    folder = copy_archives(prepared / TINY, tmp_path / TINY)
    imagenet.prepare(TINY, tmp_path)
    shard = folder / "shards" / "val-000000.tar"
    whole = shard.read_bytes()
    shard.write_bytes(whole[:-20_000])
    with pytest.raises(DataError, match="val-000000.tar is missing or not .* bytes as written"):
        imagenet.read_marker(folder)  # what load reads first
    assert imagenet.load(TINY, tmp_path).split_size("test") == 10  # the generated set is made again instead
    assert shard.read_bytes() == whole


@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision are deprecated")
def test_grey_cmyk_and_png_images_decode_to_rgb_as_torchvision_decodes_them(prepared):
    from torchvision.io import ImageReadMode, decode_image

    train, _ = independent_reading(prepared / TINY)
    modes = {}
    for key, (_, data) in train.items():
        image = Image.open(io.BytesIO(data))
        modes[image.format, image.mode] = modes.get((image.format, image.mode), 0) + 1
        pixels = imagenet.decode(data)
        assert pixels.shape == (3, image.height, image.width) and pixels.dtype == np.uint8
        other = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB).numpy()
        np.testing.assert_array_equal(pixels, other)
    assert modes == {("JPEG", "RGB"): 55, ("JPEG", "L"): 1, ("JPEG", "CMYK"): 1, ("PNG", "RGB"): 1}


# ------------------------------------------------------------------------------------------------ the ops


def test_central_crop_box_is_tf_central_crop():
    # start = int((s - s * 0.875) / 2): 375 -> int(23.4375) = 23, 500 -> int(31.25) = 31; size = s - 2 start
    assert imagenet.central_crop_box(375, 500) == (23, 31, 329, 438)
    assert imagenet.central_crop_box(224, 224) == (14, 14, 196, 196)
    assert imagenet.central_crop_box(7, 9) == (0, 0, 7, 9)  # (7 - 6.125) / 2 = 0.44 -> 0
    assert imagenet.central_crop_box(100, 60, 1.0) == (0, 0, 100, 60)


@pytest.mark.parametrize("box", [(0, 0, 375, 500), (23, 31, 329, 438), (100, 50, 60, 45), (5, 7, 224, 224), (0, 0, 1, 3)])
def test_resize_bilinear_is_tf_legacy_resize(box):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(3, 375, 500), dtype=np.uint8)
    ours = imagenet.resize_bilinear(image, box)
    top, left, h, w = box
    crop = torch.from_numpy(image[:, top: top + h, left: left + w].astype(np.float64) / 255)
    expected = resize_tf(crop[None], imagenet.OUTPUT)[0].numpy()
    assert ours.dtype == np.float32 and ours.shape == (3, 224, 224)
    np.testing.assert_allclose(ours, expected, atol=2e-7, rtol=0)
    if (h, w) == imagenet.OUTPUT:  # scale 1: the pixels themselves, exactly
        np.testing.assert_array_equal(ours, image[:, top: top + h, left: left + w].astype(np.float32) * np.float32(1 / 255))


def tf_adjust_saturation_pixel(r, g, b, scale):
    """TF's AdjustSaturation kernel for one pixel, transcribed line by line in float32 (adjust_saturation_op.cc L88-171,
    L199-205 of tensorflow v1.5), the double constants added in double as C++ does."""
    f = np.float32
    r, g, b, scale = f(r), f(g), f(b), f(scale)
    vv = max(r, max(g, b))
    spread = vv - min(r, min(g, b))
    s = spread / vv if vv > 0 else f(0)
    with np.errstate(divide="ignore", invalid="ignore"):  # range 0: inf · 0, overwritten below as in the kernel
        norm = f(1) / (f(6) * spread)
        if r == vv:
            hh = norm * (g - b)
        elif g == vv:
            hh = f(float(norm * (b - r)) + 2.0 / 6.0)
        else:
            hh = f(float(norm * (r - g)) + 4.0 / 6.0)
    if spread <= 0:
        hh = f(0)
    if hh < 0:
        hh = hh + f(1)
    s = min(f(1), max(f(0), s * scale))
    c = s * vv
    m = vv - c
    dh = hh * f(6)
    category = int(dh)
    fmodu = dh
    while fmodu <= 0:
        fmodu += f(2)
    while fmodu >= f(2):
        fmodu -= f(2)
    x = c * (f(1) - abs(fmodu - f(1)))
    rr, gg, bb = {0: (c, x, 0), 1: (x, c, 0), 2: (0, c, x), 3: (0, x, c), 4: (x, 0, c), 5: (c, 0, x)}.get(category, (0, 0, 0))
    return f(rr) + m, f(gg) + m, f(bb) + m


def test_adjust_saturation_is_tfs_kernel_and_colorsys_hsv():
    rng = np.random.default_rng(5)
    x = rng.random((3, 12, 12), dtype=np.float32)
    edge = np.array([[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1],
                     [1, 0.5, np.float32(0.5) + np.float32(2 ** -24)],  # hue -2e-8 + 1 rounds to 1.0: category 6
                     [0.2, 0.9, 0.9], [0.9, 0.2, 0.9], [-0.05, 0.5, 1.02]], dtype=np.float32)
    x[:, 0, : len(edge)] = edge.T
    for factor in (np.float32(0.5), np.float32(1.0), np.float32(1.4999), np.float32(0.7321)):
        ours = imagenet.adjust_saturation(x, factor)
        kernel = np.array([[tf_adjust_saturation_pixel(*x[:, i, j], factor) for j in range(12)] for i in range(12)],
                          dtype=np.float32).transpose(2, 0, 1)
        np.testing.assert_array_equal(ours, kernel)  # the same float32 operations, bit for bit
        for i in range(12):
            for j in range(12):
                if (i, j) in ((0, 8), (0, 11)):  # the kernel's hue-rounding quirk; colorsys has no negative values
                    continue
                h, s, v = colorsys.rgb_to_hsv(*map(float, x[:, i, j]))
                expected = colorsys.hsv_to_rgb(h, min(1.0, max(0.0, s * float(factor))), v)
                np.testing.assert_allclose(ours[:, i, j], expected, atol=1e-6)  # float32 rounding, a few ulps
    quirk = imagenet.adjust_saturation(edge[8][:, None, None].copy(), np.float32(1.0))[:, 0, 0]
    np.testing.assert_array_equal(quirk, [0.5, 0.5, 0.5])  # TF's kernel: (0, 0, 0) + m where the hue rounded up to 1


def test_generate_random_crop_follows_the_kernels_arithmetic():
    calls = []

    def lowest(n):
        calls.append(n)
        return 0

    # 500 × 375, ratio 1: min area 9,375, height from lrint(sqrt(9375)) = 97 to lrint(sqrt(187500)) = 433 capped at
    # the image's 375; drawing 0 gives 97 × 97 = 9,409 ≥ 9,375; y in [0, 375 - 97), x in [0, 500 - 97)
    assert imagenet.generate_random_crop(500, 375, 0.05, 1.0, np.float32(1.0), lowest) == (0, 0, 97, 97)
    assert calls == [375 - 97 + 1, 375 - 97, 500 - 97]
    calls.clear()
    highest = lambda n: n - 1  # noqa: E731
    # ratio 1.33 with the whole area: max height lrint(sqrt(187500 / 1.33)) = 375; the width round(375 · 1.33) = 499
    assert imagenet.generate_random_crop(500, 375, 0.05, 1.0, np.float32(1.33), highest) == (0, 0, 375, 499)
    # ratio 0.75: 375 · 0.75 = 281.25 -> 281 wide, full height; x in [0, 219): the last, 218
    assert imagenet.generate_random_crop(500, 375, 0.05, 1.0, np.float32(0.75), highest) == (0, 218, 375, 281)
    # a height that rounding leaves below the minimum area is raised by one: 10 × 10 image, area ≥ 0.5 at ratio 1.3:
    # height lrint(sqrt(50 / 1.3)) = lrint(6.20) = 6, width lrint(7.8) = 8: 48 < 50, so 7 × lrint(9.1) = 9: 63
    assert imagenet.generate_random_crop(10, 10, 0.5, 1.0, np.float32(1.3), lambda n: 0) == (0, 0, 7, 9)
    assert imagenet.generate_random_crop(10, 10, 0.5, 0.4, np.float32(1.0), lambda n: 0) is None  # min > max


def test_distorted_boxes_stay_in_slims_ranges():
    rng = np.random.default_rng(11)
    boxes = np.array([imagenet.sample_distorted_bounding_box(rng, 375, 500) for _ in range(3000)])
    top, left, h, w = boxes.T
    whole = (h == 375) & (w == 500)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 375).all() and (left + w <= 500).all()
    assert ((top + h < 375) | (h == 375)).all() and ((left + w < 500) | (w == 500)).all()  # Uniform(n) is [0, n)
    area = h * w / (375 * 500)
    assert (area >= 0.1).all() and (area <= 1).all()  # min_object_covered 0.1 of the whole-image box
    ratio = w / h
    assert (np.abs(w - np.rint(h * ratio)) == 0).all()
    assert ((ratio >= 0.75 - 0.5 / h) & (ratio <= 1.33 + 0.5 / h) | whole).all()
    # the distribution against an independent float64 sampler of the kernel's description: ratio uniform in
    # [0.75, 1.33), height a uniform whole number in [round(sqrt(0.05 HW / r)), min(H, W / r)], width round(h r),
    # kept when it covers 10 % of the image, else drawn again
    other = np.random.default_rng(12)
    heights, widths = [], []
    while len(heights) < 3000:
        r = other.uniform(0.75, 1.33)
        low, high = round((0.05 * 375 * 500 / r) ** 0.5), min(375, int((500 + 0.5) / r), round((375 * 500 / r) ** 0.5))
        hh = int(other.integers(low, high + 1))
        ww = round(hh * r)
        if 0.1 * 375 * 500 <= hh * ww <= 375 * 500 and ww <= 500:
            heights.append(hh)
            widths.append(ww)
    heights, widths = np.array(heights), np.array(widths)
    for ours, theirs in ((area, heights * widths / (375 * 500)), (h / 375, heights / 375), (ratio, widths / heights)):
        assert abs(ours.mean() - theirs.mean()) < 4 * np.hypot(ours.std(), theirs.std()) / np.sqrt(3000)
    assert whole.mean() < 0.01  # 100 attempts: the whole image almost never
    # a tall thin photo fails often: 1000 × 10 fits a ratio ≥ 0.75 box of area ≥ 10 % only ~10 px wide
    thin = [imagenet.sample_distorted_bounding_box(rng, 1000, 10) for _ in range(200)]
    assert all(b == (0, 0, 1000, 10) or (b[3] <= 10 and b[2] * b[3] >= 1000) for b in thin)


def float64_train(image, draws):
    """preprocess_for_train composed here in float64: crop by slicing, rdml.data.resize.resize_tf, flip, brightness,
    colorsys saturation, clip, scale."""
    top, left, h, w = draws.box
    x = torch.from_numpy(image[:, top: top + h, left: left + w].astype(np.float64) / 255)
    x = resize_tf(x[None], imagenet.OUTPUT)[0].numpy()
    if draws.flip:
        x = x[:, :, ::-1]

    def saturate(x):
        out = np.empty_like(x)
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                h, s, v = colorsys.rgb_to_hsv(*x[:, i, j])
                out[:, i, j] = colorsys.hsv_to_rgb(h, min(1.0, max(0.0, s * float(draws.factor))), v)
        return out

    x = saturate(x + float(draws.delta)) if draws.ordering == 0 else saturate(x) + float(draws.delta)
    return (np.clip(x, 0, 1) - 0.5) * 2


def test_train_and_eval_transforms_are_slims_preprocessing_in_float64():
    rng = np.random.default_rng(2)
    image = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((90, 70), Image.BILINEAR))
    image = np.ascontiguousarray(image.transpose(2, 0, 1))
    for draws in (imagenet.TrainDraws((3, 5, 50, 61), True, 0, np.float32(0.1), np.float32(1.3)),
                  imagenet.TrainDraws((0, 0, 70, 90), False, 2, np.float32(-0.12), np.float32(0.55))):
        ours = imagenet.train_transform(image, draws)
        assert ours.dtype == np.float32 and ours.shape == (3, 224, 224)
        expected = float64_train(image, draws)
        np.testing.assert_allclose(ours, expected, atol=4e-6, rtol=0)
    ours = imagenet.eval_transform(image)
    # central_crop(0.875) of 70 × 90: start int(4.375) = 4, int(5.625) = 5; then resize and scale
    expected = resize_tf(torch.from_numpy(image[:, 4:66, 5:85].astype(np.float64) / 255)[None], (224, 224))[0].numpy()
    np.testing.assert_allclose(ours, (expected - 0.5) * 2, atol=4e-7, rtol=0)


def test_draws_come_from_seed_epoch_and_row_alone():
    a = imagenet.draw_train(imagenet.sample_generator(3, 2, 17), 375, 500)
    assert a == imagenet.draw_train(imagenet.sample_generator(3, 2, 17), 375, 500)
    others = [imagenet.draw_train(imagenet.sample_generator(*key), 375, 500) for key in ((3, 2, 18), (3, 3, 17), (4, 2, 17))]
    assert all(o != a for o in others)
    draws = [imagenet.draw_train(imagenet.sample_generator(0, 1, row), 375, 500) for row in range(2000)]
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55
    assert set(np.bincount([d.ordering for d in draws])) and len(np.bincount([d.ordering for d in draws])) == 4
    deltas, factors = np.array([d.delta for d in draws]), np.array([d.factor for d in draws])
    assert deltas.min() >= -32 / 255 - 1e-7 and deltas.max() < 32 / 255 and abs(deltas.mean()) < 0.01
    assert factors.min() >= 0.5 and factors.max() < 1.5 and abs(factors.mean() - 1) < 0.03


# ------------------------------------------------------------------------------------------------ the loader


def streamed(root, workers=0):
    return load_dataset(TINY, split_seed=0, test_fraction=0.25, data_dir=root, normalize="inception", workers=workers)


def epoch(data, start=0, augment="inception"):
    batches = list(data.train_batches(16, seed=7, epoch=3, start=start))
    return [(b.index, b.labels, b.inputs(augment)) for b in batches]


def test_zero_and_two_workers_and_a_resumed_epoch_give_the_same_batches_bit_for_bit(prepared, monkeypatch):
    data = streamed(prepared)
    assert data.steps_per_epoch(16) == 4 and data.split_size("train") == 58 and data.split_size("val") == 0
    full = epoch(data)
    rows = list(epoch_batches(58, 16, seed=7, epoch=3))
    assert [i for i, _, _ in full] == [0, 1, 2, 3] and [len(x) for _, _, x in full] == [16, 16, 16, 10]
    for (_, labels, x), r in zip(full, rows):
        assert torch.equal(labels, data.y_train[r]) and x.dtype == torch.float32 and x.shape[1:] == (3, 224, 224)
        assert -1 <= x.min() and x.max() <= 1
    with monkeypatch.context() as patch:
        patch.setattr(imagenet, "CHUNK", 5)  # workers decode chunks of 5, put back into batches of 16
        patch.setattr(imagenet, "MAX_OPEN", 2)  # and keep 2 of the 9 training shards open
        two = epoch(streamed(prepared, workers=2))
    resumed = epoch(data, start=2)
    assert [i for i, _, _ in resumed] == [2, 3]
    for (i, labels, x), (j, labels2, x2) in zip(full, two):
        assert i == j and torch.equal(labels, labels2) and torch.equal(x, x2)
    for (_, labels, x), (_, labels2, x2) in zip(full[2:], resumed):
        assert torch.equal(labels, labels2) and torch.equal(x, x2)
    # each sample is its own draw: row r's image is train_transform of its decoded bytes under (7, 3, r)
    samples = imagenet._Samples(data.paths["train"], data.index["train"])
    row = int(rows[1][5])
    image = imagenet.decode(samples.read(row))
    expected = imagenet.train_transform(image, imagenet.draw_train(imagenet.sample_generator(7, 3, row), *image.shape[1:]))
    assert torch.equal(full[1][2][5], torch.from_numpy(expected))
    other = epoch(data, augment=functools.partial(augment_batch, kind="inception"))  # the loop's augment, accepted
    assert all(torch.equal(a[2], b[2]) for a, b in zip(full, other))


def test_eval_batches_are_slims_eval_preprocessing_in_row_order(prepared):
    data = streamed(prepared)
    _, val = independent_reading(prepared / TINY)
    keys = sorted(val)
    seen = 0
    for x, y in data.eval_batches("test", 4):
        for k in range(len(y)):
            label, raw = val[keys[seen]]
            assert int(y[k]) == label
            assert torch.equal(x[k], torch.from_numpy(imagenet.eval_transform(imagenet.decode(raw))))
            seen += 1
    assert seen == data.split_size("test") == 10
    assert data.chance_accuracy == torch.bincount(data.y_test).max().item() / 10
    assert data.num_classes == 5 and data.spec.input_shape == (3, 224, 224)
    x, _ = next(data.eval_batches("train", 3))
    assert x.shape == (3, 3, 224, 224)
    with pytest.raises(ValueError, match="has no 'val' split"):
        next(data.eval_batches("val", 3))


@pytest.mark.bad_input
def test_the_streamed_set_refuses_what_it_cannot_do(prepared):
    data = streamed(prepared)
    with pytest.raises(ConfigError, match="batches=own .* is not available on the streamed data set"):
        data.student_train_batches(16, seed=0, epoch=1, student=1)
    batches = list(data.train_batches(16, seed=0, epoch=1))
    batches[1].inputs("inception")
    with pytest.raises(ConfigError, match="batch 0 of epoch 1 was read already"):
        batches[0].inputs("inception")
    with pytest.raises(ConfigError, match="decoded with augment=inception; a streamed data set gives one view"):
        batches[2].inputs(None)
    with pytest.raises(ConfigError, match="augments in its decoding workers"):
        list(data.train_batches(16, seed=0, epoch=1))[0].inputs(lambda x: x)
    with pytest.raises(ConfigError, match="augment='flip' is not allowed"):
        list(data.train_batches(16, seed=0, epoch=1))[0].inputs("flip")
    with pytest.raises(ConfigError, match="workers=-1 must be an integer >= 0"):
        streamed(prepared, workers=-1)
    with pytest.raises(ConfigError, match="val_fraction=0.2: dataset tiny_imagenet is streamed"):
        load_dataset(TINY, split_seed=0, test_fraction=0.25, data_dir=prepared, normalize="inception", val_fraction=0.2)


def test_in_memory_sets_resume_an_epoch_at_a_batch():
    data = load_dataset("synthetic", split_seed=0, test_fraction=0.25)
    full = [b.rows for b in data.train_batches(64, seed=3, epoch=2)]
    tail = [b.rows for b in data.train_batches(64, seed=3, epoch=2, start=3)]
    assert len(full) == 10 and len(tail) == 7 and all(torch.equal(a, b) for a, b in zip(full[3:], tail))
    own = [b.rows for b in data.student_train_batches(64, seed=3, epoch=2, student=1)]
    tail = [b.rows for b in data.student_train_batches(64, seed=3, epoch=2, student=1, start=5)]
    assert len(tail) == 5 and all(torch.equal(a, b) for a, b in zip(own[5:], tail))


def test_tiny_imagenet_is_generated_and_prepared_on_first_load(tmp_path):
    data = streamed(tmp_path)
    marker = imagenet.read_marker(tmp_path / TINY)
    assert marker["generated"] == data.fingerprint["files"]["generated"]
    assert data.fingerprint["split"]["train_size"] == 58 and data.fingerprint["normalize"] == "inception"
    stamp = (tmp_path / TINY / "shards" / imagenet.MARKER).stat().st_mtime_ns
    assert streamed(tmp_path).fingerprint == data.fingerprint  # the second load reuses the shards
    assert (tmp_path / TINY / "shards" / imagenet.MARKER).stat().st_mtime_ns == stamp
