"""Jobs per GPU (`jobs_per_gpu`): training throughput of 1, 2 and 4 concurrent DML jobs on one GPU.

Each job is its own process, as under Snakemake: a ResNet-32 pair trained with the DML loss, SGD,
batch 128, on CIFAR-sized random data already on the GPU (so the data path does not count), pinned to
GPU 0 with its memory capped at 1/N as rdml's packed jobs are. A job runs as rdml's trainer would: the
run's torch switches (Execution.apply: TF32 off for fp32, deterministic kernels) and its precision and
memory layout (Execution.runner), from this device's defaults or the `--keys` given. A job warms up, then
trains for a fixed time; the figure is the sum of the jobs' images per second, and its ratio to one job
alone; each job also reports its peak allocated GPU memory (torch.cuda.max_memory_allocated).

    .venv/bin/python benchmarks/gpu_packing.py [--seconds 30] [--jobs 1 2 4] [--keys precision=fp32 ...] [--out FILE]

Needs a CUDA device; without one it says so and writes nothing (CPU cores are no model of a GPU's idle
capacity).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(ROOT / "src"))
BATCH = 128
WARM_UP = 20  # steps before the timed ones


def job(share: int, seconds: float, keys: list[str], warm: int = WARM_UP, batch: int = BATCH) -> dict:
    """One packed job, in this process: images per second over at least one timed step after `warm` steps,
    its peak allocated GPU memory (None on a CPU), and the execution and torch switches it ran under."""
    import torch

    from rdml.config import load_config, resolve
    from rdml.core.mutual import mutual_terms
    from rdml.data.catalog import DataSpec
    from rdml.models import build_model
    from rdml.train.prepare import prepare

    layout = [] if any(k.startswith("memory_format=") for k in keys) else ["memory_format=channels_last"]  # the papers' studies'
    cfg = resolve(load_config(None, ["method=dml", "arch=resnet32", "dataset=synthetic", "out=unused", *layout, *keys]))
    execution = prepare(cfg).execution  # this device's choices, and a clear error for what it cannot run
    numerics = execution.apply()  # torch's switches as the trainer sets them, before any model is built
    device = execution.device
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_per_process_memory_fraction(1 / share, device)
        torch.cuda.reset_peak_memory_stats(device)
    models = [build_model("resnet32", DataSpec("images", 100, (3, 32, 32))).to(device) for _ in range(2)]
    runners = [execution.runner(m) for m in models]  # the run's precision and memory layout
    optimisers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True) for m in models]
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (batch,), device=device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step():
        terms = mutual_terms([run(x) for run in runners], y, alpha=1.0)
        for o in optimisers:
            o.zero_grad(set_to_none=True)
        sum(sum(t.values()) for t in terms).backward()
        for o in optimisers:
            o.step()

    for _ in range(warm):
        step()
    sync()
    start, steps = time.perf_counter(), 0
    while steps == 0 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    sync()
    rate = steps * batch / (time.perf_counter() - start)
    return {"images_per_second": rate, "steps": steps, "execution": execution.describe(), "numerics": numerics,
            "max_memory_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None}


def packed_row(jobs: list[dict]) -> dict:
    """One row of the results (what benchmarks/gpu_check.py's packing section reads) from its jobs' reports."""
    rates = [j["images_per_second"] for j in jobs]
    return {"jobs_per_gpu": len(jobs), "images_per_s_each": rates, "images_per_s_total": sum(rates),
            "max_memory_allocated_mb_each": [j["max_memory_allocated_mb"] for j in jobs],
            "execution": jobs[0]["execution"], "numerics": jobs[0]["numerics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--keys", nargs="*", default=[], metavar="KEY=VALUE",
                        help="the jobs' rdml keys (precision=fp32, memory_format=contiguous, deterministic=false, ...); "
                             "default: this device's")
    parser.add_argument("--out", default=str(RESULTS / "gpu_packing_cuda.json"))
    parser.add_argument("--job", type=int, help=argparse.SUPPRESS)  # one job of --job N packed jobs, in this process
    args = parser.parse_args()
    if args.job:
        print(json.dumps(job(args.job, args.seconds, args.keys)))
        return
    import torch

    if not torch.cuda.is_available():
        print("gpu_packing: no CUDA device here; nothing measured")
        return
    rows = []
    for n in args.jobs:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
        procs = [subprocess.Popen([sys.executable, __file__, "--job", str(n), "--seconds", str(args.seconds),
                                   "--keys", *args.keys], stdout=subprocess.PIPE, text=True, env=env)
                 for _ in range(n)]
        outs = [p.communicate()[0] for p in procs]
        failed = [p.returncode for p in procs if p.returncode != 0]
        if failed:
            raise SystemExit(f"gpu_packing: {len(failed)} of {n} jobs failed (exit status {failed[0]})")
        rows.append(packed_row([json.loads(out.strip().splitlines()[-1]) for out in outs]))
        print(f"{n} job(s) on one GPU: {rows[-1]['images_per_s_total']:,.0f} images/s in total, "
              f"peak allocated {max(m or 0 for m in rows[-1]['max_memory_allocated_mb_each']):,.0f} MiB per job")
    for row in rows:
        row["ratio_to_one_job"] = row["images_per_s_total"] / rows[0]["images_per_s_total"]
    result = {"benchmark": "gpu_packing", "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "python": platform.python_version(), "seconds": args.seconds, "keys": args.keys,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": rows}
    from rdml.io import atomic_write_json

    atomic_write_json(Path(args.out), result)


if __name__ == "__main__":
    main()
