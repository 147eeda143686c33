"""Photo training transforms: the released RDML code's per-photo PIL transforms behind a DataLoader, against
rdml's batched augmentation of the cached photos, in images per second.

RDML Table 2 trains on DTD and Flowers102 photos of varied size. The released code (parklize/rdml
torchversion/dataloader.py) opens each JPEG with PIL and applies, per photo:
- DTD: RandomRotation(30) → RandomResizedCrop(224) → RandomHorizontalFlip → ToTensor;
- Flowers102: Resize(256) → RandomResizedCrop(224) → RandomHorizontalFlip → ToTensor.
rdml decodes each photo once into a uint8 cache: its reference (DTD: the photo; Flowers102: after
Resize(256)) warped to 448 × 448, with the reference's (H, W) (rdml.data.photos.train_rows, the real
one), and per batch runs `Dataset.train_inputs` → `augment_batch` on the training device.

Both paths run here, one after the other, in rounds (so that a busy moment of the machine hits all of
them), on the same generated JPEG photos of realistic sizes (500×375 … 640×480), batch 32:
- baseline: torch DataLoader (shuffle, num_workers 0 and 2) over a Dataset that opens each JPEG with
  PIL and applies the torchvision transforms above; one epoch timed from creating the iterator (worker
  start-up included, as every epoch of a DataLoader without persistent workers pays it) to its last batch;
- rdml: one epoch of `train_inputs` batches (uint8 rows → float → augment_batch) of the cache, on the
  CPU, and on CUDA where there is one (synchronised at the end of the epoch).
Images/s is the median over the rounds, after one warm-up epoch of each path. The cache's one-off
build (train_rows: decode, Resize(256) for Flowers102, warp to 448) is timed too; it is paid once per
data set, not per epoch.

    .venv/bin/python benchmarks/photo_transforms.py [--photos 512] [--rounds 3] [--out benchmarks/results/photo_transforms_<device>.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rdml.data.augment import augment_batch  # noqa: E402
from rdml.data.base import Dataset, epoch_batches  # noqa: E402
from rdml.data.catalog import DATASETS  # noqa: E402
from rdml.data.photos import CACHE_SIDE, train_rows  # noqa: E402

BATCH, SEED = 32, 0
# Landscape and portrait sizes (W, H) as DTD's (300–640 px a side) and Flowers102's (500 px, or so, a side).
PHOTO_SIZES = [(500, 375), (375, 500), (640, 480), (480, 640), (500, 333), (600, 450), (500, 500), (640, 427)]
RELEASED = {
    "dtd": transforms.Compose([transforms.RandomRotation(30), transforms.RandomResizedCrop(224),
                               transforms.RandomHorizontalFlip(), transforms.ToTensor()]),
    "flowers102": transforms.Compose([transforms.Resize(256), transforms.RandomResizedCrop(224),
                                      transforms.RandomHorizontalFlip(), transforms.ToTensor()]),
}
AUGMENT = {"dtd": "rotate_resized_crop_flip", "flowers102": "resized_crop_flip"}


def write_photos(folder: Path, n: int) -> list[Path]:
    """Smooth random scenes with fine noise, saved as JPEG (quality 90): decoding costs what a photo's does."""
    rng = np.random.default_rng(SEED)
    paths = []
    for i in range(n):
        w, h = PHOTO_SIZES[i % len(PHOTO_SIZES)]
        coarse = Image.fromarray(rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.normal(0, 8, (h, w, 3)).astype(np.int16)
        path = folder / f"{i:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


class JpegPhotos(torch.utils.data.Dataset):
    """The released code's data set: each item opened from its JPEG and transformed, one at a time."""

    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as image:
            return self.transform(image.convert("RGB")), i % 47


def baseline_epoch(paths: list[Path], name: str, workers: int) -> float:
    loader = torch.utils.data.DataLoader(JpegPhotos(paths, RELEASED[name]), batch_size=BATCH, shuffle=True,
                                         num_workers=workers)
    started = time.perf_counter()
    for x, _ in loader:
        assert x.shape[1:] == (3, 224, 224)
    return len(paths) / (time.perf_counter() - started)


def rdml_epoch(data: Dataset, name: str, device: torch.device, epoch: int) -> float:
    draws = torch.Generator().manual_seed(SEED * 1_000_003 + epoch)
    augment = partial(augment_batch, kind=AUGMENT[name], generator=draws)
    n = len(data.y_train)
    started = time.perf_counter()
    for rows in epoch_batches(n, BATCH, seed=SEED, epoch=epoch):
        x = data.train_inputs(rows, augment)
        assert x.shape[1:] == (3, 224, 224)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - started)


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    return {"cpu": fields.get("Model name", platform.processor()).strip(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load": os.getloadavg()[0],
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / f"photo_transforms_{device}.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    host = machine()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory(prefix="rdml-photos-") as folder:
        paths = write_photos(Path(folder), args.photos)
        paths_made = time.perf_counter() - started
        datasets, cache_seconds = {}, {}
        for name in RELEASED:
            begin = time.perf_counter()
            cache, sizes = train_rows(name, paths)
            cache_seconds[name] = time.perf_counter() - begin
            spec = DATASETS[name].spec
            labels = torch.arange(len(paths)) % spec.num_classes
            datasets[name] = Dataset(name, cache, labels, cache[:0], labels[:0], spec, torch.zeros(3), torch.ones(3),
                                     train_sizes=sizes)
        baselines = {f"baseline, {w} loader workers": partial(baseline_epoch, paths, workers=w) for w in (0, 2)}
        runs = {}
        for name in RELEASED:
            for label, epoch in baselines.items():
                runs[(name, label)] = partial(epoch, name=name)
            for device in devices:
                data = datasets[name].to(device)
                runs[(name, f"rdml, augment_batch on {device.type}")] = partial(rdml_epoch, data, name, device)
        rates = {key: [] for key in runs}
        for key, run in runs.items():  # warm-up: worker start, first-call allocations, CUDA context
            run(epoch=0) if "rdml" in key[1] else run()
        for round_ in range(1, args.rounds + 1):
            for key, run in runs.items():
                rates[key].append(run(epoch=round_) if "rdml" in key[1] else run())
    total = time.perf_counter() - started
    rows = []
    for name in RELEASED:
        reference = max(statistics.median(rates[(name, label)]) for label in baselines)
        for (data_name, label), values in rates.items():
            if data_name == name:
                median = statistics.median(values)
                rows.append((name, label, median, min(values), max(values), median / reference))
    table = ["| data set | path | images/s (median) | min – max | ÷ faster baseline |", "|---|---|---|---|---|"]
    table += [f"| {name} | {label} | {median:.0f} | {lo:.0f} – {hi:.0f} | {ratio:.2f} |"
              for name, label, median, lo, hi, ratio in rows]
    print("\n".join(table))
    caches = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cache_seconds.items())
    print(f"cache build (one-off): {caches}; whole run {total:.0f} s")
    Path(args.out).write_text(report(args, host, table, caches, paths_made, total))
    print(f"written to {args.out}")


def report(args, host: dict, table: list[str], caches: str, paths_made: float, total: float) -> str:
    gpu = f", GPU {host['gpu']}" if host["gpu"] else ", no GPU"
    flops = BATCH * 2 * 3 * (CACHE_SIDE ** 2 * 224 + CACHE_SIDE * 224 ** 2)
    return "\n".join([
        "# Photo training transforms: released per-photo PIL pipeline against rdml's batched augmentation",
        "",
        "Written by `benchmarks/photo_transforms.py` (see its docstring for what each path does):",
        "",
        "```sh",
        f".venv/bin/python benchmarks/photo_transforms.py --photos {args.photos} --rounds {args.rounds}",
        "```",
        "",
        f"Measured on {time.strftime('%Y-%m-%d')}: {host['cpu']}, {host['cores']} cores{gpu}; torch {torch.__version__}"
        f" ({host['torch_threads']} threads), torchvision {torchvision.__version__}, Pillow {PIL.__version__}, Python"
        f" {platform.python_version()}. 1-minute load average at the start: {host['load']:.2f}.",
        "",
        f"{args.photos} generated JPEG photos ({', '.join(f'{w}×{h}' for w, h in PHOTO_SIZES)}), batch {BATCH}, "
        f"output 3×224×224; rdml's cache {CACHE_SIDE}×{CACHE_SIDE} uint8. Median of {args.rounds} epochs per "
        f"path after a warm-up epoch; the paths take turns epoch by epoch. Writing the photos took "
        f"{paths_made:.0f} s, the whole run {total:.0f} s.",
        "",
        *table,
        "",
        f"rdml's cache build (rdml.data.photos.train_rows), paid once per data set: {caches}.",
        "",
        "How to read it:",
        "- Only the transforms run here. In a training run the baseline's loader workers share the cores with",
        "  the training itself, so its figures are an upper bound for the released code on this machine; rdml's",
        "  path runs inside the training step, on the training device.",
        f"- rdml resizes with two dense batched matmuls over the whole {CACHE_SIDE}-px cache, whatever each box's",
        f"  size: {flops / 1e9:.1f} GFLOP per batch of {BATCH} (2·3·(S²·224 + S·224²) per image), where PIL's resize",
        "  reads only the box's pixels with filters of a few taps. On a CPU of few cores these matmuls are most of",
        "  rdml's time. The path is meant for the training device, where they are a small load for a GPU and",
        "  there are no worker processes, no JPEG decode each epoch and no host-to-device copy of each batch"
        + (" (the CUDA row above)." if host["gpu"] else " (not measured here: this run had no GPU)."),
        "",
    ])


if __name__ == "__main__":
    main()
