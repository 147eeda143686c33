"""`make gpu-check` (benchmarks/gpu_check.py): its CPU mode runs here, as it will in CI, so the prepared GPU run
never rots; and the GPU-hours it derives from seconds per step match a hand computation."""

import importlib.util
import json
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO

SPEC = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(gpu_check)

SECTIONS = ("cuda_tests", "pair", "packing", "networks", "gpu_hours", "photos", "imagenet_stream")


@pytest.mark.slow
def test_cpu_mode_answers_every_section_in_under_90_s(tmp_path):
    results = REPO / "benchmarks" / "results"
    before = sorted(p.name for p in results.iterdir())
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--quick",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in results.iterdir()) == before  # --out: the repository's results untouched
    cuda = torch.cuda.is_available()
    if not cuda:
        assert took < 90, f"the CPU mode took {took:.0f} s"
    (written,) = tmp_path.glob("gpu_check_*.json")
    body = json.loads(written.read_text())
    assert written.name == f"gpu_check_{gpu_check.safe_name(body['what_ran']['device'])}.json"
    assert {"torch", "device", "cuda", "date", "git_commit"} <= set(body["what_ran"])
    for section in SECTIONS:  # each timed, none failed
        assert "seconds" in body[section] and "error" not in body[section], (section, body[section])

    tests = body["cuda_tests"]
    assert tests["files"] and tests["passed"] + tests["failed"] + tests["skipped"] > 0
    assert tests["failed"] == 0, tests["failed_tests"]
    if not cuda:
        assert tests["passed"] == 0 and tests["skip_reasons"] == ["no CUDA device"]

    paths = body["pair"]["paths"]
    assert set(paths) == set(gpu_check.PAIR_PATHS)
    assert paths["fp32"].get("images_per_second", 0) > 0, paths["fp32"]  # else: the path's error, as recorded
    assert paths["fp32"]["execution"]["precision"] == "fp32"
    assert all("images_per_second" in p or "skipped" in p or "error" in p for p in paths.values())
    if not cuda:
        assert paths["tf32"]["skipped"] == "tf32 is CUDA only"
        assert all("no CUDA device" in body[s]["skipped"] for s in ("packing", "photos", "imagenet_stream"))

    networks = body["networks"]["networks"]
    assert all("step_s" in n or "skipped" in n for n in networks.values()), networks
    digits = [n for n in networks.values() if "digits" in n["studies"]]
    assert digits and all(n["step_s"] > 0 and n["forward_s"] > 0 and n["peak_rss_mb"] > 0 for n in digits)
    hours = body["gpu_hours"]["studies"]
    assert set(hours) == set(gpu_check.study_names(gpu_check_params()))
    assert hours["digits"]["gpu_hours"] > 0 and hours["digits"]["unknown"] == {}
    # a study whose networks were not measured here says so instead of giving a figure
    assert hours["rdml_table1"]["gpu_hours"] is None and "networks not measured" in hours["rdml_table1"]["unknown"]


def gpu_check_params():
    from rdml.study.params import load_params

    return load_params(REPO / "params.yaml")


def test_study_gpu_hours_is_runs_times_epochs_times_steps_times_seconds():
    seconds = {"a": {"step_s": 0.2, "forward_s": 0.07}, "b": {"step_s": 0.3, "forward_s": 0.1},
               "t": {"step_s": 9.0, "forward_s": 0.05}}
    runs = [
        # 95 rows, batch 10: 10 steps; 3 epochs of (0.2 + 0.3) s → 15 s
        {"id": "pair", "dataset": "x", "epochs": 3, "batch_size": 10, "networks": ["a", "b"], "teachers": []},
        # 101 rows, batch 10: the last batch of 1 row joins the one before, so 10 steps; 2 × 10 × (0.2 + 0.05) → 5 s
        {"id": "kd", "dataset": "y", "epochs": 2, "batch_size": 10, "networks": ["a"], "teachers": ["t"]},
    ]
    rows = {"x": (95, "hand"), "y": (101, "hand")}
    got = gpu_check.study_gpu_hours(runs, seconds, lambda run: rows[run["dataset"]])
    assert got["gpu_hours"] == pytest.approx(20 / 3600) and got["runs_counted"] == 2 and got["unknown"] == {}

    # an unknown size or an unmeasured network leaves the total unknown, and names why
    runs.append({"id": "big", "dataset": "z", "epochs": 1, "batch_size": 10, "networks": ["c"], "teachers": []})
    rows["z"] = (None, "no size for z")
    got = gpu_check.study_gpu_hours(runs, seconds, lambda run: rows[run["dataset"]])
    assert got["gpu_hours"] is None and got["gpu_hours_of_counted_runs"] == pytest.approx(20 / 3600)
    assert got["unknown"] == {"networks not measured": ["c"], "training size unknown": ["no size for z"]}


def test_training_rows_come_from_the_data_not_a_guess():
    keys = {"split_seed": 0, "test_fraction": 0.2, "labelled_fraction": 1.0, "unlabelled": "mimic",
            "normalize": "dataset", "val_fraction": 0.0}
    from rdml.data.base import load_dataset

    for split in (keys, {**keys, "val_fraction": 0.25, "labelled_fraction": 0.5, "unlabelled": "drop"}):
        rows, where = gpu_check.train_rows("digits", split, {}, {})  # embedded: loaded with the run's keys, counted
        assert rows == len(load_dataset("digits", **split).y_train) < 1797 and where.startswith("counted")
    rows, where = gpu_check.train_rows("cifar10", keys, {}, {})  # downloaded: the catalog's declared size
    assert rows == 50_000 and where == "rdml.data.sizes"
    rows, where = gpu_check.train_rows("cifar10", {**keys, "val_fraction": 0.1}, {}, {})  # rdml's split taken off
    assert rows == 45_000 and where.startswith("rdml.data.sizes (split by fraction")
    rows, where = gpu_check.train_rows("cifar10", {**keys, "val_fraction": 0.2}, {"cifar10": 50_000}, {})
    assert rows == 40_000 and where.startswith("given on the command line")


def test_device_file_names():
    assert gpu_check.safe_name("NVIDIA H100 80GB HBM3") == "nvidia_h100_80gb_hbm3"
    assert gpu_check.safe_name("cpu") == "cpu"


def test_every_downloaded_set_declares_its_training_rows_and_the_subsets_follow_their_parents():
    """A downloaded set's training size (what its reader yields before rdml's validation split) is declared, so
    every study's GPU-hours can be computed; an OKDPH subset keeps round(rows × percent / 100) of each of its
    parent's (balanced) classes, duplicates included (rdml.data.subsets)."""
    from rdml.data.catalog import DATASETS, downloaded
    from rdml.data.sizes import TRAIN_ROWS
    from rdml.data.subsets import PARENTS

    assert downloaded() and set(TRAIN_ROWS) == set(downloaded())  # the others are counted by loading them
    assert all(isinstance(rows, int) and rows > 0 for rows in TRAIN_ROWS.values())
    assert set(PARENTS) <= set(downloaded())
    for name, parent in PARENTS.items():
        classes, percent = DATASETS[parent].spec.num_classes, int(name.rsplit("_", 1)[1])
        assert TRAIN_ROWS[name] == classes * round(TRAIN_ROWS[parent] / classes * percent / 100)


def test_the_declared_training_sizes_are_in_no_runs_code():
    """A size trains nothing, so no run's code identity reads its module: correcting one moves no run."""
    from rdml.dependencies import data_code, training_code
    from rdml.study.params import load_params
    from rdml.study.plan import plan_study

    params = load_params(REPO / "params.yaml")
    runs = [run for study in ("rdml_table1", "rdml_table3", "okdph_table4") for run in plan_study(params, study)]
    assert runs
    for run in runs[:: max(1, len(runs) // 12)]:
        modules = training_code(run.method, run.archs, run.dataset, run.teacher_archs).describe()["modules"]
        assert "rdml.data.sizes" not in modules and "rdml.data.sizes" not in data_code(run.dataset).describe()["modules"]


def test_every_study_has_gpu_hours_once_its_networks_are_measured():
    """No study of params.yaml waits on a training size: with a time for every network, each has its GPU-hours."""
    from rdml.study.params import load_params

    networks, studies = gpu_check.planned_networks(load_params(REPO / "params.yaml"))
    result = gpu_check.hours_section(studies, {k: {"step_s": 0.1, "forward_s": 0.05} for k in networks}, {}, "test")
    assert {name: body["unknown"] for name, body in result["studies"].items() if body["gpu_hours"] is None} == {}
    assert all(body["gpu_hours"] > 0 for body in result["studies"].values())
