"""Published weights as data (RDML Table 2: "timm is applied to acquire the pretrained weights"): the
weights step writes them once, training starts from them through timm's own pretrained path, each
record names their sha256, and the audit fails when the file changes."""

import json
from pathlib import Path

import pytest
import timm
import torch

from rdml.config import ConfigError, load_config, resolve
from rdml.data.catalog import DataSpec
from rdml.io import sha256_file
from rdml.models import build_model
from rdml.models.catalog import ARCHITECTURES, Architecture
from rdml.models.pretrained import fetch_weights, weights_file
from rdml.audit import audit_cell
from rdml.pipeline.jobs import prepare_weights
from rdml.train.checkpoint import load_teacher
from rdml.train.loop import train
from conftest import lone_run, one_cell_table

PHOTOS = DataSpec("photos", 47, (3, 224, 224))


@pytest.fixture
def published(monkeypatch):
    """An architecture whose weights carry a real timm tag (timm's test ViT), so they come from a file."""
    monkeypatch.setitem(ARCHITECTURES._items, "published_vit",
                        Architecture("published_vit", "timm_zoo:test_vit", ("images", "photos"), "test_vit.r160_in1k"))
    return "published_vit"


def test_a_local_file_goes_through_timm_and_training_starts_from_it(tmp_path, published):
    torch.manual_seed(1)
    source = timm.create_model("test_vit")  # the "published" network: 1000 classes at 160 px
    torch.save(source.state_dict(), tmp_path / "downloaded.pth")
    fetched = fetch_weights(published, tmp_path / "data", tmp_path / "downloaded.pth")
    assert Path(fetched["file"]) == weights_file(published, tmp_path / "data") and fetched["weights"] == "test_vit.r160_in1k"
    assert fetched["sha256"] == sha256_file(fetched["file"]) and fetched["origin"].startswith("file ")

    model = build_model(published, PHOTOS, weights=fetched["file"])
    theirs = source.state_dict()
    for name, value in model.state_dict().items():
        if name.startswith("head."):
            assert value.shape[0] == 47  # a new head of the data set's size
        elif name == "pos_embed":  # timm resamples the 160-px grid to 224 px
            assert value.shape[1] == 1 + (224 // 16) ** 2 and torch.equal(value[:, :1], theirs[name][:, :1])
        else:
            assert torch.equal(value, theirs[name]), name
    kept = build_model(published, PHOTOS, outputs=1000, weights=fetched["file"])
    assert torch.equal(kept.head.weight, theirs["head.weight"])  # head=pretrained: the published head itself


@pytest.mark.bad_input
def test_a_file_that_is_not_the_network_s_weights_is_refused(tmp_path, published):
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="does not hold weights of test_vit.r160_in1k"):
        fetch_weights(published, tmp_path / "data", tmp_path / "other.pth")
    assert not weights_file(published, tmp_path / "data").exists()


def test_a_failed_download_says_how_to_give_a_local_file(tmp_path, published, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as without a network, at once
    with pytest.raises(ConfigError, match=r"rdml pipeline weights published_vit --file PATH"):
        fetch_weights(published, tmp_path / "data")


@pytest.mark.bad_input
def test_pretrained_keys_are_checked_before_anything_runs():
    with pytest.raises(ConfigError, match="arch mlp has no published weights"):
        resolve(load_config(None, ["pretrained=true", "arch=mlp"]))
    with pytest.raises(ConfigError, match="head=pretrained keeps a published head, which needs pretrained=true"):
        resolve(load_config(None, ["head=pretrained"]))
    with pytest.raises(ConfigError, match="head='imagenet' is not allowed"):
        resolve(load_config(None, ["head=imagenet"]))


@pytest.mark.bad_input
def test_a_run_without_its_weights_file_says_how_to_fetch_it(tmp_path):
    cfg = load_config(None, ["dataset=tiny_cifar10", "arch=test_vit", "pretrained=true", f"data_dir={tmp_path}",
                             f"out={tmp_path / 'run'}", "epochs=1"])
    with pytest.raises(ConfigError, match="rdml pipeline weights test_vit"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.tamper
def test_records_name_the_weights_and_the_audit_fails_when_they_change(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stamp = prepare_weights("test_vit")
    assert json.loads(Path("results/weights/test_vit.json").read_text()) == stamp
    run = "results/p/runs/tiny_cifar10/dml"
    cfg = load_config(None, ["dataset=tiny_cifar10", "arch=test_vit", "students=2", "pretrained=true", "head=pretrained",
                             "epochs=1", "batch_size=16", f"out={run}", "precision=fp32"])
    record = train(cfg, progress=False)
    assert record["pretrained"] == {"test_vit": {"weights": "test_vit.rdml_seed0", "file": "data/weights/test_vit.rdml_seed0.safetensors",
                                                 "sha256": stamp["sha256"]}}
    data_spec = DataSpec("images", 10, (3, 32, 32))
    teacher, info = load_teacher(run, 1, type("D", (), {"name": "tiny_cifar10", "spec": data_spec, "num_classes": 10})(),
                                 torch.device("cpu"))
    assert info["outputs"] == 1000 and teacher.head.out_features == 1000  # the published head, kept

    one_cell_table(Path("."), run, record)
    lines = []
    assert audit_cell("t.cells.json", "DML|x", ".", out=lines.append) == lone_run(Path("."))  # no study: only the run
    assert any(line.strip().startswith("weights test_vit") and line.endswith(" ok") for line in lines), lines
    weights = Path(stamp["file"])
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    problems = audit_cell("t.cells.json", "DML|x", ".", out=lambda _: None)
    assert problems == [f"{weights}: weights test_vit sha256 is {sha256_file(weights)}, recorded {stamp['sha256']}",
                        *lone_run(Path("."))]
