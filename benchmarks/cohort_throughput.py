"""DML with a pair of ResNet-32 students: rdml's training path against the released codes' loop.

Both train on the same synthetic CIFAR-format data (50,000 uint8 32×32 RGB images in memory), batch
128, SGD, the same DML loss:
- baseline: a torchvision-style dataset behind a DataLoader applying RandomCrop(32, padding=4),
  RandomHorizontalFlip, ToTensor and Normalize to one PIL image at a time, and a Python loop over the
  students (forward all, then for each: loss, zero_grad, backward, step), as the released codes do;
- rdml: the trainer's own path (tensor data, batched augmentation, `MutualLearning.train_step`).
Each path runs in its own process (so peak memory is its own), one after the other in this run.
Images per second is the median over timed windows after a warm-up.

    .venv/bin/python benchmarks/cohort_throughput.py [--windows 5] [--batches 4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

N_IMAGES, BATCH, SEED = 50_000, 128, 0


def synthetic_cifar():
    import numpy as np

    rng = np.random.default_rng(SEED)
    return rng.integers(0, 256, (N_IMAGES, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, N_IMAGES)


def timed(step, windows: int, batches: int) -> list[float]:
    for _ in range(2):  # warm-up
        step()
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(batches):
            step()
        rates.append(batches * BATCH / (time.perf_counter() - start))
    return rates


def baseline(windows: int, batches: int) -> list[float]:
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torchvision import transforms

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

    torch.manual_seed(SEED)
    loader = iter(torch.utils.data.DataLoader(CifarLike(), batch_size=BATCH, shuffle=True, num_workers=0))
    models = [build_model("resnet32", (3, 32, 32), 10) for _ in range(2)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4) for m in models]

    def step():
        x, y = next(loader)
        outputs = [m(x) for m in models]
        for k, (model, optimizer) in enumerate(zip(models, optimizers)):
            peer = outputs[1 - k].detach()
            loss = F.cross_entropy(outputs[k], y) + F.kl_div(
                F.log_softmax(outputs[k], -1), F.softmax(peer, -1), reduction="batchmean")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return timed(step, windows, batches)


def rdml_path(windows: int, batches: int) -> list[float]:
    import torch

    from rdml.augment import augment_batch
    from rdml.config import load_config, resolve
    from rdml.data import Dataset, epoch_batches
    from rdml.methods import build_method
    from rdml.trainer import build_cohort, pick_device

    images, labels = synthetic_cifar()
    cfg = resolve(load_config(None, ["method=dml", "arch=resnet32", f"batch_size={BATCH}", "lr=0.1", "augment=crop_flip",
                                     "schedule=constant", "dataset=synthetic", "out=unused"]))
    device = pick_device(cfg.device)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    data = Dataset("synthetic_cifar", x, torch.from_numpy(labels), x[:0], torch.from_numpy(labels[:0]), 10,
                   torch.tensor((0.4914, 0.4822, 0.4465)), torch.tensor((0.2470, 0.2435, 0.2616))).to(device)
    cohort = build_cohort(cfg, data, device, steps_per_epoch=N_IMAGES // BATCH)
    method = build_method(cfg)
    draws = torch.Generator().manual_seed(SEED)
    batches_of_epoch = iter(epoch_batches(N_IMAGES, BATCH, seed=SEED, epoch=1))

    def step():
        rows = next(batches_of_epoch)
        method.train_step(data.inputs(data.x_train[rows], lambda b: augment_batch(b, cfg.augment, draws)),
                          data.y_train[rows], cohort)

    return timed(step, windows, batches)


def machine() -> dict:
    import torch

    from rdml.record import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "device": "cuda" if torch.cuda.is_available() else "cpu",
            "python": platform.python_version()}


def child(path: str, windows: int, batches: int) -> None:
    rates = {"baseline": baseline, "rdml": rdml_path}[path](windows, batches)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rates": rates, "peak_rss_mb": peak_mb, "machine": machine()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--batches", type=int, default=4, help="batches per timed window")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--child", choices=["baseline", "rdml"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.windows, args.batches)
    results = {}
    for path in ("baseline", "rdml"):
        out = subprocess.run([sys.executable, __file__, "--child", path, "--windows", str(args.windows),
                              "--batches", str(args.batches)], capture_output=True, text=True, check=True).stdout
        results[path] = json.loads(out.strip().splitlines()[-1])
        results[path]["images_per_second"] = statistics.median(results[path]["rates"])
    ratio = results["rdml"]["images_per_second"] / results["baseline"]["images_per_second"]
    print(f"machine: {results['rdml']['machine']}")
    print(f"{'path':10s} {'images/s':>10s} {'peak RSS MB':>12s}")
    for path in ("baseline", "rdml"):
        r = results[path]
        print(f"{path:10s} {r['images_per_second']:10.1f} {r['peak_rss_mb']:12.0f}")
    print(f"ratio rdml / baseline: {ratio:.2f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({**results, "ratio": ratio, "when": time.strftime("%Y-%m-%d %H:%M:%S")}, handle, indent=1)


if __name__ == "__main__":
    main()
