"""What a SLURM job asks for (rdml.pipeline.requests): from a full-mode `make gpu-check` JSON where one measured
the job's networks ("measured on <GPU>"), the estimate otherwise; and `jobs_per_gpu: auto` from its packing rows.

The JSONs here are synthetic, in the shape of a real `benchmarks/gpu_check.py --quick` run, with `mode` full and
a GPU's name, and round numbers so that every expected request is worked out by hand below."""

import copy
import json
import re

import pytest

from conftest import BIN, make_project, sh
from rdml.keys import ConfigError
from rdml.pipeline import requests
from rdml.pipeline.requests import (auto_jobs_per_gpu, job_request, load_measurements, measured_jobs_per_gpu,
                                    planned_run, resolve_jobs_per_gpu, steps_per_epoch)
from rdml.study.params import checked_params
from rdml.study.plan import plan_jobs

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-40GB"

# cifar10: 50,000 training rows (rdml.data.sizes), batch 100 → 500 steps an epoch; 3 epochs; 2 seeds a job
STUDY = {"build": ["c"], "gpus": 0, "studies": {"c": {
    "datasets": ["cifar10"], "seeds": [0, 1], "seeds_per_job": 2, "metric": "final",
    "train": {"epochs": 3, "batch_size": 100, "precision": "fp32"},
    "teacher": {"arch": "resnet110", "seed": 0},
    "kd_table": {"student": "resnet32", "alphas": [1.0], "temperature": 4.0, "beta": 0.9},
    "pair_table": {"pairs": [["resnet32", "wrn_20_8"]]}}}}
TEACHER, DML, KD = "cifar10/teacher-resnet110-s0", "cifar10/dml-resnet32+wrn_20_8-a1-s0+1", "cifar10/kd-resnet32-from-resnet110-a1-s0+1"
R32, WRN, R110 = "resnet32|cifar10|100|fp32", "wrn_20_8|cifar10|100|fp32", "resnet110|cifar10|100|fp32"
# seconds per training step, per forward pass, and peak host RSS (MB) on the H100
COSTS = {R32: (0.02, 0.006, 2900.0), WRN: (0.0925, 0.03, 3300.0), R110: (0.71, 0.255, 3400.0)}


def network(step_s, forward_s, rss, studies=("c",)):
    """A measured network as gpu_check's networks section writes it (keys of a real --quick run)."""
    return {"studies": list(studies), "train": {"augment": "crop_flip", "normalize": "dataset"},
            "step_s": step_s, "forward_s": forward_s, "images_per_second": 100 / step_s, "stand_in": "tiny_cifar10",
            "execution": {"precision": "fp32", "memory_format": "contiguous", "compile": False,
                          "fuse_students": False, "deterministic": True},
            "numerics": {"float32_matmul": "ieee"}, "parameters": 1000, "peak_rss_mb": rss, "peak_cuda_mb": 900.0}


def packing_row(jobs, total, peak_each=1500.0, **extra):
    return {"jobs_per_gpu": jobs, "images_per_s_each": [total / jobs] * jobs, "images_per_s_total": total,
            "max_memory_allocated_mb_each": [peak_each] * jobs, "execution": {"precision": "fp32"},
            "numerics": {}, "gpu_memory_used_peak_mb": 2000.0 * jobs, **extra}


def gpu_json(device=H100, costs=COSTS, totals=(10_000.0, 16_000.0, 16_500.0), mode="full"):
    """A gpu_check JSON in the shape of a real --quick run, as a full run on `device` writes it."""
    rows = [packing_row(n, t) for n, t in zip((1, 2, 4), totals)]
    for row in rows:
        row["ratio_to_one_job"] = row["images_per_s_total"] / totals[0]
    networks = {key: network(*cost) for key, cost in costs.items()}
    networks["googlenet|cifar10|128|fp32"] = {"studies": ["rdml_table1"], "train": {}, "skipped": "the section's time share ran out"}
    networks["vgg16_bn|cifar10|128|fp32"] = {"studies": ["rdml_table1"], "train": {}, "error": "CUDA out of memory"}
    return {"what_ran": {"torch": "2.14.1", "cuda": "13.0", "cuda_available": mode == "full", "device": device,
                         "gpus": 1, "cpu_cores": 16, "python": "3.11.7", "date": "2026-12-07T10:52:11+0000",
                         "git_commit": "0" * 40, "git_dirty": False},
            "mode": mode, "budget_s": 480.0,
            "cuda_tests": {"files": [], "passed": 3, "failed": 0, "skipped": 0, "seconds": 30.0},
            "pair": {"batch_size": 128, "paths": {}, "seconds": 100.0},
            "packing": {"seconds_per_row": 20.0, "rows": rows, "memory": "nvidia-smi's used memory", "seconds": 60.0},
            "networks": {"warm_up_steps": 3, "timed_steps": 10, "networks": networks, "seconds": 150.0},
            "gpu_hours": {"measured_on": device, "studies": {}, "seconds": 0.1},
            "photos": {"skipped": "x", "seconds": 0.0}, "total_seconds": 400.0}


def write(folder, body):
    """As gpu_check names it: gpu_check_<device as a file name>.json."""
    path = folder / f"gpu_check_{re.sub(r'[^a-z0-9]+', '_', body['what_ran']['device'].lower())}.json"
    path.write_text(json.dumps(body))
    return path


@pytest.fixture(scope="module")
def jobs():
    return {job.id: [planned_run(run) for run in job.runs] for job in plan_jobs(checked_params(copy.deepcopy(STUDY)), "c")}


def test_measured_requests_are_the_jobs_steps_at_the_measured_seconds(tmp_path, jobs):
    write(tmp_path, gpu_json())
    measured = load_measurements(tmp_path)
    assert [m.device for m in measured] == [H100]
    # by hand: runtime = ceil(max(10, 2 × seconds / 60)); mem = 1000 × ceil(1.5 × largest RSS / 1000)
    # DML pair, 2 seeds: 2 × 3 × 500 × (0.02 + 0.0925) = 337.5 s → 11.25 → 12 min; 1.5 × 3300 = 4950 → 5000 MB
    # KD, 2 seeds: the teacher's forward pass, not its step: 2 × 3 × 500 × (0.02 + 0.255) = 825 s → 27.5 → 28 min;
    #   1.5 × 3400 (the teacher's RSS) = 5100 → 6000 MB
    # the teacher, 1 seed: 3 × 500 × 0.71 = 1065 s → 35.5 → 36 min; 6000 MB
    # one Ind. resnet32, 2 seeds: 2 × 3 × 500 × 0.02 = 60 s → 2 min → the floor, 10 min; 1.5 × 2900 = 4350 → 5000 MB
    expected = {DML: (5000, 12), KD: (6000, 28), TEACHER: (6000, 36), "cifar10/independent-resnet32-s0+1": (5000, 10)}
    for job_id, (mem_mb, runtime) in expected.items():
        got = job_request(jobs[job_id], measured)
        assert (got.mem_mb, got.runtime) == (mem_mb, runtime), job_id
        assert got.mem_from == got.runtime_from == f"measured on {H100}"


def test_without_a_gpu_json_the_requests_are_the_labelled_estimate(tmp_path, jobs):
    assert load_measurements(tmp_path / "none") == [] and load_measurements(tmp_path) == []
    got = job_request(jobs[DML], [])
    # 2 min per epoch of its runs: 2 × (3 + 3) = 12 min, at least 10; 8000 MB
    assert (got.mem_mb, got.runtime) == (8000, 12) and got.mem_from.startswith("estimate (no GPU measured")
    assert job_request(jobs[TEACHER], []).runtime == 10  # 2 × 3 = 6 min: the floor
    assert requests.ESTIMATE_MEM_MB == 8000 and requests.ESTIMATE_MINUTES_PER_EPOCH == 2


def test_a_job_with_a_network_not_measured_is_the_estimate_naming_it(tmp_path, jobs):
    write(tmp_path, gpu_json(costs={k: v for k, v in COSTS.items() if k != WRN}))
    measured = load_measurements(tmp_path)
    got = job_request(jobs[DML], measured)
    assert (got.mem_mb, got.runtime) == (8000, 12)
    assert got.mem_from == got.runtime_from == f"estimate (not measured on {H100}: {WRN})"
    assert job_request(jobs[KD], measured).runtime_from == f"measured on {H100}"  # its networks were


def test_quick_and_cpu_runs_are_no_gpu_measurement(tmp_path, jobs):
    write(tmp_path, gpu_json(device="cpu", mode="quick"))
    write(tmp_path, gpu_json(mode="quick"))  # --quick on a GPU: tiny sizes, no GPU's figures
    assert len(list(tmp_path.glob("gpu_check_*.json"))) == 2 and load_measurements(tmp_path) == []
    assert job_request(jobs[DML], load_measurements(tmp_path)).mem_from.startswith("estimate")


def test_a_real_quick_run_is_read_and_ignored(tmp_path):
    """The JSON benchmarks/gpu_check.py --quick writes on this machine (its CPU mode) is never a GPU's figures."""
    pytest.importorskip("torch")
    from rdml.pipeline.requests import RESULTS

    found = sorted(RESULTS.glob("gpu_check_*.json"))
    for path in found:  # whatever is committed: each full-mode one is read, the others are not
        body = json.loads(path.read_text())
        assert (body["mode"] == "full") == any(m.path == path for m in load_measurements(RESULTS))


def test_with_several_gpus_each_request_is_the_largest_and_says_which(tmp_path, jobs):
    write(tmp_path, gpu_json())
    # the A100 steps 1.5× slower, with less host memory
    write(tmp_path, gpu_json(device=A100, costs={k: (s * 1.5, f * 1.5, rss - 500) for k, (s, f, rss) in COSTS.items()}))
    got = job_request(jobs[KD], load_measurements(tmp_path))
    # runtime from the A100: 1.5 × 825 s = 1237.5 s → 41.25 → 42 min; memory from the H100, 6000 MB
    assert (got.mem_mb, got.runtime) == (6000, 42)
    assert got.runtime_from == f"measured on {A100} (the slowest of 2 GPUs measured: {A100}, {H100})"
    assert got.mem_from == f"measured on {H100} (the largest of 2 GPUs measured: {A100}, {H100})"


def test_a_training_size_planning_cannot_know_leaves_the_runtime_estimated(tmp_path):
    """An embedded set is counted by loading it, which planning (torch-free) does not: its memory is measured,
    its runtime estimated, naming why."""
    run = {"id": "digits/x", "dataset": "digits", "epochs": 20, "batch_size": 64, "networks": ["mlp|digits|64|auto"],
           "teachers": [], "data_keys": {"val_fraction": 0.0}}
    write(tmp_path, gpu_json(costs={"mlp|digits|64|auto": (0.001, 0.0005, 700.0)}))
    got = job_request([run], load_measurements(tmp_path))
    assert (got.mem_mb, got.mem_from) == (2000, f"measured on {H100}")  # 1.5 × 700 = 1050 → 2000
    assert got.runtime == 40 and got.runtime_from.startswith("estimate (the training rows of digits are counted by loading")
    assert job_request([run], load_measurements(tmp_path), rows_of=lambda r: (1347, "counted")).runtime == 10


def test_a_damaged_gpu_json_is_named(tmp_path):
    (tmp_path / "gpu_check_x.json").write_text("{not json")
    with pytest.raises(ConfigError, match="gpu_check_x.json: not a gpu_check JSON"):
        load_measurements(tmp_path)


def test_steps_per_epoch_is_the_trainers_batches():
    torch_base = pytest.importorskip("rdml.data.base")
    for rows in (0, 1, 2, 63, 64, 65, 127, 128, 129, 1000, 50_000):
        for batch in (1, 2, 10, 64, 100, 128):
            assert steps_per_epoch(rows, batch) == len(torch_base.batch_starts(rows, batch)), (rows, batch)


def test_planned_run_names_the_teachers_network_at_the_students_batch_and_precision(jobs):
    (first, second) = jobs[KD]
    assert first["networks"] == [R32] and first["teachers"] == [R110] and second["id"].endswith("-s1")
    assert jobs[DML][0]["networks"] == [R32, WRN] and jobs[DML][0]["teachers"] == []


# ---- jobs_per_gpu: auto


@pytest.mark.parametrize("totals,memory,expected", [
    ((10_000, 16_000, 16_500), None, 4),  # 4 jobs: 1.65× one job's images/s ≥ 1.10×
    ((10_000, 16_000, 10_500), None, 2),  # 4 jobs: 1.05×, under the margin; 2 jobs: 1.6×
    ((10_000, 10_900, 10_999), None, 1),  # nothing gains 10 %: one job a GPU, as measured
    ((10_000, 16_000, 16_500), 4 * 1500 - 1, 2),  # 4 jobs of 1500 MiB each do not fit 5999 MiB
    ((10_000, 16_000, 16_500), 4 * 1500, 4),
])
def test_measured_jobs_per_gpu_is_the_largest_packing_that_gains_and_fits(totals, memory, expected):
    assert measured_jobs_per_gpu(gpu_json(totals=totals)["packing"], memory) == expected


def test_a_packing_row_that_failed_or_a_packing_not_measured_counts_for_nothing():
    packing = gpu_json()["packing"]
    packing["rows"][2] = {"jobs_per_gpu": 4, "error": "CUDA out of memory"}
    assert measured_jobs_per_gpu(packing) == 2
    assert measured_jobs_per_gpu({"skipped": "no CUDA device"}) is None
    assert measured_jobs_per_gpu({"rows": [packing_row(2, 16_000.0)]}) is None  # no row of one job to compare with


def test_jobs_per_gpu_auto_is_this_gpus_measured_packing_else_one(tmp_path):
    write(tmp_path, gpu_json(totals=(10_000.0, 16_000.0, 10_500.0)))
    write(tmp_path, gpu_json(device="cpu", mode="quick"))
    measured = load_measurements(tmp_path)
    count, said = auto_jobs_per_gpu(measured, H100, 81_559.0)
    assert count == 2 and said == (f"jobs_per_gpu=auto: 2, measured on {H100} (2 jobs give 1.60× one job's images/s; "
                                   f"gpu_check_nvidia_h100_80gb_hbm3.json)")
    assert auto_jobs_per_gpu(measured, A100, 40_960.0) == (1, f"jobs_per_gpu=auto: 1 (not measured on this GPU, {A100})")
    assert auto_jobs_per_gpu([], H100, None)[0] == 1
    write(tmp_path, gpu_json(totals=(10_000.0, 10_100.0, 10_200.0)))
    assert auto_jobs_per_gpu(load_measurements(tmp_path), H100, None) == (
        1, f"jobs_per_gpu=auto: 1, measured on {H100} (no packing gains 10% over one job; gpu_check_nvidia_h100_80gb_hbm3.json)")


def test_jobs_per_gpu_auto_without_a_gpu_is_one_and_integers_pass_as_given(tmp_path, monkeypatch):
    monkeypatch.setattr(requests, "this_gpu", lambda: (None, None))
    assert resolve_jobs_per_gpu("auto", []) == (1, "jobs_per_gpu=auto: 1 (no GPU found)")
    assert resolve_jobs_per_gpu(3, []) == (3, None) and resolve_jobs_per_gpu("2", []) == (2, None)
    with pytest.raises(ConfigError, match=r"jobs_per_gpu='many' is not allowed; allowed: auto or an integer >= 1"):
        resolve_jobs_per_gpu("many", [])


def test_the_pipeline_command_takes_auto_and_says_what_it_chose(tmp_path, monkeypatch, capsys):
    """`rdml pipeline run … --jobs-per-gpu auto` (what DVC's stages and params.yaml's auto reach) resolves it
    against the JSON of this host's GPU, and says so on stderr."""
    from rdml.cli import _slots, build_parser

    write(tmp_path, gpu_json(totals=(10_000.0, 16_000.0, 10_500.0)))
    monkeypatch.setattr(requests, "RESULTS", tmp_path)
    monkeypatch.setattr(requests, "this_gpu", lambda: (H100, 81_559.0))
    args = build_parser().parse_args(["pipeline", "run", "s", "j", "--gpus", "1", "--jobs-per-gpu", "auto"])
    assert _slots(args) == ("1", 2)
    assert f"rdml: jobs_per_gpu=auto: 2, measured on {H100}" in capsys.readouterr().err
    args = build_parser().parse_args(["pipeline", "run", "s", "j", "--gpus", "1", "--jobs-per-gpu", "3"])
    assert _slots(args) == ("1", 3) and capsys.readouterr().err == ""


@pytest.mark.system
def test_snakemake_asks_slurm_for_the_measured_requests(tmp_path):
    """A dry run of the workflow with a GPU JSON in the project's benchmarks/results: the train jobs' resources
    are the measured requests, the plan says where they came from, and a `jobs_per_gpu: auto` on a host
    without a GPU runs one job a slot, saying why."""
    project = make_project(tmp_path, {**copy.deepcopy(STUDY), "jobs_per_gpu": "auto"})
    (project / "benchmarks" / "results").mkdir(parents=True)
    write(project / "benchmarks" / "results", gpu_json(costs={k: v for k, v in COSTS.items() if k != WRN}))
    dry = sh(str(BIN / "snakemake"), "all_tables", "-n", "--cores", "1", cwd=project)
    assert (f"rdml: cluster requests: mem_mb of 2 job(s) estimate, 3 job(s) measured on {H100}; "
            f"runtime of 2 job(s) estimate, 3 job(s) measured on {H100}") in dry.stderr
    shown = re.findall(r"rule train_job:.*?wildcards: study=c, job=(\S+).*?resources: (.*?)\n", dry.stdout, re.S)
    resources = {job: dict(kv.split("=", 1) for kv in line.split(", ")) for job, line in shown}
    assert {job: (r["mem_mb"], r["runtime"]) for job, r in resources.items()} == {
        TEACHER: ("6000", "36"), KD: ("6000", "28"), "cifar10/independent-resnet32-s0+1": ("5000", "10"),
        DML: ("8000", "12"), "cifar10/independent-wrn_20_8-s0+1": ("8000", "12")}
    assert "rdml: jobs_per_gpu=auto: 1 (no GPU found)" in dry.stderr or "jobs_per_gpu=auto: 1 (not measured" in dry.stderr
