"""Market-1501 input path of DML's re-ID experiments: rdml's batched path on the device against a per-image PIL
pipeline behind a DataLoader, alone and under one DML step of a MobileNet pair; and the GPU-hours the Market
studies' training would take, estimated from FLOPs.

The official DML code (YingZhangDUT/Deep-Mutual-Learning) stores every crop at 160 × 64 and per image converts it
to [0, 1] floats, resizes it to 224 × 224 (`tf.image.resize_images`: TF 1's legacy bilinear), flips it left-right
at random and scales it to [-1, 1] (preprocessing/reid_preprocessing.py L30-39). Paths measured, side by side in
one run, on the same generated crops (128 × 64 scenes resized to 160 × 64 with PIL's bilinear, as
rdml.data.market stores them, saved as JPEG):
- rdml: the crops held as uint8 (N, 3, 160, 64) on the device; a batch of rows indexed, resized by
  rdml.data.resize.resize_tf (two matrix products), flipped and normalised in batch ops (`Dataset.train_inputs`
  with augment_batch kind "flip");
- baseline: a torch DataLoader (shuffle, num_workers 0 and 2) over the JPEG files, each opened with PIL and
  transformed by Resize((224, 224)), RandomHorizontalFlip, ToTensor, Normalize(0.5, 0.5).
First the input path alone, then one DML step of two timm `mobilenetv1_100` (751 classes, Adam lr 2e-4, β1 0.5,
label smoothing 0.1 as scripts/train_dml_mobilenet_on_market.sh) per batch of each path. The paths take turns
window by window (so that a busy moment of the machine hits all of them); a DataLoader's workers are given
a second after its window to fill their prefetch, and those batches are drawn before its next window starts. Images/s is the median over the windows, after a
warm-up.

The estimate: forward FLOPs of one mobilenetv1_100 per 224 × 224 image (torch.utils.flop_counter: convolutions
and matmuls), a training step ≈ 3 × forward for each network, 200,000 steps of batch 16
(--max_number_of_steps=200000 --batch_size=16), at an assumed sustained fraction of an H100's dense fp32 rate.

    .venv/bin/python benchmarks/reid_data.py [--crops 2000] [--windows 7] [--batches 30] [--train-windows 5]
        [--train-steps 3] [--out benchmarks/reid_data.md]
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
import timm
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision import transforms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rdml.data.augment import augment_batch  # noqa: E402
from rdml.data.base import Dataset  # noqa: E402
from rdml.data.catalog import DataSpec  # noqa: E402

BATCH, SEED, CLASSES = 16, 0, 751
STORED, RAW, INPUT = (160, 64), (128, 64), (224, 224)  # (H, W): as stored, Market's own crops, the models' input
ARCH = "mobilenetv1_100"
STEPS = 200_000  # scripts/train_dml_mobilenet_on_market.sh --max_number_of_steps
H100_FP32 = 67e12  # FLOP/s, dense fp32 without tensor cores (H100 SXM)
UTILISATION = (0.30, 0.10)  # assumed sustained fractions of it: the estimate's assumption, and a lower one
PREFETCH = 2  # DataLoader's default prefetch_factor: batches per worker fetched ahead
SETTLE = 1.0  # seconds: ample for the workers to fetch PREFETCH batches each (~1 ms per crop)
BASELINE = transforms.Compose([transforms.Resize(INPUT), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                               transforms.Normalize((0.5,) * 3, (0.5,) * 3)])


def write_crops(folder: Path, n: int) -> tuple[list[Path], torch.Tensor]:
    """Pedestrian-sized scenes (smooth colours and fine noise, 128 × 64), resized to 160 × 64 with PIL's bilinear
    and saved as JPEG (quality 90); returns the files and their decoded pixels, uint8 (N, 3, 160, 64)."""
    rng = np.random.default_rng(SEED)
    paths, pixels = [], np.empty((n, 3, *STORED), dtype=np.uint8)
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (RAW[0] // 8, RAW[1] // 8, 3), dtype=np.uint8))
        scene = np.asarray(coarse.resize(RAW[::-1], Image.BICUBIC), dtype=np.int16)
        scene = scene + rng.normal(0, 8, scene.shape).astype(np.int16)
        crop = Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8)).resize(STORED[::-1], Image.BILINEAR)
        path = folder / f"{i:05d}.jpg"
        crop.save(path, quality=90)
        paths.append(path)
        with Image.open(path) as stored:
            pixels[i] = np.asarray(stored.convert("RGB")).transpose(2, 0, 1)
    return paths, torch.from_numpy(pixels)


class JpegCrops(torch.utils.data.Dataset):
    """The per-image pipeline: each crop opened from its JPEG and transformed alone."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as image:
            return BASELINE(image.convert("RGB")), i % CLASSES


def loader_source(paths: list[Path], workers: int):
    """Batches without end from one DataLoader (persistent workers: no start-up cost after the first epoch)."""
    loader = torch.utils.data.DataLoader(JpegCrops(paths), batch_size=BATCH, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=workers > 0,
                                         generator=torch.Generator().manual_seed(SEED))
    while True:
        yield from loader


def rdml_source(data: Dataset):
    """Batches without end of rdml's path: the trainer's rows, `train_inputs` with the flip augmentation."""
    augment = partial(augment_batch, kind="flip", generator=torch.Generator().manual_seed(SEED))
    epoch = 0
    while True:
        epoch += 1
        for batch in data.train_batches(BATCH, seed=SEED, epoch=epoch):
            yield batch.inputs(augment), batch.labels


def pair() -> tuple[list[torch.nn.Module], list[torch.optim.Optimizer]]:
    torch.manual_seed(SEED)
    models = [timm.create_model(ARCH, pretrained=False, num_classes=CLASSES) for _ in range(2)]
    optimizers = [torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8) for m in models]
    return models, optimizers


def dml_step(models, optimizers, x: torch.Tensor, y: torch.Tensor) -> None:
    """DML's step on one batch: each network's smoothed cross-entropy and KL(peer ‖ itself), the peer detached."""
    outputs = [model(x) for model in models]
    for k, optimizer in enumerate(optimizers):
        peer = F.log_softmax(outputs[1 - k].detach(), -1)
        loss = F.cross_entropy(outputs[k], y, label_smoothing=0.1) + F.kl_div(
            F.log_softmax(outputs[k], -1), peer, reduction="batchmean", log_target=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def window(source, batches: int, workers: int, step=None) -> float:
    """Images/s over `batches` batches of `source` (each trained on by `step` where given)."""
    for _ in range(PREFETCH * workers):  # fetched ahead while another path ran: not this window's work
        next(source)
    started = time.perf_counter()
    for _ in range(batches):
        x, y = next(source)
        assert x.shape == (BATCH, 3, *INPUT) and x.dtype == torch.float32
        if step is not None:
            step(x, y)
    rate = batches * BATCH / (time.perf_counter() - started)
    if workers:  # let the workers fill their prefetch now, not during the next path's window
        time.sleep(SETTLE)
    return rate


def measure(paths_and_sources: dict, windows: int, batches: int, step=None) -> dict[str, list[float]]:
    rates = {label: [] for label in paths_and_sources}
    for label, (source, workers) in paths_and_sources.items():  # warm-up: worker start, first allocations
        window(source, 1 if step else 3, workers, step)
    for _ in range(windows):
        for label, (source, workers) in paths_and_sources.items():
            rates[label].append(window(source, batches, workers, step))
    return rates


def forward_flops() -> int:
    """FLOPs of one forward pass of the network on one 224 × 224 image (convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = timm.create_model(ARCH, pretrained=False, num_classes=CLASSES).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, *INPUT))
    return counter.get_total_flops()


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lscpu.splitlines() if ":" in line)}
    return {"cpu": fields.get("Model name", platform.processor()), "family": fields.get("CPU family"),
            "model": fields.get("Model"), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=2000)
    parser.add_argument("--windows", type=int, default=7, help="timed windows of the input paths alone")
    parser.add_argument("--batches", type=int, default=30, help="batches per window of the input paths alone")
    parser.add_argument("--train-windows", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=3, help="DML steps per training window")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "reid_data.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    host = machine()
    with tempfile.TemporaryDirectory(prefix="rdml-reid-") as folder:
        paths, crops = write_crops(Path(folder), args.crops)
        written = time.perf_counter() - started
        labels = torch.arange(args.crops) % CLASSES
        data = Dataset("crops", crops, labels, crops[:0], labels[:0], DataSpec("pedestrians", CLASSES, (3, *INPUT)),
                       torch.full((3,), 0.5), torch.full((3,), 0.5))
        sources = {"rdml: uint8 on the device, resize_tf + flip + normalise in batch ops": (rdml_source(data), 0),
                   "baseline: DataLoader, PIL per image, 0 workers": (loader_source(paths, 0), 0),
                   "baseline: DataLoader, PIL per image, 2 workers": (loader_source(paths, 2), 2)}
        inputs = measure(sources, args.windows, args.batches)
        models, optimizers = pair()
        training = measure(sources, args.train_windows, args.train_steps, partial(dml_step, models, optimizers))
    host["load_end"] = os.getloadavg()[0]
    total = time.perf_counter() - started
    text = report(args, host, inputs, training, forward_flops(), written, total)
    Path(args.out).write_text(text)
    print(text)
    print(f"written to {args.out}")


def report(args, host: dict, inputs: dict, training: dict, flops: int, written: float, total: float) -> str:
    rdml = next(iter(inputs))
    rows = ["| path | input alone, images/s | DML step of the pair, images/s | input's share of the step |",
            "|---|---|---|---|"]
    for label in inputs:
        alone, trained = statistics.median(inputs[label]), statistics.median(training[label])
        # where the input runs in the training process, its time per image over the step's; workers overlap it
        share = f"{trained / alone:.1%}" if "2 workers" not in label else "overlapped by the workers"
        rows.append(f"| {label} | {alone:,.0f} ({min(inputs[label]):,.0f} – {max(inputs[label]):,.0f}) "
                    f"| {trained:.2f} ({min(training[label]):.2f} – {max(training[label]):.2f}) | {share} |")
    step_flops = 2 * 3 * flops * BATCH
    run_flops = step_flops * STEPS
    estimates = [f"| {u:.0%} of {H100_FP32 / 1e12:.0f} TFLOP/s = {u * H100_FP32 / 1e12:.1f} TFLOP/s "
                 f"| {run_flops / (u * H100_FP32) / 3600:.2f} | {run_flops * 8 / 6 / (u * H100_FP32) / 3600:.2f} |"
                 for u in UTILISATION]
    return "\n".join([
        "# Market-1501 input path: rdml's batched path against per-image PIL, and a MobileNet pair's DML step",
        "",
        "Written by `benchmarks/reid_data.py` (its docstring says what each path does):",
        "",
        "```sh",
        f".venv/bin/python benchmarks/reid_data.py --crops {args.crops} --windows {args.windows} --batches "
        f"{args.batches} --train-windows {args.train_windows} --train-steps {args.train_steps}",
        "```",
        "",
        f"Measured on {time.strftime('%Y-%m-%d')}: {host['cpu']} (CPU family {host['family']}, model {host['model']}),"
        f" {host['cores']} cores, CPU only; torch {torch.__version__} ({host['threads']} threads), timm"
        f" {timm.__version__}, torchvision {torchvision.__version__}, Pillow {PIL.__version__}, Python"
        f" {platform.python_version()}. 1-minute load average {host['load']:.2f} at the start, {host['load_end']:.2f}"
        " at the end. Figures differ from one CPU to another, and from run to run in their last digits.",
        "",
        f"{args.crops} generated crops stored at {STORED[0]}×{STORED[1]} (JPEG files for the baseline, the same pixels"
        f" as uint8 for rdml), batch {BATCH}, output 3×{INPUT[0]}×{INPUT[1]}. Input alone: median (min – max) of"
        f" {args.windows} windows of {args.batches} batches; DML step of two `{ARCH}` (751 classes, Adam): median of"
        f" {args.train_windows} windows of {args.train_steps} steps. Writing the crops took {written:.0f} s, the"
        f" whole run {total:.0f} s.",
        "",
        *rows,
        "",
        "How to read it:",
        "- The share is the input path's time per image over the training step's, both measured here: what",
        "  the step would gain if its input cost nothing. With 2 workers the baseline's input runs in other",
        "  processes, on the same two cores as the step.",
        f"- rdml's resize is {2 * 3 * BATCH * (INPUT[0] * STORED[0] * STORED[1] + INPUT[0] * INPUT[1] * STORED[1]) / 1e9:.2f}"
        f" GFLOP per batch of {BATCH} (two matrix products per image and channel); the pair's step is"
        f" {step_flops / 1e9:.0f} GFLOP. On a GPU the input path stays on the device: no workers, no JPEG",
        "  decoding, no host-to-device copy of each batch.",
        "- The two paths do not give the same pixels: PIL's Resize samples at half-pixel centres, rdml's resize_tf",
        "  as TF 1's `tf.image.resize_images` did for the official code (tests/test_reid_resize.py).",
        "",
        "## GPU-hours of the Market studies: an estimate from FLOPs",
        "",
        f"One forward pass of `{ARCH}` (751 classes) on a 224×224 image: {flops / 1e9:.3f} GFLOP"
        " (torch.utils.flop_counter: convolutions and matmuls). A DML step of the pair on one batch of"
        f" {BATCH}: 2 networks × 3 × forward (forward and backward) = {step_flops / 1e9:.0f} GFLOP; a run of"
        f" {STEPS:,} steps (scripts/train_dml_mobilenet_on_market.sh): {run_flops / 1e15:.1f} PFLOP. The official"
        " loop runs each network's update as its own `sess.run` on its own batch, each forwarding both networks"
        " (train_models.py L310-316), 8 forward passes' worth per step instead of 6, so 4/3 of that. Two networks"
        " trained alone cost what the DML pair costs on one batch (the KL term is negligible).",
        "",
        "| assumed sustained rate (H100, dense fp32, no tensor cores) | GPU-hours per pair run, one batch a step"
        " | as the official loop ran |",
        "|---|---|---|",
        *estimates,
        "",
        "These are estimates, not measurements: the sustained rate is an assumption. MobileNet's depthwise"
        " convolutions at batch 16 are bound by memory, not arithmetic, so a GPU may sustain well under 30 % of its"
        " fp32 peak on them; the lower row shows the cost at a third of that. Multiply by the runs of a study"
        " (DML Table 3's layout: a pair alone and a DML pair, from scratch and from ImageNet weights, per seed)."
        " Evaluation (query, gallery and gt_bbox forward passes, under 50,000 images per network) adds well under"
        " 1 % of a run's FLOPs.",
        "",
    ])


if __name__ == "__main__":
    main()
