"""`memory_format: auto` and `compile: auto`: chosen by timing the run's own training step, once per device model.

Which layout is faster, and whether compiling pays for itself, differs by device and network: channels_last
ran the ResNet-32 pair 1.30× faster on an AMD EPYC and 1.28× on an Intel Xeon, and it is the fast path of
CUDA's tensor cores; torch.compile lost on both CPUs (benchmarks/README.md). So `auto` measures instead of
guessing: a few steps of the run's own method on its own first batch (the networks built as the run builds
them, forward, backward and optimiser steps), each way, alternating, the median kept.

The measurement is cached on disk, one file per user and machine (`RDML_CACHE_DIR`, else
$XDG_CACHE_HOME/rdml, else ~/.cache/rdml), keyed by everything it depends on: device model, torch, threads,
precision, determinism, method, architectures, classes, input shape and batch size. Every command that
runs a params.yaml (rdml train, Snakemake, DVC) thus makes the same choice; the first to meet a key measures
it while holding the file's lock, so concurrent jobs neither measure under each other's load twice nor
overwrite each other. A cache entry that does not read as a measurement is measured again.

Neither choice changes the number format (float32 stays float32; the `precision` key decides that): a
layout or a compiled graph changes the order of float32 sums, so bits differ in the last digits as they do
between two CPUs. The run records what ran and why (`environment.execution_choice`), a run that resumes or
is checked against its finished record keeps the choice it started with, and paper studies that must not
move by a bit set both keys explicitly. Timing runs under a forked RNG: the run's initialisation and draws
are those of a run given the chosen values explicitly.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from rdml.io import utc_now

__all__ = ["resolve_auto", "cache_file", "LAYOUT_MARGIN", "CACHE_ENV"]

CACHE_ENV = "RDML_CACHE_DIR"
CACHE_FORMAT = "rdml.execution_choices/1"
LAYOUT_MARGIN = 0.05  # channels_last is chosen when at least 5 % faster: a tie keeps the reference layout,
# and a choice that timing noise could flip is not made
CHOICES = {"memory_format": ("contiguous", "channels_last"), "compile": (False, True)}
WARM_UP, ROUNDS, STEPS = 2, 3, 2  # steps before timing; alternating rounds of at least STEPS timed steps each
ROUND_SECONDS, MAX_STEPS = 0.1, 50  # a round lasts about ROUND_SECONDS, up to MAX_STEPS steps


def cache_file() -> Path:
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rdml"
    return Path(root) / "execution_choices.json"


def resolve_auto(execution, key: dict, planned_steps: int, previous: dict | None,
                 step_with: Callable[[object], Callable[[], None]], networks: Callable[[], list[nn.Module]]):
    """`execution` with `memory_format`/`compile` "auto" resolved, and what decided each (for the record).

    `key`: what the timing depends on beyond the execution (method, architectures, classes, input, batch).
    `previous`: the execution the run already ran under (its checkpoint's or finished record's), kept as is.
    `step_with(execution)`: a fresh copy of the run's training step under `execution` (its own networks,
    built under a forked RNG), returning a callable that runs one step. `networks()`: the run's networks,
    to see whether any has a convolution. `planned_steps`: the run's training steps, which a compilation's
    one-off cost is weighed against."""
    auto = [name for name in ("memory_format", "compile") if getattr(execution, name) == "auto"]
    if not auto:
        return execution, None
    kept = {name: (previous or {}).get(name) for name in auto}
    if all(kept[name] in CHOICES[name] for name in auto):
        return dataclasses.replace(execution, **kept), {name: {"chose": kept[name], "by": "the run's earlier execution"}
                                                       for name in auto}
    choice = {}
    if execution.memory_format == "auto" and not any(isinstance(m, nn.Conv2d) for net in networks() for m in net.modules()):
        execution = dataclasses.replace(execution, memory_format="contiguous")
        choice["memory_format"] = {"chose": "contiguous", "by": "no convolution in the run's networks"}
    if execution.compile == "auto" and execution.fuse_students:
        execution = dataclasses.replace(execution, compile=False)
        choice["compile"] = {"chose": False, "by": "fused students are not compiled"}
    if "auto" not in (execution.memory_format, execution.compile):
        return execution, choice
    full_key = {**key, **_device_key(execution)}
    measured, how = _cached_or_measured(full_key, lambda: _measure(execution, step_with))
    if execution.memory_format == "auto":
        times = measured["seconds_per_step"]
        faster = times["channels_last"] <= times["contiguous"] * (1 - LAYOUT_MARGIN)
        execution = dataclasses.replace(execution, memory_format="channels_last" if faster else "contiguous")
        choice["memory_format"] = {"chose": execution.memory_format, "by": how, "seconds_per_step": times,
                                   "rule": f"channels_last when at least {LAYOUT_MARGIN:.0%} faster"}
    if execution.compile == "auto":
        eager = measured["seconds_per_step"][execution.memory_format]
        compiled = measured["compiled"][execution.memory_format]
        saved = planned_steps * (eager - compiled["seconds_per_step"])
        execution = dataclasses.replace(execution, compile=saved > compiled["compile_seconds"])
        choice["compile"] = {"chose": execution.compile, "by": how, "eager_seconds_per_step": eager, **compiled,
                             "planned_steps": planned_steps, "seconds_saved": saved,
                             "rule": "compile when the planned steps save more than compiling costs"}
    for entry in choice.values():
        entry.setdefault("cache", str(cache_file()))
    return execution, choice


def _device_key(execution) -> dict:
    device = execution.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"device_name": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "precision": execution.precision, "deterministic": execution.deterministic,
            "fuse_students": execution.fuse_students, "compile": execution.compile,
            "memory_format": execution.memory_format}


def _cpu_name() -> str:
    from rdml.train.record import cpu_name  # the name the run record gives the CPU
    return cpu_name()


def _measure(execution, step_with) -> dict:
    """Seconds per step of each layout (median of alternating rounds) and, where compile is auto, of the compiled
    step in each layout, with the one-off compile seconds (first compiled steps less the eager ones)."""
    layouts = ["contiguous", "channels_last"] if execution.memory_format == "auto" else [execution.memory_format]
    eager = {fmt: step_with(dataclasses.replace(execution, memory_format=fmt, compile=False)) for fmt in layouts}
    seconds = _median_rounds(eager, execution.device)
    out = {"seconds_per_step": seconds, "measured_at": utc_now(),
           "timing": {"warm_up_steps": WARM_UP, "rounds": ROUNDS, "round_seconds": ROUND_SECONDS}}
    if execution.compile == "auto":
        out["compiled"] = {}
        for fmt in layouts:
            step = step_with(dataclasses.replace(execution, memory_format=fmt, compile=True))
            first = _timed(step, WARM_UP, execution.device)
            per_step = _median_rounds({fmt: step}, execution.device, estimate=seconds[fmt])[fmt]
            out["compiled"][fmt] = {"seconds_per_step": per_step,
                                    "compile_seconds": max(0.0, first - WARM_UP * seconds[fmt])}
    return out


def _median_rounds(steps: dict[str, Callable[[], None]], device: torch.device, estimate: float | None = None) -> dict[str, float]:
    """Seconds per step of each candidate: the median of ROUNDS alternating rounds, each of at least STEPS steps
    and long enough (ROUND_SECONDS, from `estimate` or a warm-up) that a millisecond step is not timed on noise."""
    if estimate is None:  # warm up, and estimate a step from it
        estimate = min(_timed(step, WARM_UP, device) / WARM_UP for step in steps.values())
    n = max(STEPS, min(MAX_STEPS, math.ceil(ROUND_SECONDS / max(estimate, 1e-9))))
    rounds = {name: [] for name in steps}
    for _ in range(ROUNDS):
        for name, step in steps.items():
            rounds[name].append(_timed(step, n, device) / n)
    return {name: statistics.median(times) for name, times in rounds.items()}


def _timed(step: Callable[[], None], n: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return time.perf_counter() - started


def _cached_or_measured(key: dict, measure: Callable[[], dict]) -> tuple[dict, str]:
    """The cached measurement of `key`, or a new one, written to the cache; and which it was."""
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    name = json.dumps(key, sort_keys=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = _read(path)
        if _is_measurement(entries.get(name), key):
            return entries[name], f"timing cached in {path}"
        measured = measure()
        entries[name] = measured
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=1, sort_keys=True))
        os.replace(tmp, path)
        return measured, "timing on first use"


def _read(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: measured again and rewritten whole
    entries = content.get("entries") if isinstance(content, dict) and content.get("format") == CACHE_FORMAT else None
    return entries if isinstance(entries, dict) else {}


def _is_measurement(entry, key: dict) -> bool:
    """Whether a cache entry holds what the choice reads: positive finite seconds for each candidate."""
    def seconds(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < float("inf")
    if not isinstance(entry, dict) or not isinstance(entry.get("seconds_per_step"), dict):
        return False
    layouts = ["contiguous", "channels_last"] if key["memory_format"] == "auto" else [key["memory_format"]]
    if not all(seconds(entry["seconds_per_step"].get(fmt)) for fmt in layouts):
        return False
    if key["compile"] != "auto":
        return True
    compiled = entry.get("compiled")
    return isinstance(compiled, dict) and all(
        isinstance(compiled.get(fmt), dict) and seconds(compiled[fmt].get("seconds_per_step"))
        and isinstance(compiled[fmt].get("compile_seconds"), (int, float)) and compiled[fmt]["compile_seconds"] >= 0
        for fmt in layouts)
