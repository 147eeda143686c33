"""What a job asks the cluster for: SLURM's `mem_mb` and `runtime`, and `jobs_per_gpu: auto`.

Where `make gpu-check` (benchmarks/gpu_check.py) has measured a GPU in full mode, its JSON
(benchmarks/results/gpu_check_<device>.json) gives each network's seconds per training step (and per
teacher forward pass) and peak host memory, and the throughput of 1, 2 and 4 jobs packed on one GPU.
A job whose every network was measured asks for

    runtime = ceil(max(RUNTIME_FLOOR_MINUTES, RUNTIME_SAFETY × Σ_runs epochs × steps per epoch × step_s / 60))
    mem_mb  = MEM_STEP_MB × ceil(MEM_MARGIN × max over its networks of peak_rss_mb / MEM_STEP_MB)

("measured on <GPU>"); any other job asks for the estimate of before any GPU was measured,
ESTIMATE_MINUTES_PER_EPOCH per epoch of its runs and ESTIMATE_MEM_MB ("estimate", with the reason).
With several GPUs measured, each figure is the largest over the GPUs that measured all of the job's
networks (an upper bound on any of them), and the label names the GPU it came from. The step arithmetic
here is also what gpu_check's GPU-hours add up, so the two never disagree. Nothing here imports torch:
Snakemake plans with it.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rdml.keys import ConfigError

__all__ = ["RESULTS", "ESTIMATE_MINUTES_PER_EPOCH", "ESTIMATE_MEM_MB", "RUNTIME_FLOOR_MINUTES", "RUNTIME_SAFETY",
           "MEM_MARGIN", "MEM_STEP_MB", "PACKING_GAIN", "Measured", "Request", "load_measurements", "network_key",
           "planned_run", "steps_per_epoch", "step_seconds", "run_seconds", "train_rows", "estimate", "job_request",
           "measured_jobs_per_gpu", "auto_jobs_per_gpu", "resolve_jobs_per_gpu", "this_gpu", "describe",
           "MEASURE_MINUTES", "ESTIMATE_SECONDS_PER_PASS", "measure_runtime"]

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"  # the repository's measurements

# The estimate (no measurement of the job's networks): the slowest paper network, WRN-28-10, takes ~1.5 min
# per CIFAR epoch on one V100-class GPU in fp32; one training process's host memory is torch, the CUDA
# context and a data set as uint8 tensors.
ESTIMATE_MINUTES_PER_EPOCH = 2
ESTIMATE_MEM_MB = 8000
# From measurements: the timed steps leave out each epoch's evaluation passes, the process's start (torch,
# the data set, CUDA), checkpoints and a node slower than the one measured, hence twice the training
# steps' time, and never under 10 minutes.
RUNTIME_SAFETY = 2.0
RUNTIME_FLOOR_MINUTES = 10
# Host memory: the peak RSS was measured with one network and its data set's small stand-in; the job
# holds its cohort and the real data set, hence 1.5× the largest, rounded up to whole 1000 MB.
MEM_MARGIN = 1.5
MEM_STEP_MB = 1000
# A measuring job (rdml pipeline measure): 30 minutes, or for a loss landscape (rdml.analysis.landscape) an
# estimate of ESTIMATE_SECONDS_PER_PASS per point, each a pass over the training set (~15 s for WRN-20-8 over
# CIFAR's 50,000 images on a V100-class GPU), the grid's points and twice as many again for its paths, × RUNTIME_SAFETY.
MEASURE_MINUTES = 30
ESTIMATE_SECONDS_PER_PASS = 15
# jobs_per_gpu auto: a packing counts once its total images/s beats one job alone by 10 % or more.
PACKING_GAIN = 1.10


@dataclass(frozen=True)
class Measured:
    """One full-mode gpu_check JSON: the GPU it ran on, its networks' costs and its packing rows."""

    device: str
    path: Path
    networks: dict[str, dict]  # network key → {"step_s", "forward_s", "peak_rss_mb", ...}, measured ones only
    packing: dict = field(default_factory=dict)  # the JSON's packing section


@dataclass(frozen=True)
class Request:
    """What one job asks the cluster for, and where each figure came from."""

    mem_mb: int
    runtime: int  # minutes
    mem_from: str
    runtime_from: str


def load_measurements(folder: str | Path | None = None) -> list[Measured]:
    """The full-mode gpu_check JSONs in `folder` (default: the repository's benchmarks/results), by file name.

    A quick or CPU run (`mode` not "full", or no CUDA) measured the CPU at tiny sizes, no GPU: ignored.
    """
    folder = Path(RESULTS if folder is None else folder)
    found = []
    for path in sorted(folder.glob("gpu_check_*.json")) if folder.is_dir() else []:
        try:
            body = json.loads(path.read_text())
            machine, mode = body["what_ran"], body["mode"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a gpu_check JSON ({type(exc).__name__}: {exc}); rerun `make gpu-check` "
                              f"or remove it") from None
        if mode != "full" or not machine.get("cuda_available") or machine.get("device") in (None, "cpu"):
            continue
        networks = body.get("networks", {}).get("networks", {})
        measured = {key: entry for key, entry in networks.items()
                    if all(isinstance(entry.get(k), (int, float)) for k in ("step_s", "forward_s", "peak_rss_mb"))}
        found.append(Measured(machine["device"], path, measured, body.get("packing") or {}))
    return found


# ---- a run's cost, one computation for the requests here and gpu_check's GPU-hours


def network_key(arch: str, dataset: str, batch_size: int, precision: str) -> str:
    """One measured network: what sets a training step's cost."""
    return f"{arch}|{dataset}|{batch_size}|{precision}"


def planned_run(run) -> dict:
    """A planned run (rdml.study.runs.Run) as its cost reads it: its networks, its teacher's (the teacher
    runs forward at the student's batch size and precision), epochs, batch size and data keys."""
    from rdml.config import config_values, data_keys

    cfg = run.config
    keys = [network_key(a, run.dataset, cfg.batch_size, cfg.precision) for a in run.archs]
    teacher = run.teacher
    teachers = [] if teacher is None else [network_key(teacher.archs[cfg.teacher_index], teacher.dataset,
                                                       cfg.batch_size, cfg.precision)]
    split = {k: v for k, v in data_keys(config_values(cfg)).items() if k != "data_dir"}
    return {"id": run.id, "dataset": run.dataset, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
            "networks": keys, "teachers": teachers, "data_keys": split}


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """len(rdml.data.base.batch_starts(rows, batch_size)), without importing torch: one step per batch, and a
    last batch of one row joins the one before it."""
    steps = -(-rows // batch_size)
    return steps - 1 if steps > 1 and rows - (steps - 1) * batch_size == 1 else steps


def step_seconds(networks: list[str], teachers: list[str], seconds: dict[str, dict]) -> float:
    """One step of a run: a training step of each of its networks and a forward pass of each teacher, at the
    measured `seconds[network] = {"step_s": …, "forward_s": …}`."""
    return sum(seconds[n]["step_s"] for n in networks) + sum(seconds[n]["forward_s"] for n in teachers)


def run_seconds(run: dict, rows: int, seconds: dict[str, dict]) -> float:
    """A run's training time: epochs × steps per epoch × seconds per step (evaluation passes not counted)."""
    return run["epochs"] * steps_per_epoch(rows, run["batch_size"]) * step_seconds(run["networks"], run["teachers"],
                                                                                   seconds)


def train_rows(dataset: str, data_keys: dict, given: dict[str, int], cache: dict,
               data_dir: str | Path | None = None) -> tuple[int | None, str]:
    """A run's training rows (after any validation split and dropped unlabelled rows) and where the figure
    comes from; None with the reason where it is not known. A set that is not downloaded (embedded or
    generated) declares no size: it is loaded from `data_dir` and counted, or, without one (planning, which
    never imports torch), left unknown."""
    from rdml.data.catalog import DATASETS
    from rdml.data.sizes import TRAIN_ROWS

    source = DATASETS[dataset]
    declared = given.get(dataset, TRAIN_ROWS.get(dataset))
    where = "given on the command line" if dataset in given else "rdml.data.sizes"
    if declared is None and not source.downloaded:
        if data_dir is None:
            return None, f"the training rows of {dataset} are counted by loading it, which planning does not"
        key = (dataset, json.dumps(data_keys, sort_keys=True))
        if key not in cache:  # unlabelled=drop: load_dataset has removed the unlabelled rows
            from rdml.data.base import load_dataset

            cache[key] = len(load_dataset(dataset, **{**data_keys, "data_dir": str(data_dir)}).y_train)
        return cache[key], "counted: the data set is embedded, loaded with the run's split keys"
    if declared is None:
        return None, (f"rdml.data.sizes declares no training size for {dataset} and it is downloaded data; "
                      f"give --train-rows {dataset}=N")
    rows = int(declared)
    approximate = False
    if data_keys.get("val_fraction"):
        rows -= round(rows * data_keys["val_fraction"])
        approximate = True
    if data_keys.get("labelled_fraction", 1.0) < 1 and data_keys.get("unlabelled") == "drop":
        rows = round(rows * data_keys["labelled_fraction"])
        approximate = True
    return rows, where + (" (split by fraction: within a row per class)" if approximate else "")


# ---- a job's requests


def estimate(runs: list[dict], why: str) -> Request:
    """The requests of before any measurement: ESTIMATE_MINUTES_PER_EPOCH per epoch of the job's runs (at least
    RUNTIME_FLOOR_MINUTES) and ESTIMATE_MEM_MB."""
    minutes = max(RUNTIME_FLOOR_MINUTES, ESTIMATE_MINUTES_PER_EPOCH * sum(run["epochs"] for run in runs))
    label = f"estimate ({why})"
    return Request(ESTIMATE_MEM_MB, minutes, label, label)


def _measured_on(device: str, of: list[str], largest: str) -> str:
    """'measured on <GPU>', naming the others where several GPUs measured the job."""
    others = f" ({largest} of {len(of)} GPUs measured: {', '.join(of)})" if len(of) > 1 else ""
    return f"measured on {device}{others}"


def job_request(runs: list[dict], measured: list[Measured], rows_of: Callable[[dict], tuple] | None = None) -> Request:
    """A job's `mem_mb` and `runtime` (minutes): from the GPUs that measured every network of its runs (`runs`:
    `planned_run` of each), the largest over them, else the estimate. `rows_of(run)` → (training rows or
    None, where from); by default rdml.data.sizes's, without loading any data set."""
    if rows_of is None:
        cache: dict = {}

        def rows_of(run):
            return train_rows(run["dataset"], run["data_keys"], {}, cache)

    needed = sorted({n for run in runs for n in run["networks"] + run["teachers"]})
    covering = [m for m in measured if all(n in m.networks for n in needed)]
    if not measured:
        return estimate(runs, "no GPU measured: no full-mode gpu_check JSON")
    if not covering:
        missing = sorted({n for n in needed if not any(n in m.networks for m in measured)})
        return estimate(runs, f"not measured on {', '.join(m.device for m in measured)}: "
                              f"{', '.join(missing) or 'no single GPU measured all of ' + ', '.join(needed)}")
    devices = [m.device for m in covering]
    mems = [MEM_STEP_MB * math.ceil(MEM_MARGIN * max(m.networks[n]["peak_rss_mb"] for n in needed) / MEM_STEP_MB)
            for m in covering]
    best_mem = max(range(len(covering)), key=lambda i: mems[i])
    rows = [rows_of(run) for run in runs]
    unknown = sorted({where for count, where in rows if count is None})
    if unknown:
        minutes, runtime_from = estimate(runs, "; ".join(unknown)).runtime, f"estimate ({'; '.join(unknown)})"
    else:
        seconds = [sum(run_seconds(run, count, m.networks) for run, (count, _) in zip(runs, rows)) for m in covering]
        best = max(range(len(covering)), key=lambda i: seconds[i])
        minutes = math.ceil(max(RUNTIME_FLOOR_MINUTES, RUNTIME_SAFETY * seconds[best] / 60))
        runtime_from = _measured_on(covering[best].device, devices, "the slowest")
    return Request(mems[best_mem], minutes, _measured_on(covering[best_mem].device, devices, "the largest"),
                   runtime_from)


# ---- jobs_per_gpu: auto


def measured_jobs_per_gpu(packing: dict, gpu_memory_mb: float | None = None, gain: float = PACKING_GAIN) -> int | None:
    """From gpu_check's packing section: the largest number of jobs per GPU whose total images/s is at least
    `gain` × one job's and whose jobs fit the GPU (the row ran without error, each job capped at 1/N of the
    memory, and, where the GPU's memory is known, N × the largest job's peak allocation within it); 1 where
    no packing gains that much; None where nothing was measured."""
    rows = [r for r in packing.get("rows", []) if isinstance(r, dict) and "error" not in r
            and isinstance(r.get("images_per_s_total"), (int, float)) and isinstance(r.get("jobs_per_gpu"), int)]
    one = next((r["images_per_s_total"] for r in rows if r["jobs_per_gpu"] == 1), None)
    if not one:
        return None

    def fits(row) -> bool:
        peaks = [p for p in row.get("max_memory_allocated_mb_each") or [] if isinstance(p, (int, float))]
        return gpu_memory_mb is None or not peaks or row["jobs_per_gpu"] * max(peaks) <= gpu_memory_mb

    gaining = [r["jobs_per_gpu"] for r in rows if r["jobs_per_gpu"] > 1 and fits(r)
               and r["images_per_s_total"] >= gain * one]
    return max(gaining, default=1)


def this_gpu() -> tuple[str | None, float | None]:
    """The name and memory (MiB) of this host's first GPU, asked of nvidia-smi (CUDA is not started);
    (None, None) without one."""
    if shutil.which("nvidia-smi") is None:
        return None, None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=False).stdout
        name, _, memory = out.strip().splitlines()[0].rpartition(",")
        return name.strip() or None, float(memory)
    except (OSError, subprocess.TimeoutExpired, IndexError, ValueError):
        return None, None


def auto_jobs_per_gpu(measured: list[Measured] | None = None, device: str | None = None,
                      gpu_memory_mb: float | None = None) -> tuple[int, str]:
    """`jobs_per_gpu: auto`: the measured packing of this host's GPU (found by its name among the full-mode
    gpu_check JSONs), else 1; and a line that says which."""
    if device is None:
        device, gpu_memory_mb = this_gpu()
    if device is None:
        return 1, "jobs_per_gpu=auto: 1 (no GPU found)"
    measured = load_measurements() if measured is None else measured
    for m in measured:
        if m.device == device:
            count = measured_jobs_per_gpu(m.packing, gpu_memory_mb)
            if count is None:
                why = m.packing.get("skipped") or m.packing.get("error") or "no row of one job"
                return 1, f"jobs_per_gpu=auto: 1 (packing not measured on this GPU, {device}: {why}; {m.path.name})"
            rows = {r.get("jobs_per_gpu"): r for r in m.packing.get("rows", [])}
            ratio = rows[count].get("ratio_to_one_job") if count in rows else None
            gained = (f"{count} jobs give {ratio:.2f}× one job's images/s" if count > 1 and ratio else
                      f"no packing gains {PACKING_GAIN - 1:.0%} over one job")
            return count, f"jobs_per_gpu=auto: {count}, measured on {device} ({gained}; {m.path.name})"
    return 1, f"jobs_per_gpu=auto: 1 (not measured on this GPU, {device})"


def resolve_jobs_per_gpu(value, measured: list[Measured] | None = None) -> tuple[int, str | None]:
    """params.yaml's or the command line's `jobs_per_gpu` as a number: an integer as given, `auto` as measured
    (`auto_jobs_per_gpu`, with its line); anything else refused, naming the value and what is allowed."""
    from rdml.study.params import jobs_per_gpu

    checked = jobs_per_gpu(value)
    return auto_jobs_per_gpu(measured) if checked == "auto" else (checked, None)


def measure_runtime(wanted: dict) -> int:
    """The minutes a measuring job asks for (an estimate): MEASURE_MINUTES, or for a loss landscape its grid's
    points ((high − low)/step + 1 per axis) and twice as many for the paths, at ESTIMATE_SECONDS_PER_PASS each."""
    spec = wanted.get("landscape")
    if not spec:
        return MEASURE_MINUTES
    step = spec.get("step", 1.0)
    steps = step if isinstance(step, list) else [step, step]
    points = 1
    for (low, high), each in zip((spec["x_bounds"], spec["y_bounds"]), steps):
        points *= round((high - low) / each) + 1
    return max(MEASURE_MINUTES, math.ceil(3 * points * ESTIMATE_SECONDS_PER_PASS / 60 * RUNTIME_SAFETY))


def describe(requests: Iterable[Request]) -> str:
    """One line on where a plan's requests came from: for mem_mb and for runtime, how many jobs each source gave."""
    requests = list(requests)
    parts = []
    for name in ("mem_mb", "runtime"):
        counts: dict[str, int] = {}
        for request in requests:
            source = getattr(request, name.split("_")[0] + "_from").split(" (")[0]
            counts[source] = counts.get(source, 0) + 1
        parts.append(f"{name} of {', '.join(f'{n} job(s) {source}' for source, n in sorted(counts.items()))}")
    return "; ".join(parts)
