"""`memory_format: auto` and `compile: auto` (rdml.train.autotune): timed on the run's own step once per device
model and cached; the choice, its timings and what decided it are recorded; a run that chose is bit-identical
to one given its choice; a resumed run keeps the choice it started with, whatever the cache now says."""

import json

import pytest
import torch

from conftest import killed_after_checkpoint
from rdml.config import ConfigError, config_from_mapping
from rdml.train import autotune
from rdml.train.execution import Execution
from rdml.train.loop import train

DIGITS_CNN = {"method": "dml", "arch": ["cnn", "cnn"], "dataset": "digits", "epochs": 1, "seed": 1}
CPU = torch.device("cpu")


def trained(tmp_path, name, **keys):
    return train(config_from_mapping({**DIGITS_CNN, **keys, "out": str(tmp_path / name)}), argv=["test"], progress=False)


def weights(run_dir):
    return torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)["states"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(autotune.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "execution_choices.json"


def test_the_layout_is_timed_on_first_use_then_read_from_the_cache_and_recorded(tmp_path, cache):
    first = trained(tmp_path, "a")
    choice = first["environment"]["execution_choice"]["memory_format"]
    times = choice["seconds_per_step"]
    faster = times["channels_last"] <= times["contiguous"] * (1 - autotune.LAYOUT_MARGIN)
    assert choice["by"] == "timing on first use" and choice["cache"] == str(cache)
    assert choice["chose"] == first["environment"]["memory_format"] == ("channels_last" if faster else "contiguous")
    assert first["config"]["memory_format"] == "auto"  # the identity holds the key as given, the environment what ran

    second = trained(tmp_path, "b", seed=2)  # another seed of the same work: the same measurement, not a new one
    again = second["environment"]["execution_choice"]["memory_format"]
    assert again["by"] == f"timing cached in {cache}" and again["seconds_per_step"] == times
    entries = json.loads(cache.read_text())["entries"]
    assert len(entries) == 1
    key = json.loads(next(iter(entries)))
    assert (key["arch"], key["batch_size"], key["memory_format"], key["threads"]) == (["cnn", "cnn"], 64, "auto",
                                                                                      torch.get_num_threads())


@pytest.mark.parametrize("margin, layout", [(-1.0, "channels_last"), (0.99, "contiguous")])
def test_a_run_that_chose_by_timing_is_bit_identical_to_one_given_its_choice(tmp_path, cache, monkeypatch, margin, layout):
    """Timing builds and steps copies of the run's networks (and of a KD teacher, which laying out in place
    would change) under a forked RNG: nothing of the run moves. Both choices are forced through the margin."""
    monkeypatch.setattr(autotune, "LAYOUT_MARGIN", margin)
    trained(tmp_path, "teacher", method="teacher", arch=["cnn"], memory_format="contiguous")
    for name, keys in (("dml", {}), ("kd", {"method": "kd", "arch": ["cnn"], "teacher": str(tmp_path / "teacher")})):
        auto = trained(tmp_path, f"{name}-auto", **keys)
        assert auto["environment"]["memory_format"] == layout
        given = trained(tmp_path, f"{name}-given", memory_format=layout, **keys)
        assert "execution_choice" not in given["environment"]
        assert auto["epochs"][-1]["test"] == given["epochs"][-1]["test"]
        for a, b in zip(weights(tmp_path / f"{name}-auto"), weights(tmp_path / f"{name}-given"), strict=True):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_run_keeps_the_layout_it_started_with_whatever_the_cache_now_says(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(autotune, "LAYOUT_MARGIN", -1.0)  # channels_last, whatever the timings
    killed_after_checkpoint(1, lambda: trained(tmp_path, "run", epochs=2))
    monkeypatch.setattr(autotune, "LAYOUT_MARGIN", 0.99)  # the cache's timings would now say contiguous
    resumed = trained(tmp_path, "run", epochs=2)
    assert resumed["environment"]["memory_format"] == "channels_last"
    assert resumed["environment"]["execution_choice"] == {
        "memory_format": {"chose": "channels_last", "by": "the run's earlier execution"}}
    given = trained(tmp_path, "given", epochs=2, memory_format="channels_last")
    assert [e["test"] for e in resumed["epochs"]] == [e["test"] for e in given["epochs"]]
    assert trained(tmp_path, "run", epochs=2) == resumed  # finished: returned as it is, nothing timed or retrained


def test_networks_without_a_convolution_keep_the_default_layout_untimed(tmp_path, cache):
    record = trained(tmp_path, "mlp", arch=["mlp", "mlp"])
    assert record["environment"]["memory_format"] == "contiguous"
    assert record["environment"]["execution_choice"] == {
        "memory_format": {"chose": "contiguous", "by": "no convolution in the run's networks"}}
    assert not cache.exists()


@pytest.mark.tamper
@pytest.mark.parametrize("damage", ["not json {", '{"format": "rdml.execution_choices/1", "entries": []}', "seconds"])
def test_a_damaged_cache_is_measured_again_and_rewritten_whole(tmp_path, cache, damage):
    trained(tmp_path, "a")
    if damage == "seconds":  # a measurement that cannot be one: the choice would read it
        content = json.loads(cache.read_text())
        for entry in content["entries"].values():
            entry["seconds_per_step"]["contiguous"] = -1
        damage = json.dumps(content)
    cache.write_text(damage)
    record = trained(tmp_path, "b")
    assert record["environment"]["execution_choice"]["memory_format"]["by"] == "timing on first use"
    content = json.loads(cache.read_text())
    assert all(s > 0 for entry in content["entries"].values() for s in entry["seconds_per_step"].values())


def resolved(monkeypatch, measured, planned_steps, **execution):
    """resolve_auto's choice from the measurement `measured`, the timing itself left out."""
    monkeypatch.setattr(autotune, "_measure", lambda *a: measured)
    plain = {"device": CPU, "precision": "fp32", "memory_format": "contiguous", "compile": "auto", "fuse_students": False}
    return autotune.resolve_auto(Execution(**{**plain, **execution}), {"arch": ["cnn"]}, planned_steps, None,
                                 step_with=None, networks=lambda: [torch.nn.Conv2d(1, 1, 1)])


@pytest.mark.parametrize("planned_steps, compiled", [(1_000, False), (100_000, True)])
def test_compile_auto_weighs_the_one_off_compile_against_the_planned_steps(tmp_path, cache, monkeypatch, planned_steps,
                                                                          compiled):
    """Compiling costs 50 s once and saves 1 ms a step: it pays from 50,000 steps on."""
    measured = {"seconds_per_step": {"contiguous": 0.010},
                "compiled": {"contiguous": {"seconds_per_step": 0.009, "compile_seconds": 50.0}}}
    execution, choice = resolved(monkeypatch, measured, planned_steps)
    assert execution.compile is compiled and choice["compile"]["chose"] is compiled
    assert choice["compile"]["seconds_saved"] == pytest.approx(planned_steps * 0.001)


def test_compile_auto_never_compiles_fused_students(tmp_path, cache, monkeypatch):
    execution, choice = resolved(monkeypatch, None, 10**9, fuse_students=True)
    assert execution.compile is False and choice == {"compile": {"chose": False, "by": "fused students are not compiled"}}


@pytest.mark.slow
def test_compile_auto_times_a_real_compilation_and_records_why(tmp_path, cache):
    record = trained(tmp_path, "compiled", arch=["mlp", "mlp"], compile="auto")
    choice = record["environment"]["execution_choice"]["compile"]
    assert choice["by"] == "timing on first use" and choice["compile_seconds"] > 0 and choice["seconds_per_step"] > 0
    assert choice["chose"] == record["environment"]["compile"] == (choice["seconds_saved"] > choice["compile_seconds"])
    from rdml.config import data_keys
    from rdml.data.base import load_dataset

    batches = load_dataset("digits", **data_keys(record["config"])).steps_per_epoch(record["config"]["batch_size"])
    assert choice["planned_steps"] == batches * record["config"]["epochs"]


@pytest.mark.bad_input
def test_compile_takes_true_false_or_auto():
    for given, parsed in (("auto", "auto"), ("AUTO", "auto"), ("true", True), ("no", False)):
        assert config_from_mapping({**DIGITS_CNN, "compile": given}).compile == parsed
    with pytest.raises(ConfigError, match="compile='sometimes' is not a valid bool|auto"):
        config_from_mapping({**DIGITS_CNN, "compile": "sometimes"})


def test_an_unresolved_execution_cannot_run_a_model():
    with pytest.raises(ValueError, match="resolve auto first"):
        Execution(CPU, "fp32", "auto", False, False).runner(torch.nn.Linear(1, 1))
