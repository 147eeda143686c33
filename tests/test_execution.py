"""The fast paths (channels_last, fused students, bf16, compile) against the reference float32 path."""

import math

import pytest
import torch

from conftest import run
from rdml.train import execution
from rdml.config import ConfigError, load_config
from rdml.data.base import load_dataset
from rdml.train.prepare import prepare

COHORT = ["method=dml", "arch=cnn", "epochs=2", "batch_size=32", "lr=0.1"]


def weights(run_dir):
    saved = torch.load(run_dir / "model.pt", weights_only=True)
    return [{k: v.double() for k, v in state.items()} for state in saved["states"]]


def assert_same_run(reference, other, tolerance):
    for a, b in zip(reference["epochs"], other["epochs"]):
        assert a["train"] == pytest.approx(b["train"], rel=tolerance, abs=tolerance)
        for name in a["test"]:
            assert a["test"][name]["acc"] == b["test"][name]["acc"]
            assert a["test"][name]["loss"] == pytest.approx(b["test"][name]["loss"], rel=tolerance)


def test_cpu_defaults_are_the_float32_reference_and_recorded(tmp_path):
    record = run(tmp_path / "r", "method=independent", "epochs=1")
    env = record["environment"]
    assert (env["device"], env["precision"], env["memory_format"], env["compile"], env["fuse_students"],
            env["deterministic"]) == ("cpu", "fp32", "contiguous", False, False, True)


@pytest.mark.parametrize("fast", [
    ["memory_format=channels_last"],
    ["fuse_students=true"],
    ["fuse_students=true", "memory_format=channels_last"],
    ["fuse_students=true", "update_order=sequential"],
    ["fuse_students=true", "method=dml_e", "students=3"],
])
def test_fast_paths_give_the_reference_run(tmp_path, fast):
    """Same losses, accuracies, weights and batch-norm statistics as the unfused float32 run.

    Summation order differs between the paths, and 38 SGD steps amplify it: with one thread, fused
    channels_last weights end up to 1e-4 from the reference (1e-6 with two), hence atol=5e-4, still far
    below what a missed update or a batch-norm statistic left behind would change."""
    extra = [o for o in fast if o.startswith(("update_order", "method", "students"))]
    reference = run(tmp_path / "reference", *COHORT, *extra)
    other = run(tmp_path / "fast", *COHORT, *fast)
    assert other["environment"]["fuse_students"] == ("fuse_students=true" in fast)
    assert_same_run(reference, other, 1e-4)
    for a, b in zip(weights(tmp_path / "reference"), weights(tmp_path / "fast")):
        assert a.keys() == b.keys()
        for name in a:
            assert torch.allclose(a[name], b[name], rtol=1e-4, atol=5e-4), name
    assert any("running_mean" in name for name in a)


def test_fused_cohort_counts_batch_norm_batches_like_the_unfused_one(tmp_path):
    run(tmp_path / "fused", *COHORT, "fuse_students=true")
    rows = len(load_dataset("synthetic", split_seed=0, test_fraction=0.25).y_train)
    for state in weights(tmp_path / "fused"):
        tracked = [v.item() for k, v in state.items() if k.endswith("num_batches_tracked")]
        assert tracked and set(tracked) == {2 * math.ceil(rows / 32)}  # 2 epochs, each batch counted once


@pytest.mark.skipif(not execution.bf16_cpu(), reason="this CPU has no native bf16")
def test_bf16_autocast_trains_close_to_float32_but_not_identically(tmp_path):
    reference = run(tmp_path / "fp32", *COHORT)
    bf16 = run(tmp_path / "bf16", *COHORT, "precision=bf16", "memory_format=channels_last")
    assert bf16["environment"]["precision"] == "bf16"
    first, second = weights(tmp_path / "fp32")[0], weights(tmp_path / "bf16")[0]
    assert not torch.allclose(first["0.weight"], second["0.weight"], atol=1e-6)  # bf16 really ran
    for a, b in zip(reference["epochs"], bf16["epochs"]):
        assert b["train"]["student_0/total"] == pytest.approx(a["train"]["student_0/total"], rel=0.05)
        assert abs(a["test"]["ensemble"]["acc"] - b["test"]["ensemble"]["acc"]) <= 0.05


@pytest.mark.slow  # torch.compile, ~4 s
def test_compiled_models_give_the_reference_run(tmp_path):
    reference = run(tmp_path / "eager", "method=independent", "epochs=2")
    compiled = run(tmp_path / "compiled", "method=independent", "epochs=2", "compile=true")
    assert compiled["environment"]["compile"] is True
    assert_same_run(reference, compiled, 1e-4)


@pytest.mark.parametrize("overrides, message", [
    (["precision=fp16"], "precision='fp16' is not allowed; allowed: auto, bf16, fp32, tf32"),
    (["deterministic=maybe"], "deterministic='maybe' is not a valid bool"),
    (["memory_format=nhwc"], "memory_format='nhwc' is not allowed; allowed: auto, channels_last, contiguous"),
    (["fuse_students=true", "arch=mlp,cnn"], "fuse_students=true needs one architecture for every student, got mlp,cnn"),
    (["fuse_students=true", "compile=true"], "compile=true with fuse_students=true is not supported; choose one"),
])
@pytest.mark.bad_input
def test_bad_execution_keys_are_refused_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare(load_config(None, ["dataset=synthetic", f"out={tmp_path / 'r'}", *overrides]))
    assert not (tmp_path / "r").exists()


@pytest.mark.bad_input
def test_bf16_is_refused_on_a_cpu_without_it(tmp_path, monkeypatch):
    monkeypatch.setattr(execution, "bf16_cpu", lambda: False)
    with pytest.raises(ConfigError, match=r"precision=bf16: this CPU \(no AVX512-BF16 or AMX\) has no native bf16; "
                                          "allowed here: fp32, auto"):
        prepare(load_config(None, ["dataset=synthetic", "precision=bf16", f"out={tmp_path / 'r'}"]))
    assert execution.choose_execution(torch.device("cpu"), "auto", "auto", False, False, ["mlp"]).precision == "fp32"
