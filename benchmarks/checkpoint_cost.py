"""What a checkpoint costs, to choose `checkpoint_steps` (how often a long run checkpoints inside an epoch).

dml_imagenet's DML cohort, timm's mobilenetv1_100 and torchvision's GoogLeNet at 1,000 classes with TF's RMSProp
(two state buffers per weight), is checkpointed by rdml's own `save_checkpoint` (the whole cohort, its optimisers
and schedules, RNG state, the content hashed, written atomically) into a temporary directory on this machine's
disk, several times; and so is the smoke pair (reid_tiny) for scale. The interval follows from what a checkpoint
costs against the steps it protects: at a measured or assumed rate of training steps per second, N steps between
checkpoints cost checkpoint_seconds / (N / steps_per_second) of the run, and a kill loses at most N steps.

    .venv/bin/python benchmarks/checkpoint_cost.py [--repeats 5] [--out benchmarks/checkpoint_cost.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rdml.config import load_config, resolve
from rdml.data.catalog import DATASETS
from rdml.methods import METHODS
from rdml.train.checkpoint import save_checkpoint
from rdml.train.cohort import Cohort, Student
from rdml.models import build_model
from rdml.train.optim import make_optimizer, make_scheduler

# The pair's training rate this interval is judged at: the rate a GPU would sustain on ImageNet, bounded by the
# decoding workers (benchmarks/imagenet_data.md), an assumption, not a measurement.
ASSUMED_STEPS_PER_SECOND = 8.0  # 512 images/s of 64-image steps for the MobileNet + GoogLeNet pair


def cohort_of(archs: list[str], dataset: str) -> tuple[Cohort, object]:
    cfg = resolve(load_config(None, [f"dataset={dataset}", "method=dml", f"arch={','.join(archs)}", "optimizer=rmsprop_tf",
                                     "lr=0.1", "schedule=step", "step_size=20", "gamma=0.16", "augment=inception",
                                     "normalize=inception"]))
    spec = DATASETS[dataset].spec
    students = []
    for arch in archs:
        model = build_model(arch, spec)
        optimizer = make_optimizer(cfg, model.parameters())
        x = torch.randn(2, *spec.input_shape)
        model(x).logsumexp(1).sum().backward()  # one step, so that RMSProp holds its state buffers
        optimizer.step()
        students.append(Student(model, optimizer, make_scheduler(cfg, optimizer, 100)))
    return Cohort(students), METHODS["dml"](cfg)


def measure(archs: list[str], dataset: str, repeats: int) -> dict:
    cohort, method = cohort_of(archs, dataset)
    record = {"started_at": "", "resumed_at": [], "epochs": [], "epoch_seconds": [], "diverged": None}
    seconds, size = [], 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.pt"
        for _ in range(repeats + 1):
            started = time.perf_counter()
            save_checkpoint(path, {"config_sha256": "-"}, torch.device("cpu"), cohort, method, record,
                            progress={"epoch": 1, "step": 2000, "sums": {}, "lr_first": [0.1], "draws": []})
            seconds.append(time.perf_counter() - started)
            size = path.stat().st_size
    params = sum(p.numel() for s in cohort for p in s.model.parameters())
    return {"archs": "+".join(archs), "parameters": params, "megabytes": size / 1e6,
            "seconds": statistics.median(seconds[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/checkpoint_cost.md")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = [measure(["mobilenetv1_100", "tv_googlenet"], "imagenet", args.repeats),
            measure(["reid_tiny", "reid_tiny"], "tiny_imagenet", args.repeats)]
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    lines = ["# What a checkpoint costs (`checkpoint_steps`)", "",
             f"Measured by `benchmarks/checkpoint_cost.py` on {machine} (AMD EPYC, 2 cores; figures differ across",
             "machines and disks). `save_checkpoint` of a DML cohort with TF's RMSProp state, median of "
             f"{args.repeats} writes after one.", "",
             "| cohort | parameters | checkpoint (MB) | seconds per checkpoint |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['archs']} | {r['parameters']:,} | {r['megabytes']:.1f} | {r['seconds']:.2f} |")
    pair = rows[0]
    lines += ["", f"At an assumed {ASSUMED_STEPS_PER_SECOND:g} training steps per second of the pair (an assumption: "
              "512 images/s, see benchmarks/imagenet_data.md), a checkpoint every N steps costs:", "",
              "| N (checkpoint_steps) | minutes between checkpoints | share of the run spent checkpointing |",
              "|---|---|---|"]
    for n in (500, 1000, 2000, 5000, 20019):
        between = n / ASSUMED_STEPS_PER_SECOND
        lines.append(f"| {n:,} | {between / 60:.1f} | {100 * pair['seconds'] / between:.2f} % |")
    chosen = 2000 / ASSUMED_STEPS_PER_SECOND
    lines += ["", f"dml_imagenet takes N = 2,000: a kill loses at most {chosen / 60:.0f} minutes of the pair's training, "
              f"and checkpointing costs {100 * pair['seconds'] / chosen:.1f} % of the run; N = 20,019 is once an epoch "
              f"({20019 / ASSUMED_STEPS_PER_SECOND / 60:.0f} minutes at that rate).", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
