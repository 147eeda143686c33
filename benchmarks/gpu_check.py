"""`make gpu-check`: one prepared run that answers, on one GPU, everything rdml needs measured there.

GPU time is scarce, so one short run (at most `--budget-s`, 480 s by default, on one H100) measures, in
this order, each section in its own time share (what a section leaves unused passes to the next):
- cuda_tests: the tests that need a CUDA device (those that skip with "no CUDA device"), run by pytest in
  a subprocess under a time limit: passed, failed and skipped counts;
- pair: the DML ResNet-32 pair of benchmarks/cohort_throughput.py against the released loop, in images/s,
  in fp32, tf32, bf16 + channels_last, compiled and fused (each path its own process, with its peak GPU
  memory and host RSS);
- packing: 1, 2 and 4 jobs on one GPU (benchmarks/gpu_packing.py), images/s and the GPU's used memory;
- networks: the seconds of a fixed number of training steps (and of forward passes, for teachers) of
  every network of params.yaml's studies at its study's batch size and precision, each in its own
  process with its peak GPU memory and host RSS (for SLURM's `mem_mb` and `runtime`);
- gpu_hours: from those, each study's GPU-hours = Σ over its runs of epochs × steps per epoch × seconds
  per step (evaluation passes not counted), where the data set's training size is known: the arithmetic
  of rdml.pipeline.requests, which also turns this JSON into SLURM's `mem_mb`, `runtime` and
  `jobs_per_gpu: auto`;
- photos: the photo transforms of benchmarks/photo_transforms.py on CUDA.
A section that fails records its error and the run goes on; the JSON is rewritten after every section,
so a run cut short keeps what it measured. On a CPU (and with `--quick`) the same code runs at tiny sizes
in under a minute: the CPU subset of the pair, the digits study's three small networks; the GPU-only
sections record why they were skipped.

    .venv/bin/python benchmarks/gpu_check.py [--budget-s 480] [--quick] [--out DIR] [--train-rows NAME=N ...]
    .venv/bin/python benchmarks/gpu_check.py --hours-from results/gpu_check_<device>.json [--train-rows NAME=N ...]

`--hours-from` recomputes only the GPU-hours of an earlier run's measurements (no device needed), e.g.
once training sizes are known.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
sys.path.insert(0, str(ROOT / "src"))

# Time shares of the budget, in run order; a section's unused time passes to the ones after it.
SHARES = {"cuda_tests": 0.15, "pair": 0.25, "packing": 0.11, "networks": 0.36, "photos": 0.07, "imagenet_stream": 0.06}
# name: (cohort_throughput.py's path, its arguments): the released loop with that many loader workers, or
# rdml's trainer with these keys (every rdml path deterministic unless it says not: rdml's default).
PAIR_PATHS = {
    "released loop, 0 loader workers": ("baseline", ["0"]),
    "released loop, 2 loader workers": ("baseline", ["2"]),
    "rdml, this device's defaults": ("rdml", []),
    "fp32": ("rdml", ["precision=fp32", "memory_format=contiguous"]),
    "fp32, not deterministic": ("rdml", ["precision=fp32", "memory_format=contiguous", "deterministic=false"]),
    "fp32 + channels_last": ("rdml", ["precision=fp32", "memory_format=channels_last"]),
    "tf32": ("rdml", ["precision=tf32", "memory_format=contiguous"]),
    "bf16 + channels_last": ("rdml", ["precision=bf16", "memory_format=channels_last"]),
    "fp32, fused students": ("rdml", ["precision=fp32", "memory_format=contiguous", "fuse_students=true"]),
    "fp32, compiled": ("rdml", ["precision=fp32", "memory_format=contiguous", "compile=true"]),
}
CPU_PAIR_PATHS = ("fp32",)  # what the CPU mode runs (the CPU's full comparison: cohort_throughput.py)
QUICK_STUDY = "digits"  # the CPU mode's networks: the embedded study's three small ones
STEPS = {"quick": (1, 3), "full": (3, 10)}  # warm-up and timed steps of a network
PACKING_JOBS = (1, 2, 4)


class Budget:
    """The run's deadline, shared out among the sections still to run by their SHARES."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def share(self, section: str) -> float:
        later = list(SHARES)[list(SHARES).index(section):]
        return self.left() * SHARES[section] / sum(SHARES[s] for s in later)


def safe_name(name: str) -> str:
    """A device name as a file name: 'NVIDIA H100 80GB HBM3' → 'nvidia_h100_80gb_hbm3'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unknown"


def what_ran() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": cuda,
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "gpus": torch.cuda.device_count() if cuda else 0, "cpu_cores": os.cpu_count(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "git_commit": commit or None, "git_dirty": bool(dirty)}


def tail(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ---- the sections: each returns its own dict; `run_section` adds its timing and any error


def cuda_test_files() -> list[Path]:
    """The test files with tests that need CUDA: those skipping with "no CUDA device", or adding a CUDA case when one
    is available."""
    marks = ('reason="no CUDA device"', "cuda.is_available()")
    return sorted(p for p in (ROOT / "tests").glob("test_*.py")
                  if p.name != "test_gpu_check.py" and any(m in p.read_text() for m in marks))


def pytest_collection_modifyitems(config, items):
    """As a pytest plugin (`-p gpu_check`, the cuda_tests section): keep the tests that need a CUDA device, those
    skipped with a reason naming CUDA where there is none and the cases of a `cuda` parameter."""
    keep, drop = [], []
    for item in items:
        reasons = [str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skipif")]
        ids = item.callspec.id.split("-") if hasattr(item, "callspec") else []
        (keep if "cuda" in ids or any("CUDA" in reason for reason in reasons) else drop).append(item)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)


def section_cuda_tests(seconds: float, quick: bool) -> dict:
    files = cuda_test_files()
    with tempfile.TemporaryDirectory(prefix="rdml-gpu-check-") as tmp:
        report = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "gpu_check",
                   f"--junitxml={report}", *map(str, files)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCHMARKS), os.environ.get("PYTHONPATH")]))}
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(1.0, seconds), env=env)
        except subprocess.TimeoutExpired as cut:  # what it printed so far (-v: a line per test) says which ran
            printed = cut.stdout.decode(errors="replace") if isinstance(cut.stdout, bytes) else (cut.stdout or "")
            outcomes = re.findall(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED)", printed, re.M)
            return {"files": [p.name for p in files], "error": f"pytest ran past its {seconds:.0f} s share",
                    **{word.lower(): sum(o == word for _, o in outcomes) for word in ("PASSED", "FAILED", "SKIPPED")},
                    "failed_tests": [t for t, o in outcomes if o in ("FAILED", "ERROR")], "pytest_tail": tail(printed)}
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        failed, skip_reasons = [], set()
        if report.exists():
            for case in ElementTree.parse(report).iter("testcase"):
                name = f"{case.get('classname')}::{case.get('name')}"
                if case.find("failure") is not None or case.find("error") is not None:
                    counts["failed"] += 1
                    failed.append(name)
                elif case.find("skipped") is not None:
                    counts["skipped"] += 1
                    skip_reasons.add(case.find("skipped").get("message", ""))
                else:
                    counts["passed"] += 1
    result = {"files": [p.name for p in files], "selection": "skipped without CUDA, or a cuda parameter", **counts, "failed_tests": failed,
              "skip_reasons": sorted(skip_reasons), "pytest_exit": done.returncode, "pytest_tail": tail(done.stdout)}
    if done.returncode not in (0, 5) and not failed:  # 5: nothing collected (no CUDA case here)
        result["error"] = tail(done.stdout + done.stderr)
    return result


def run_child(command: list[str], seconds: float) -> dict:
    """A measuring child's last stdout line as JSON, or its error."""
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(1.0, seconds))
    except subprocess.TimeoutExpired:
        return {"error": f"ran past its {seconds:.0f} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def section_pair(seconds: float, quick: bool, cuda: bool) -> dict:
    """The ResNet-32 pair through cohort_throughput.py's own measuring child (one process per path)."""
    import statistics

    names = [n for n in PAIR_PATHS if n in CPU_PAIR_PATHS or not quick]
    windows, batches = (1, 1) if quick else (5, 10)
    deadline = time.monotonic() + seconds
    paths = {}
    for name in PAIR_PATHS:
        if name not in names:
            paths[name] = {"skipped": "tf32 is CUDA only" if "tf32" in name and not cuda else
                           "not in the CPU mode (--quick or no CUDA device)"}
            continue
        left = deadline - time.monotonic()
        if left < 5:
            paths[name] = {"skipped": "the section's time share ran out"}
            continue
        path, keys = PAIR_PATHS[name]
        result = run_child([sys.executable, __file__, "--child-pair", path, *keys,
                            "--windows", str(windows), "--batches", str(batches)], left)
        if "rates" in result:
            result["images_per_second"] = statistics.median(result["rates"])
        paths[name] = {"keys": keys, **result}
    baselines = [r["images_per_second"] for n, r in paths.items() if n.startswith("released") and "images_per_second" in r]
    for r in paths.values():
        if baselines and "images_per_second" in r:
            r["ratio_to_released_loop"] = r["images_per_second"] / max(baselines)
    return {"batch_size": 128, "windows": windows, "batches_per_window": batches, "paths": paths,
            "released_loop_images_per_second": max(baselines) if baselines else None}


def measure_pair(path: str, keys: list[str], windows: int, batches: int) -> dict:
    """cohort_throughput.py's own measurement of one path, in this process, after the run's torch switches
    (TF32, deterministic kernels: Execution.apply, as the trainer sets them) for an rdml path; the released
    loop runs under torch's defaults, as the released code does."""
    import contextlib
    import importlib.util
    import io

    numerics = None
    if path == "rdml":
        from rdml.config import load_config, resolve
        from rdml.train.prepare import prepare

        execution = prepare(resolve(load_config(None, ["method=dml", "arch=resnet32", "dataset=synthetic",
                                                       "out=unused", *keys]))).execution
        numerics = execution.apply() if hasattr(execution, "apply") else None
    spec = importlib.util.spec_from_file_location("cohort_throughput", BENCHMARKS / "cohort_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        module.child(path, keys, windows, batches)
    return {**json.loads(printed.getvalue().strip().splitlines()[-1]), "numerics": numerics}


def gpu_memory_used_mb() -> float | None:
    """The whole GPU's used memory (every process, CUDA contexts included), from nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10).stdout
        return float(out.strip().splitlines()[0])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def section_packing(seconds: float, quick: bool, cuda: bool) -> dict:
    if not cuda:
        return {"skipped": "no CUDA device: CPU cores are no model of a GPU's idle capacity (gpu_packing.py)"}
    # each row: ~10 s to start its jobs and warm up, then `run_s` of training
    run_s = max(3.0, min(20.0, seconds / len(PACKING_JOBS) - 15))
    rows = []
    for n in PACKING_JOBS:
        with tempfile.TemporaryDirectory(prefix="rdml-gpu-check-") as tmp:
            out = Path(tmp) / "packing.json"
            peak, stop = [], threading.Event()

            def poll():
                while not stop.wait(0.5):
                    used = gpu_memory_used_mb()
                    if used is not None:
                        peak.append(used)

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            try:
                done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_packing.py"), "--seconds", str(run_s),
                                       "--jobs", str(n), "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                                      timeout=run_s + 60)
            except subprocess.TimeoutExpired:
                rows.append({"jobs_per_gpu": n, "error": "ran past its time"})
                continue
            finally:
                stop.set()
                poller.join()
            if done.returncode != 0 or not out.exists():
                rows.append({"jobs_per_gpu": n, "error": tail(done.stderr or done.stdout, 2)})
                continue
            row = json.loads(out.read_text())["rows"][0]
        rows.append({**row, "gpu_memory_used_peak_mb": max(peak) if peak else None})
    one = next((r["images_per_s_total"] for r in rows if r["jobs_per_gpu"] == 1 and "images_per_s_total" in r), None)
    for row in rows:
        if one and "images_per_s_total" in row:
            row["ratio_to_one_job"] = row["images_per_s_total"] / one
    return {"seconds_per_row": run_s, "rows": rows,
            "memory": "nvidia-smi's used memory of GPU 0 at its peak, every job's CUDA context included"}


def section_imagenet_stream(seconds: float, quick: bool, cuda: bool) -> dict:
    """dml_imagenet end to end: a MobileNet-V1 DML pair's training images/s on streamed JPEG shards with 2, 4 and 8
    decoding workers, and on inputs already on the GPU (benchmarks/imagenet_data.py --end-to-end)."""
    if not cuda:
        return {"skipped": "no CUDA device: the CPU figures of the input path are benchmarks/imagenet_data.md"}
    images, steps, workers = (128, 3, ["2"]) if quick else (640, 20, ["2", "4", "8"])
    done = subprocess.run([sys.executable, str(BENCHMARKS / "imagenet_data.py"), "--images", str(images), "--classes", "8",
                           "--batch", "64", "--steps", str(steps), "--end-to-end", *workers], cwd=ROOT,
                          capture_output=True, text=True, timeout=max(1.0, seconds))
    if done.returncode != 0:
        return {"error": tail(done.stderr or done.stdout, 2)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def section_photos(seconds: float, quick: bool, cuda: bool) -> dict:
    if not cuda:
        return {"skipped": "no CUDA device: the CPU figures are benchmarks/results/photo_transforms_cpu.md"}
    photos, rounds = (64, 1) if quick else (256, 2)
    with tempfile.TemporaryDirectory(prefix="rdml-gpu-check-") as tmp:
        out = Path(tmp) / "photos.md"
        done = subprocess.run([sys.executable, str(BENCHMARKS / "photo_transforms.py"), "--photos", str(photos),
                               "--rounds", str(rounds), "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                              timeout=max(1.0, seconds))
        if done.returncode != 0:
            return {"error": tail(done.stderr or done.stdout, 2)}
        rows = []
        for line in out.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 5 and cells[2].isdigit():
                rows.append({"dataset": cells[0], "path": cells[1], "images_per_second": float(cells[2]),
                             "ratio_to_faster_baseline": float(cells[4])})
    return {"photos": photos, "rounds": rounds, "rows": rows}


# ---- the networks of the studies, and their GPU-hours


def study_names(params: dict) -> list[str]:
    return [name for name in params["studies"] if not name.endswith("_smoke")]


def planned_networks(params: dict) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """The (arch, dataset, batch size, precision) of every network of every study (teachers too), once each,
    with the studies that train it; and each study's runs as `study_gpu_hours` reads them
    (rdml.pipeline.requests.planned_run, as a job's SLURM requests read them)."""
    from rdml.pipeline.requests import planned_run
    from rdml.study.plan import plan_study

    networks, studies = {}, {}
    for study in study_names(params):
        runs = []
        for run in plan_study(params, study):
            cost = planned_run(run)
            for key, of in [(k, run) for k in cost["networks"]] + [(k, run.teacher) for k in cost["teachers"]]:
                # how its inputs are made and how it runs: the first run's augmentation, normalisation, layout
                # and compilation (a paper study names its layout; auto is timed, as the trainer times it)
                entry = networks.setdefault(key, {"studies": [], "train": {
                    "augment": of.config.augment, "normalize": of.config.normalize,
                    "memory_format": of.config.memory_format, "compile": of.config.compile}})
                if study not in entry["studies"]:
                    entry["studies"].append(study)
            runs.append(cost)
        studies[study] = runs
    return networks, studies


def train_rows(dataset: str, data_keys: dict, given: dict[str, int], cache: dict) -> tuple[int | None, str]:
    """A run's training rows and where the figure comes from (rdml.pipeline.requests.train_rows), an embedded
    or generated set loaded from the repository's data/ and counted."""
    from rdml.pipeline.requests import train_rows as rows

    return rows(dataset, data_keys, given, cache, data_dir=ROOT / "data")


def study_gpu_hours(runs: list[dict], seconds: dict[str, dict], rows_of) -> dict:
    """GPU-hours of one study: Σ over its runs of epochs × steps per epoch × seconds per step, where a run's
    step is one training step of each of its networks and one forward pass of each teacher, at the
    measured seconds (`seconds[network] = {"step_s": …, "forward_s": …}`). `rows_of(run)` → (training rows
    or None, where from). A run whose size or network is unknown is named, and leaves the total None."""
    from rdml.pipeline.requests import run_seconds

    hours, unknown, known_runs = 0.0, {}, 0
    for run in runs:
        missing = [n for n in run["networks"] + run["teachers"] if n not in seconds]
        rows, where = rows_of(run)
        if missing:
            unknown.setdefault("networks not measured", set()).update(missing)
        if rows is None:
            unknown.setdefault("training size unknown", set()).add(where)
        if missing or rows is None:
            continue
        hours += run_seconds(run, rows, seconds) / 3600
        known_runs += 1
    return {"runs": len(runs), "runs_counted": known_runs, "gpu_hours": hours if not unknown else None,
            "gpu_hours_of_counted_runs": hours, "unknown": {k: sorted(v) for k, v in unknown.items()}}


def hours_section(studies: dict[str, list[dict]], measured: dict[str, dict], given: dict[str, int], device: str) -> dict:
    cache, sources = {}, {}

    def rows_of(run):
        rows, where = train_rows(run["dataset"], run["data_keys"], given, cache)
        sources.setdefault(run["dataset"], set()).add(where)
        return rows, where

    seconds = {k: v for k, v in measured.items() if "step_s" in v}
    result = {name: study_gpu_hours(runs, seconds, rows_of) for name, runs in studies.items()}
    return {"measured_on": device, "studies": result, "training_rows_from": {k: sorted(v) for k, v in sources.items()},
            "counts": "training steps only (evaluation passes excluded); one GPU per job, jobs_per_gpu 1"}


def measured_as(key: str, entry: dict) -> tuple:
    """What a step's cost follows from: networks differing only in their data set's classes are measured once."""
    from rdml.data.catalog import DATASETS

    arch, dataset, batch_size, precision = key.split("|")
    spec = DATASETS[dataset].spec
    return arch, spec.kind, spec.input_shape, batch_size, precision, *(entry["train"][k] for k in sorted(entry["train"]))


def section_networks(seconds: float, quick: bool, params: dict) -> tuple[dict, dict]:
    networks, studies = planned_networks(params)
    chosen = [k for k, v in networks.items() if QUICK_STUDY in v["studies"]] if quick else list(networks)
    warm, timed = STEPS["quick" if quick else "full"]
    deadline = time.monotonic() + seconds
    first: dict[tuple, str] = {}
    for key, entry in networks.items():
        same = first.setdefault(measured_as(key, entry), key)
        if same != key:
            entry.update({k: v for k, v in networks[same].items() if k not in ("studies", "train")}, measured_as=same)
            continue
        if key not in chosen:
            entry["skipped"] = f"not in the CPU mode: only the {QUICK_STUDY} study's networks"
            continue
        left = deadline - time.monotonic()
        if left < 5:
            entry["skipped"] = "the section's time share ran out"
            continue
        spec = json.dumps({"network": key, **entry["train"]})
        entry.update(run_child([sys.executable, __file__, "--child-network", spec, "--steps", str(warm), str(timed)],
                               min(left, 60.0)))
    return {"warm_up_steps": warm, "timed_steps": timed, "networks": networks}, studies


def measure_network(spec: str, warm: int, timed: int) -> dict:
    """A network's seconds per training step (and per forward pass) on the rows of its data set's smoke stand-in,
    drawn with replacement to full batches, through the trainer's own path (rdml.train.cohort and the
    independent method's train_step)."""
    from functools import partial

    import torch

    from rdml.config import config_from_mapping, config_values, data_keys, resolve
    from rdml.data.augment import augment_batch
    from rdml.data.base import Batch, load_dataset
    from rdml.data.catalog import DATASETS
    from rdml.methods import METHODS
    from rdml.train.cohort import build_cohort
    from rdml.train.execution import choose_execution
    from rdml.train.prepare import pick_device

    spec = json.loads(spec)
    arch, dataset, batch_size, precision = spec["network"].split("|")
    stand_in = DATASETS[dataset].smoke or dataset
    cfg = resolve(config_from_mapping({"method": "independent", "arch": [arch], "dataset": stand_in, "out": "unused",
                                       "batch_size": int(batch_size), "precision": precision,
                                       **{k: spec[k] for k in ("augment", "normalize", "memory_format", "compile")}}))
    device = pick_device(cfg.device)
    wanted = {**config_values(cfg), "device": device, "archs": list(cfg.arch)}
    execution = choose_execution(**{n: wanted[n] for n in inspect.signature(choose_execution).parameters if n in wanted})
    data = load_dataset(stand_in, **data_keys(config_values(cfg))).to(device)
    numerics = execution.apply() if hasattr(execution, "apply") else None  # the trainer's torch switches
    if "auto" in (execution.memory_format, execution.compile):  # as the trainer resolves them: timed on this step
        from rdml.train.loop import timed_execution
        from rdml.train.prepare import Prepared

        execution = timed_execution(Prepared(cfg, "", device, execution, data, None, None, {}, data.num_classes),
                                    None)[0].execution
    cohort = build_cohort(cfg, data, execution, steps_per_epoch=1000)
    method = METHODS["independent"](cfg)
    draws = torch.Generator().manual_seed(0)
    augment = None if cfg.augment == "none" else partial(augment_batch, kind=cfg.augment, generator=draws)
    rows = torch.Generator().manual_seed(1)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    class Drawn:  # a streamed set's batch (ImageNet): the step on decoded inputs of its shape, in [-1, 1]; decoding
        # is the workers' work, measured by benchmarks/imagenet_data.py
        def __init__(self):
            self.labels = torch.randint(data.num_classes, (int(batch_size),), generator=rows).to(device)
            self.x = (torch.rand(int(batch_size), *data.spec.input_shape, generator=rows) * 2 - 1).to(device)

        def inputs(self, augment=None):
            return self.x

    def batch():
        if getattr(data, "x_train", None) is None:
            return Drawn()
        return Batch(data, torch.randint(len(data.y_train), (int(batch_size),), generator=rows))

    def train():
        b = batch()
        method.train_step(b.inputs(augment), b.labels, cohort)

    model, run = cohort[0].model, cohort[0]

    def forward():
        with torch.no_grad():
            run(batch().inputs(augment))  # a teacher's forward pass sees the training batch

    def seconds(step) -> float:
        for _ in range(warm):
            step()
        sync()
        start = time.perf_counter()
        for _ in range(timed):
            step()
        sync()
        return (time.perf_counter() - start) / timed

    step_s = seconds(train)
    model.eval()
    forward_s = seconds(forward)
    result = {"step_s": step_s, "forward_s": forward_s, "images_per_second": int(batch_size) / step_s,
              "stand_in": stand_in, "execution": execution.describe(), "numerics": numerics,
              "parameters": sum(p.numel() for p in model.parameters()),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# ---- the run


def run_section(results: dict, name: str, work, out: Path) -> None:
    started = time.perf_counter()
    try:
        body = work()
    except Exception as exc:  # one section's failure must not waste the others' device time
        body = {"error": f"{type(exc).__name__}: {exc}"}
    results[name] = {**body, "seconds": round(time.perf_counter() - started, 2)}
    write(out, results)
    print(f"{name}: {time.perf_counter() - started:.1f} s{' (error: ' + body['error'] + ')' if 'error' in body else ''}",
          flush=True)


def write(out: Path, results: dict) -> None:
    from rdml.io import atomic_write_json

    atomic_write_json(out, results)


def parse_rows(values: list[str]) -> dict[str, int]:
    given = {}
    for value in values:
        name, _, rows = value.partition("=")
        if not rows.isdigit():
            raise SystemExit(f"gpu_check: --train-rows {value!r}: give NAME=N, N the data set's training rows")
        given[name] = int(rows)
    return given


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=480.0, help="the whole run's seconds, shared by the sections")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (what a CPU runs, in under a minute)")
    parser.add_argument("--out", default=str(RESULTS), help="folder of gpu_check_<device>.json (default: benchmarks/results)")
    parser.add_argument("--train-rows", nargs="*", default=[], metavar="NAME=N",
                        help="training rows of a downloaded data set whose size rdml.data.sizes does not declare")
    parser.add_argument("--hours-from", metavar="FILE", help="only recompute the GPU-hours of an earlier run's JSON")
    parser.add_argument("--child-network", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-pair", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_pair:
        print(json.dumps(measure_pair(args.child_pair[0], args.child_pair[1:], args.windows, args.batches)))
        return 0
    if args.child_network:
        print(json.dumps(measure_network(args.child_network, *args.steps)))
        return 0
    given = parse_rows(args.train_rows)
    from rdml.study.params import load_params

    params = load_params(ROOT / "params.yaml")
    if args.hours_from:
        results = json.loads(Path(args.hours_from).read_text())
        _, studies = planned_networks(params)
        results["gpu_hours"] = hours_section(studies, results["networks"]["networks"], given,
                                             results["what_ran"]["device"])
        write(Path(args.hours_from), results)
        print(f"GPU-hours recomputed in {args.hours_from}")
        return 0
    import torch

    cuda = torch.cuda.is_available()
    quick = args.quick or not cuda
    machine = what_ran()
    out = Path(args.out) / f"gpu_check_{safe_name(machine['device'])}.json"
    budget = Budget(args.budget_s)
    results = {"what_ran": machine, "mode": "quick" if quick else "full", "budget_s": args.budget_s}
    print(f"gpu_check on {machine['device']} ({results['mode']}), budget {args.budget_s:.0f} s → {out}", flush=True)
    run_section(results, "cuda_tests", lambda: section_cuda_tests(budget.share("cuda_tests"), quick), out)
    run_section(results, "pair", lambda: section_pair(budget.share("pair"), quick, cuda), out)
    run_section(results, "packing", lambda: section_packing(budget.share("packing"), quick, cuda), out)
    studies = {}

    def networks():
        body, planned = section_networks(budget.share("networks"), quick, params)
        studies.update(planned)
        return body

    run_section(results, "networks", networks, out)
    run_section(results, "gpu_hours", lambda: hours_section(studies, results["networks"].get("networks", {}), given,
                                                           machine["device"]), out)
    run_section(results, "photos", lambda: section_photos(budget.share("photos"), quick, cuda), out)
    run_section(results, "imagenet_stream", lambda: section_imagenet_stream(budget.share("imagenet_stream"), quick, cuda),
                out)
    results["total_seconds"] = round(args.budget_s - budget.left(), 2)
    write(out, results)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
