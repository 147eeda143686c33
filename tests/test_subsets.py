"""OKDPH's limited-data CIFAR sets (rdml.data.subsets) through the real download, checksum and read code:
tiny CIFAR archives (tests/test_vision.py's) and index lists pickled as the official files are, served
from a local HTTP server."""

import hashlib
import json
import pickle

import numpy as np
import pytest
import torch

from rdml.data import subsets, vision
from rdml.data.base import load_dataset
from rdml.data.catalog import DATASETS, RESOURCES
from rdml.data.vision import DataError, Source
from conftest import md5
from test_vision import cifar_archive

# The first 102 bytes after the frame header of experiment/sample/cifar10_1.pkl at 1f3ff7e (tianlizhang/OKDPH):
# a list, numpy.core.multiarray.scalar, numpy.dtype('i8') and its state, then the first index, 8335.
OFFICIAL_HEAD = bytes.fromhex(
    "5d94288c156e756d70792e636f72652e6d756c74696172726179948c067363616c61729493948c056e756d7079948c05647479706594"
    "93948c02693894898887945294284b038c013c944e4e4e4affffffff4affffffff4b0074946243088f20000000000000")


def official_pickle(indices) -> bytes:
    """A list of numpy int64 scalars pickled (protocol 4) as numpy 1.x wrote the official files: numpy 2
    names the scalar's module numpy._core.multiarray, the files numpy.core.multiarray."""
    blob = pickle.dumps([np.int64(i) for i in indices], protocol=4)
    new, old = b"\x8c\x15numpy.core.multiarray", b"\x8c\x16numpy._core.multiarray"
    assert blob[2] == 0x95 and int.from_bytes(blob[3:11], "little") == len(blob) - 11 and blob.count(old) == 1
    body = blob[11:].replace(old, new)
    return blob[:3] + len(body).to_bytes(8, "little") + body


def notebook_indices(labels, ratio):
    """experiment/sample/simple_cifar.ipynb cells 3 and 5: rows by class in order of first appearance,
    np.random.seed(42), then per class np.random.choice(inds, round(len(inds) * ratio / 100)), with replacement."""
    label2inds = {}
    for index, label in enumerate(labels):
        label2inds.setdefault(label, []).append(index)
    np.random.seed(42)
    out = []
    for label, inds in label2inds.items():
        out.extend(list(np.random.choice(inds, int(round(len(inds) * ratio / 100, 0)))))
    return out


def test_the_helper_writes_the_official_format():
    assert official_pickle([8335, 37579])[11:113] == OFFICIAL_HEAD


@pytest.fixture
def served(tmp_path, monkeypatch, http):
    """Tiny CIFAR-10 and CIFAR-100 archives and the four lists on the local server, the sources pointed there."""
    rng = np.random.default_rng(0)
    arrays = {}
    for parent in ("cifar10", "cifar100"):
        archive, arrays[parent] = cifar_archive(tmp_path, parent, rng)
        monkeypatch.setitem(vision.sources(), parent, Source((http + archive.name,), ((archive.name, md5(archive)),),
                                                             vision.sources()[parent].extracted))
    train10 = [label for part in (f"data_batch_{i}" for i in range(1, 6)) for label in arrays["cifar10"][part][1]]
    lists = {  # 30 CIFAR-10 and 6 CIFAR-100 training rows
        "cifar10_10": notebook_indices(train10, 100),  # every class drawn as often as it has rows: duplicates
        "cifar10_1": [29, 0, 7, 7, 3],
        "cifar100_10": [5, 5, 1, 0, 4, 5],
        "cifar100_1": [2],
    }
    server = tmp_path / "server"
    for name, indices in lists.items():
        (server / f"{name}.pkl").write_bytes(official_pickle(indices))
    files = tuple((f, md5(server / f)) for f, _ in subsets.sources()[subsets.SAMPLES].files)
    monkeypatch.setitem(subsets.sources(), subsets.SAMPLES, Source((http,), files))
    return {"arrays": arrays, "lists": lists, "server": server, "files": dict(files)}


def _train(arrays, parent):
    parts = [f"data_batch_{i}" for i in range(1, 6)] if parent == "cifar10" else ["train"]
    x = np.concatenate([arrays[parent][p][0] for p in parts]).reshape(-1, 3, 32, 32)
    y = [label for p in parts for label in arrays[parent][p][1]]
    return torch.from_numpy(x), torch.tensor(y)


@pytest.mark.parametrize("name", ["cifar10_10", "cifar10_1", "cifar100_10", "cifar100_1"])
def test_training_rows_are_the_stored_indices_in_order_duplicates_kept(tmp_path, served, name):
    data_dir = tmp_path / "data"
    folder, sha256 = subsets.fetch_samples(data_dir)
    assert folder == data_dir / "okdph_samples"
    assert sha256 == hashlib.sha256(b"".join((served["server"] / f).read_bytes() for f in served["files"])).hexdigest()
    parent = subsets.PARENTS[name]
    assert parent in DATASETS[name].needs  # the parent's own prepare step fetches and caches it first
    vision.prepare(parent, data_dir)
    stamp = subsets.prepare(name, data_dir)
    indices = served["lists"][name]
    data = load_dataset(name, split_seed=0, test_fraction=0.25, data_dir=data_dir)
    x, y = _train(served["arrays"], parent)
    rows = torch.tensor(indices)
    assert torch.equal(data.x_train, x[rows]) and torch.equal(data.y_train, y[rows])
    test_part = "test_batch" if parent == "cifar10" else "test"
    assert data.y_test.tolist() == served["arrays"][parent][test_part][1]  # the full test set
    assert torch.equal(data.x_test, torch.from_numpy(served["arrays"][parent][test_part][0].reshape(-1, 3, 32, 32)))
    archive = "cifar-10-python.tar.gz" if parent == "cifar10" else "cifar-100-python.tar.gz"
    pkl = f"okdph_samples/{name}.pkl"
    assert data.fingerprint["files"] == {f"{parent}/{archive}": md5(tmp_path / "server" / archive),
                                         pkl: served["files"][f"{name}.pkl"]}
    assert data.fingerprint["split"]["split"] == "official" and data.fingerprint["split"]["train_size"] == len(indices)
    summary = json.loads(stamp.read_text())
    assert stamp == data_dir / name / "subset.json"
    assert summary["rows"] == len(indices) and summary["distinct_rows"] == len(set(indices))
    assert summary["md5"] == served["files"][f"{name}.pkl"] and summary["parent"] == parent
    assert sum(summary["rows_per_class"]) == len(indices)
    assert len(summary["rows_per_class"]) == DATASETS[name].spec.num_classes


def test_the_notebook_draws_with_replacement(served):
    """The list the notebook recipe gives on the tiny CIFAR-10 holds duplicates, out of row order."""
    indices = served["lists"]["cifar10_10"]
    assert len(indices) == 30 and len(set(indices)) < 30 and indices != sorted(indices)


@pytest.mark.tamper
def test_a_list_is_read_as_stored_without_unpickling_anything_else(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(official_pickle([3, 1, 3, 2]))
    got = subsets.read_indices(path)
    assert got.dtype == np.int64 and got.tolist() == [3, 1, 3, 2]
    path.write_bytes(pickle.dumps([np.int64(4), 5], protocol=4))  # numpy 2's module name, and plain ints
    assert subsets.read_indices(path).tolist() == [4, 5]
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    path.write_bytes(pickle.dumps([Exploit()]))
    with pytest.raises(DataError, match=f"{path} is not an OKDPH index list .*refusing to load builtins.exec"):
        subsets.read_indices(path)
    assert not marker.exists()
    for bad in ({"a": 1}, [1.5, 2.0], [], [True]):
        path.write_bytes(pickle.dumps(bad))
        with pytest.raises(DataError, match=f"{path} is not an OKDPH index list"):
            subsets.read_indices(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=f"{path} is not an OKDPH index list"):
        subsets.read_indices(path)


@pytest.mark.tamper
def test_corrupt_and_missing_lists_name_the_file_and_md5(tmp_path, served):
    data_dir = tmp_path / "data"
    subsets.fetch_samples(data_dir)
    vision.prepare("cifar10", data_dir)
    local = data_dir / "okdph_samples" / "cifar10_1.pkl"
    good = served["files"]["cifar10_1.pkl"]
    blob = bytearray(local.read_bytes())
    blob[-4] ^= 1
    local.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=f"{local} is corrupt: md5 [0-9a-f]+, expected {good}"):
        load_dataset("cifar10_1", split_seed=0, test_fraction=0.25, data_dir=data_dir)
    with pytest.raises(DataError, match=f"{local} is corrupt: md5 [0-9a-f]+, expected {good}"):
        subsets.fetch_samples(data_dir)
    assert load_dataset("cifar10_10", split_seed=0, test_fraction=0.25, data_dir=data_dir)  # reads its own list alone
    local.unlink()
    with pytest.raises(DataError, match=f"{local} is missing \\(expected md5 {good}\\); "
                                        "run `rdml pipeline prepare okdph_samples`"):
        load_dataset("cifar10_1", split_seed=0, test_fraction=0.25, data_dir=data_dir)
    subsets.fetch_samples(data_dir)  # downloaded again
    assert load_dataset("cifar10_1", split_seed=0, test_fraction=0.25, data_dir=data_dir).y_train.numel() == 5


@pytest.mark.tamper
def test_indices_outside_the_training_set_are_refused(tmp_path, served, monkeypatch):
    (served["server"] / "cifar100_1.pkl").write_bytes(official_pickle([6]))  # CIFAR-100 here has 6 rows: 0..5
    files = tuple((f, md5(served["server"] / f)) for f, _ in subsets.sources()[subsets.SAMPLES].files)
    monkeypatch.setitem(subsets.sources(), subsets.SAMPLES, Source(subsets.sources()[subsets.SAMPLES].urls, files))
    data_dir = tmp_path / "data"
    vision.prepare("cifar100", data_dir)
    with pytest.raises(DataError, match="cifar100_1.pkl \\(md5 [0-9a-f]{32}\\) names training rows 6 to 6, but cifar100"):
        subsets.prepare("cifar100_1", data_dir)


def test_the_pipeline_prepares_the_lists_then_a_subset(tmp_path, served, monkeypatch):
    """`rdml pipeline prepare okdph_samples`, then `... cifar10_10` (rdml.pipeline.jobs.prepare_dataset)."""
    from rdml.pipeline.jobs import prepare_dataset

    monkeypatch.chdir(tmp_path)
    resource = prepare_dataset("okdph_samples", data_dir="data")
    assert resource["file"] == "data/okdph_samples" and len(resource["sha256"]) == 64
    prepare_dataset("cifar10", data_dir="data")  # the parent, the other of its needs
    summary = prepare_dataset("cifar10_10", data_dir="data")
    assert summary["rows"] == len(served["lists"]["cifar10_10"]) + len(served["arrays"]["cifar10"]["test_batch"][1])
    assert summary["files"]["okdph_samples/cifar10_10.pkl"] == served["files"]["cifar10_10.pkl"]


def test_a_subset_s_step_reads_its_parent_and_never_prepares_it(tmp_path, served):
    """The parent is one of the set's needs: the pipeline prepares it first, and the subset's step only reads
    it: without it the step fails naming the parent, and with it the parent's files stay as they are."""
    assert DATASETS["cifar10_1"].needs == ("okdph_samples", "cifar10")
    data_dir = tmp_path / "data"
    subsets.fetch_samples(data_dir)
    with pytest.raises(DataError, match="cifar10/cifar-10-python.tar.gz is missing .*run `rdml pipeline prepare cifar10`"):
        subsets.prepare("cifar10_1", data_dir)
    cache = vision.prepare("cifar10", data_dir)
    before = cache.stat().st_mtime_ns
    assert json.loads(subsets.prepare("cifar10_1", data_dir).read_text())["rows"] == 5
    assert cache.stat().st_mtime_ns == before


def test_catalogue_entries():
    resource = RESOURCES["okdph_samples"]
    assert (resource.fetch, resource.folder) == ("subsets:fetch_samples", "okdph_samples")
    for name, parent in subsets.PARENTS.items():
        source = DATASETS[name]
        flags = (source.module, source.downloaded, source.official_split, source.needs)
        assert flags == ("subsets", True, True, ("okdph_samples", parent))
        assert source.spec == DATASETS[parent].spec and source.smoke == f"tiny_{parent}"
    source = subsets.sources()["okdph_samples"]
    assert source.urls == ("https://raw.githubusercontent.com/tianlizhang/OKDPH/1f3ff7e8f973ab5c14b7d8fa49690ac36cfec83a/"
                           "experiment/sample/",)
    assert [f for f, _ in source.files] == ["cifar10_10.pkl", "cifar10_1.pkl", "cifar100_10.pkl", "cifar100_1.pkl"]
