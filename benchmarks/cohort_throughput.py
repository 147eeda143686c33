"""DML with a pair of ResNet-32 students: rdml's training path against the released codes' loop.

All paths train on the same synthetic CIFAR-format data (50,000 uint8 32×32 RGB images in memory),
batch 128, SGD, the same DML loss:
- baseline: a torchvision-style dataset behind a DataLoader applying RandomCrop(32, padding=4),
  RandomHorizontalFlip, ToTensor and Normalize to one PIL image at a time, and a Python loop over the
  students (forward all, then for each: loss, zero_grad, backward, step), as the released codes do;
  measured with 0 and with 2 loader workers, and the faster of the two is the baseline;
- rdml: the trainer's own path (the data set's loader over tensor data, batched augmentation,
  `MutualLearning.train_step`), with this device's defaults and then with each fast path of
  rdml.train.execution asked for; and once with the rows indexed by hand instead of through the loader
  (the cost of the loader's indirection); and as a study's jobs run by default: one single-threaded job
  per core (params.yaml `threads: 1`), all at once, the machine's images per second their sum.
Each path runs in its own process (so peak memory is its own), one after the other in this run.
Images per second is the median over timed windows after a warm-up. `auto` keys are resolved as the
trainer resolves them (rdml.train.autotune, timed on this path's own step; the cache of this run is a
temporary folder, so the choice is measured here and not read from an earlier one).

The machine's limit: a float32 GEMM (2048³, at the children's thread count, median of 9) sets the FLOP/s
a training step could reach at best, and the pair's training FLOPs per image (forward and backward of
both students, counted by torch.utils.flop_counter: convolutions and matmuls) turn it into images per
second; each path's `share_of_gemm_limit` is its images per second over that limit.

    .venv/bin/python benchmarks/cohort_throughput.py [--windows 5] [--batches 4] [--only WORD ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_IMAGES, BATCH, SEED = 50_000, 128, 0
RESULTS = Path(__file__).resolve().parent / "results"


def synthetic_cifar():
    import numpy as np

    rng = np.random.default_rng(SEED)
    return rng.integers(0, 256, (N_IMAGES, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, N_IMAGES)


def timed(step, windows: int, batches: int) -> dict:
    started = time.perf_counter()
    for _ in range(2):  # warm-up (and compilation, where asked for)
        step()
    warm_up = time.perf_counter() - started
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(batches):
            step()
        rates.append(batches * BATCH / (time.perf_counter() - start))
    return {"rates": rates, "warm_up_seconds": warm_up}


def baseline(windows: int, batches: int, workers: int) -> dict:
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torchvision import transforms

    from rdml.data.catalog import DataSpec
    from rdml.models import build_model

    images, labels = synthetic_cifar()

    class CifarLike(torch.utils.data.Dataset):
        def __init__(self):
            self.transform = transforms.Compose([
                transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
            ])

        def __len__(self):
            return N_IMAGES

        def __getitem__(self, i):
            return self.transform(Image.fromarray(images[i])), int(labels[i])

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(SEED)
    loader = iter(torch.utils.data.DataLoader(CifarLike(), batch_size=BATCH, shuffle=True, num_workers=workers,
                                              pin_memory=device.type == "cuda", persistent_workers=workers > 0))
    models = [build_model("resnet32", DataSpec("images", 10, (3, 32, 32))).to(device) for _ in range(2)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4) for m in models]

    def step():
        x, y = (t.to(device, non_blocking=True) for t in next(loader))
        outputs = [m(x) for m in models]
        for k, (model, optimizer) in enumerate(zip(models, optimizers)):
            peer = outputs[1 - k].detach()
            loss = F.cross_entropy(outputs[k], y) + F.kl_div(
                F.log_softmax(outputs[k], -1), F.softmax(peer, -1), reduction="batchmean")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return timed(step, windows, batches)


def rdml_path(windows: int, batches: int, keys: list[str], by_hand: bool = False) -> dict:
    import torch

    from rdml.config import load_config, resolve
    from rdml.data.augment import augment_batch
    from rdml.data.base import Dataset, epoch_batches
    from rdml.data.catalog import DataSpec
    from rdml.methods import METHODS
    from rdml.train.cohort import build_cohort
    from rdml.train.loop import timed_execution
    from rdml.train.prepare import prepare

    images, labels = synthetic_cifar()
    cfg = resolve(load_config(None, ["method=dml", "arch=resnet32", f"batch_size={BATCH}", "lr=0.1", "augment=crop_flip",
                                     "schedule=constant", "dataset=synthetic", "out=unused", *keys]))
    prep = prepare(cfg)  # this device's choices, and a clear error for what it cannot run
    numerics = prep.execution.apply()  # torch's switches as the trainer sets them (fp32: TF32 off on CUDA)
    device = prep.execution.device
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    data = Dataset("synthetic_cifar", x, torch.from_numpy(labels), x[:0], torch.from_numpy(labels[:0]), DataSpec("images", 10, (3, 32, 32)),
                   torch.tensor((0.4914, 0.4822, 0.4465)), torch.tensor((0.2470, 0.2435, 0.2616))).to(device)
    prep, choice = timed_execution(dataclasses.replace(prep, data=data, cfg=dataclasses.replace(cfg, epochs=1)), None)
    execution = prep.execution  # `auto` as the trainer resolves it, on this path's own step
    cohort = build_cohort(cfg, data, execution, steps_per_epoch=N_IMAGES // BATCH)
    method = METHODS[cfg.method](cfg)
    draws = torch.Generator().manual_seed(SEED)
    augment = lambda b, sizes=None, size=None: augment_batch(b, cfg.augment, draws)  # noqa: E731
    rows_of_epoch = iter(epoch_batches(N_IMAGES, BATCH, seed=SEED, epoch=1))
    batches_of_epoch = data.train_batches(BATCH, seed=SEED, epoch=1)

    def step():
        if by_hand:
            rows = next(rows_of_epoch)
            return method.train_step(data.inputs(data.x_train[rows], augment), data.y_train[rows], cohort)
        batch = next(batches_of_epoch)
        method.train_step(batch.inputs(augment), batch.labels, cohort)

    return {**timed(step, windows, batches), "execution": execution.describe(), "numerics": numerics,
            **({"execution_choice": choice} if choice else {})}


def gemm_limit() -> dict:
    """The float32 GEMM rate of this machine (2048³, median of 9 after a warm-up) and the ResNet-32 pair's
    training FLOPs per image; their ratio is the most images per second float32 kernels could give."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from rdml.data.catalog import DataSpec
    from rdml.models import build_model

    torch.manual_seed(SEED)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        a @ b
    rates = []
    for _ in range(9):
        started = time.perf_counter()
        a @ b
        rates.append(2 * 2048**3 / (time.perf_counter() - started))
    model = build_model("resnet32", DataSpec("images", 10, (3, 32, 32)))
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(BATCH, 3, 32, 32)).sum().backward()
    per_image = 2 * counter.get_total_flops() / BATCH  # two students
    gflops = statistics.median(rates) / 1e9
    return {"gemm_gflops": gflops, "gemm_gflops_best": max(rates) / 1e9, "pair_training_gflop_per_image": per_image / 1e9,
            "limit_images_per_second": gflops * 1e9 / per_image, "threads": torch.get_num_threads()}


def machine() -> dict:
    import torch

    from rdml.train.record import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "device": "cuda" if torch.cuda.is_available() else "cpu",
            "python": platform.python_version()}


JOBS_PATH = "rdml, the pipeline's defaults: a 1-thread job per core"
# name: (path, its arguments). The first two are the baseline; the faster of them is the reference.
PATHS = {
    "baseline, 0 loader workers": ("baseline", ["0"]),
    "baseline, 2 loader workers": ("baseline", ["2"]),
    "rdml, this device's defaults": ("rdml", []),
    "rdml, defaults, rows indexed by hand (no loader)": ("rdml-by-hand", []),
    "rdml, channels_last": ("rdml", ["memory_format=channels_last"]),
    "rdml, fused students": ("rdml", ["fuse_students=true"]),
    "rdml, bf16 autocast + channels_last": ("rdml", ["precision=bf16", "memory_format=channels_last"]),
    "rdml, compile + channels_last": ("rdml", ["compile=true", "memory_format=channels_last"]),
}


def child(path: str, args: list[str], windows: int, batches: int) -> None:
    import torch

    if path == "gemm":
        return print(json.dumps({**gemm_limit(), "machine": machine()}))
    if path == "rdml-job":  # one of the pipeline's jobs: params.yaml's `threads: 1`, one job per core
        torch.set_num_threads(1)
        path = "rdml"
    result = baseline(windows, batches, int(args[0])) if path == "baseline" else \
        rdml_path(windows, batches, args, by_hand=path == "rdml-by-hand")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps({**result, "machine": machine()}))


def measure(name: str, windows: int, batches: int) -> dict:
    path, args = PATHS[name] if name in PATHS else (name, [])
    with tempfile.TemporaryDirectory() as cache:  # `auto` measured on this path, not read from an earlier run
        done = subprocess.run([sys.executable, __file__, "--child", path, *args, "--windows", str(windows),
                               "--batches", str(batches)], capture_output=True, text=True,
                              env={**os.environ, "RDML_CACHE_DIR": cache})
    if done.returncode != 0:  # e.g. bf16 on a device without it: reported, not fatal
        return {"error": (done.stderr.strip().splitlines() or ["exit status " + str(done.returncode)])[-1]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "images_per_second": statistics.median(result["rates"])} if "rates" in result else result


def measure_jobs(windows: int, batches: int) -> dict:
    """The pipeline's defaults on the whole machine: one single-threaded job per core (params.yaml `threads: 1`,
    Snakemake `--cores N`), all at once, sharing one cache of `auto` choices as a study's jobs do; images per
    second of the machine is the sum of the jobs' medians."""
    jobs = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as cache:
        children = [subprocess.Popen([sys.executable, __file__, "--child", "rdml-job", "--windows", str(windows),
                                      "--batches", str(batches)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "RDML_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"})
                    for _ in range(jobs)]
        done = [(child.communicate(), child.returncode) for child in children]
    if any(code for _, code in done):
        return {"error": next((err.strip().splitlines() or ["failed"])[-1] for (_, err), code in done if code)}
    results = [json.loads(out.strip().splitlines()[-1]) for (out, _), _ in done]
    return {"jobs": jobs, "threads_per_job": 1, "per_job_images_per_second": [statistics.median(r["rates"]) for r in results],
            "images_per_second": sum(statistics.median(r["rates"]) for r in results),
            "warm_up_seconds": max(r["warm_up_seconds"] for r in results),
            "peak_rss_mb": sum(r["peak_rss_mb"] for r in results), "execution": results[0]["execution"],
            **({"execution_choice": results[0]["execution_choice"]} if "execution_choice" in results[0] else {}),
            "machine": results[0]["machine"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--batches", type=int, default=4, help="batches per timed window")
    parser.add_argument("--out", help="where to write the results as JSON (default: benchmarks/results/cohort_throughput_<device>.json)")
    parser.add_argument("--only", nargs="+", help="measure only the paths whose name holds one of these words "
                        "(the baselines always run: ratios are to them)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1:], args.windows, args.batches)
    names = [name for name in PATHS if name.startswith("baseline") or not args.only or any(w in name for w in args.only)]
    results = {name: measure(name, args.windows, args.batches) for name in names}
    if not args.only or any(w in JOBS_PATH for w in args.only):
        results[JOBS_PATH] = measure_jobs(args.windows, args.batches)
    limit = measure("gemm", args.windows, args.batches)
    reference = max((r for name, r in results.items() if name.startswith("baseline")),
                    key=lambda r: r["images_per_second"])["images_per_second"]
    machine_info = next(r["machine"] for r in results.values() if "machine" in r)
    print(f"machine: {machine_info}")
    print(f"float32 GEMM {limit['gemm_gflops']:.0f} GFLOP/s, pair {limit['pair_training_gflop_per_image']:.3f} "
          f"GFLOP/image: at most {limit['limit_images_per_second']:.0f} images/s")
    print(f"{'path':40s} {'images/s':>9s} {'ratio':>6s} {'of limit':>8s} {'warm-up s':>9s} {'peak RSS MB':>11s}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:40s} not run here: {r['error']}")
            continue
        r["ratio_to_baseline"] = r["images_per_second"] / reference
        r["share_of_gemm_limit"] = r["images_per_second"] / limit["limit_images_per_second"]
        print(f"{name:40s} {r['images_per_second']:9.1f} {r['ratio_to_baseline']:6.2f} {r['share_of_gemm_limit']:8.2f} "
              f"{r['warm_up_seconds']:9.1f} {r['peak_rss_mb']:11.0f}")
    body = {"paths": results, "baseline_images_per_second": reference, "gemm_limit": limit, "machine": machine_info,
            "windows": args.windows, "batches_per_window": args.batches, "batch_size": BATCH,
            "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    cpu = re.sub(r"[^a-z0-9]+", "-", machine_info["cpu"].lower()).strip("-")
    out = Path(args.out or RESULTS / f"cohort_throughput_{machine_info['device']}_{cpu}.json")
    out.write_text(json.dumps(body, indent=1) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
