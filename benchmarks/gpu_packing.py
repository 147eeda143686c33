"""Jobs per GPU (`jobs_per_gpu`): training throughput of 1, 2 and 4 concurrent DML jobs on one GPU.

Each job is its own process, as under Snakemake: a ResNet-32 pair trained with the DML loss, SGD,
batch 128, on CIFAR-sized random data already on the GPU (so the data path does not count), pinned to
GPU 0 with its memory capped at 1/N as rdml's packed jobs are. A job warms up, then trains for a fixed
time; the figure is the sum of the jobs' images per second, and its ratio to one job alone.

    .venv/bin/python benchmarks/gpu_packing.py [--seconds 30] [--jobs 1 2 4] [--out FILE]

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

RESULTS = Path(__file__).resolve().parent / "results"
JOB = """
import sys, time, torch
from rdml.core.mutual import mutual_terms
from rdml.data.catalog import DataSpec
from rdml.models import build_model
share, seconds = int(sys.argv[1]), float(sys.argv[2])
torch.cuda.set_per_process_memory_fraction(1 / share, 0)
device = torch.device("cuda:0")
models = [build_model("resnet32", DataSpec("images", 100, (3, 32, 32))).to(device) for _ in range(2)]
optimisers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True) for m in models]
x = torch.randn(128, 3, 32, 32, device=device)
y = torch.randint(0, 100, (128,), device=device)

def step():
    terms = mutual_terms([m(x) for m in models], y, alpha=1.0)
    for o in optimisers:
        o.zero_grad(set_to_none=True)
    sum(sum(t.values()) for t in terms).backward()
    for o in optimisers:
        o.step()

for _ in range(20):
    step()
torch.cuda.synchronize()
start, steps = time.perf_counter(), 0
while time.perf_counter() - start < seconds:
    step()
    steps += 1
torch.cuda.synchronize()
print(steps * 128 / (time.perf_counter() - start))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", default=str(RESULTS / "gpu_packing_cuda.json"))
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_packing: no CUDA device here; nothing measured")
        return
    rows = []
    for n in args.jobs:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
        procs = [subprocess.Popen([sys.executable, "-c", JOB, str(n), str(args.seconds)], stdout=subprocess.PIPE,
                                  text=True, env=env) for _ in range(n)]
        rates = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        rows.append({"jobs_per_gpu": n, "images_per_s_each": rates, "images_per_s_total": sum(rates)})
        print(f"{n} job(s) on one GPU: {sum(rates):,.0f} images/s in total")
    for row in rows:
        row["ratio_to_one_job"] = row["images_per_s_total"] / rows[0]["images_per_s_total"]
    result = {"benchmark": "gpu_packing", "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "python": platform.python_version(), "seconds": args.seconds, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
