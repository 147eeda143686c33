"""ImageNet input path: how many decoded and augmented images a second rdml's streamed set (rdml.data.imagenet) gives
with 0, 1 and 2 decoding workers, against torchvision's ImageFolder + DataLoader with a RandomResizedCrop
transform; what storing JPEG bytes costs against packed pre-resized uint8; PIL against torchvision's decoder; and
how many images a second a MobileNet v1 DML pair needs per GPU, so how many decoding workers a node needs.

The images: a tiny ILSVRC2012 written by rdml.data.imagenet.write_tiny_archives at ImageNet-like sizes (heights
333-375, widths 450-500, JPEG quality 90), prepared by the real `prepare` into WebDataset shards, and the same JPEG
files unpacked into an ImageFolder tree for the baseline. Paths:
- rdml: StreamedDataset.train_batches(...).inputs("inception"): os.pread of the JPEG bytes from the shard, PIL
  decode, TF-slim's preprocess_for_train per sample (distorted bounding box crop, TF 1's bilinear resize to 224,
  flip, brightness and saturation in one of 4 orders, clip, scale), float32 batches; workers 0 (in process), 1, 2;
- baseline: torchvision.datasets.ImageFolder + DataLoader (shuffle) with RandomResizedCrop(224, scale=(0.05, 1),
  ratio=(0.75, 1.33)), RandomHorizontalFlip, ColorJitter(brightness=0.125, saturation=0.5), ToTensor,
  Normalize(0.5, 0.5); the same workers.
Images/s: after the first 2 batches of a pass (workers started, prefetch filled), median of the passes.

Storage formats, one process: JPEG shards (pread + decode + the transform) against a packed uint8 file of every
photo decoded and resized (PIL bilinear) to a short side of 256 (np.memmap slice + the same transform): bytes per
image and images/s.

The estimate: forward FLOPs of timm's mobilenetv1_100 (1,000 classes) at 224 × 224 (torch.utils.flop_counter:
multiply-adds count 2), a DML step ≈ 2 networks × 3 × forward per image, at assumed sustained float32 rates of an
H100 (51 TFLOP/s dense fp32 without tensor cores, the PCIe card's peak; the SXM's is 67): the images/s a GPU
consumes, divided by one worker's measured images/s = the decoding workers per GPU.

    .venv/bin/python benchmarks/imagenet_data.py [--images 600] [--classes 8] [--batch 32] [--passes 3]
        [--out benchmarks/imagenet_data.md]
    .venv/bin/python benchmarks/imagenet_data.py --end-to-end 2 4 8 [--batch 64] [--steps 20]   # on a GPU: make gpu-check
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import PIL
import timm
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from PIL import Image
from torchvision import datasets, transforms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rdml.data import imagenet  # noqa: E402
from rdml.data.catalog import DataSpec  # noqa: E402

SEED, SIZE, PACKED_SIDE, ARCH = 0, 224, 256, "mobilenetv1_100"
HEIGHTS, WIDTHS, NOISE = (333, 375), (450, 500), 16.0
IMAGENET_MEAN_JPEG = 147_897_477_120 / 1_281_167  # bytes of ILSVRC2012_img_train.tar per training image
# assumed sustained float32 rate of one H100 (dense fp32, no tensor cores: the PCIe card's 51 TFLOP/s peak)
PEAK, UTILISATIONS = 51e12, (0.1, 0.3, 0.6)


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def rate(batches, batch: int, skip: int = 2) -> float:
    """Images/s of an iterator of batches, timed from the end of batch `skip` to the last."""
    count, started = 0, None
    for i, x in enumerate(batches):
        if i == skip - 1:
            started = time.perf_counter()
        elif i >= skip:
            count += len(x)
    return count / (time.perf_counter() - started)


def make_data(root: Path, images: int, classes: int) -> tuple[Path, Path, dict]:
    """Archives, shards and the ImageFolder tree of the same JPEGs."""
    per_class = images // classes
    started = time.perf_counter()
    imagenet.write_tiny_archives(root / "bench", classes=classes, train_per_class=(per_class,) * classes, val=classes,
                                 seed=SEED, heights=HEIGHTS, widths=WIDTHS, noise=NOISE, extra_synsets=1)
    written = time.perf_counter() - started
    started = time.perf_counter()
    shards = imagenet.prepare("bench", root, counts={"classes": classes, "train": per_class * classes, "val": classes})
    prepared = time.perf_counter() - started
    marker = imagenet.read_marker(root / "bench")
    index = np.load(shards / marker["splits"]["train"]["index"])
    samples = imagenet._Samples([shards / s["name"] for s in marker["splits"]["train"]["shards"]], index)
    folder = root / "folder"
    for row in range(len(index)):
        target = folder / marker["classes"][index[row]["label"]] / f"{row:06d}.JPEG"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(samples.read(row))
    info = {"write_s": written, "prepare_s": prepared, "images": len(index),
            "jpeg_bytes": float(index["size"].mean()), "marker": marker, "shards": shards, "samples": samples}
    return shards, folder, info


def packed(samples, root: Path) -> tuple[np.memmap, np.ndarray]:
    """Every photo decoded, resized (PIL bilinear) to a short side of PACKED_SIDE, packed into one uint8 file."""
    shapes, chunks = [], []
    for row in range(len(samples)):
        with Image.open(io.BytesIO(samples.read(row))) as image:
            image = image.convert("RGB")
            scale = PACKED_SIDE / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
            pixels = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))
        shapes.append(pixels.shape)
        chunks.append(pixels.ravel())
    offsets = np.cumsum([0] + [c.size for c in chunks])
    path = root / "packed.u8"
    path.write_bytes(b"".join(c.tobytes() for c in chunks))
    return np.memmap(path, dtype=np.uint8, mode="r"), np.array([(o, *s) for o, s in zip(offsets, shapes)])


def one_process_rates(samples, store, layout, passes: int) -> dict:
    """Images/s of one process: JPEG shard (read, decode, transform) against packed uint8 (slice, transform), with
    the memory settings of a decoding worker (rdml.data.imagenet._worker_init)."""
    imagenet._worker_init(0)
    rows = np.random.default_rng(SEED).permutation(len(samples))

    def jpeg(row):
        image = imagenet.decode(samples.read(row))
        return imagenet.train_transform(image, imagenet.draw_train(imagenet.sample_generator(0, 1, row), *image.shape[1:]))

    def pack(row):
        offset, c, h, w = layout[row]
        image = np.asarray(store[offset: offset + c * h * w]).reshape(c, h, w)
        return imagenet.train_transform(image, imagenet.draw_train(imagenet.sample_generator(0, 1, row), h, w))

    def decode_pil(row):
        return imagenet.decode(samples.read(row))

    def decode_torchvision(row):
        from torchvision.io import ImageReadMode, decode_image

        return decode_image(torch.frombuffer(bytearray(samples.read(row)), dtype=torch.uint8), mode=ImageReadMode.RGB)

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29's decoders
        for name, f in (("jpeg", jpeg), ("packed", pack), ("decode_pil", decode_pil), ("decode_torchvision", decode_torchvision)):
            timings = []
            for _ in range(passes):
                started = time.perf_counter()
                for row in rows:
                    f(int(row))
                timings.append(len(rows) / (time.perf_counter() - started))
            out[name] = statistics.median(timings)
    return out


def loader_rates(info: dict, folder: Path, batch: int, passes: int) -> dict:
    spec = DataSpec("imagenet_photos", len(info["marker"]["classes"]), (3, SIZE, SIZE))
    baseline = transforms.Compose([
        transforms.RandomResizedCrop(SIZE, scale=(0.05, 1.0), ratio=(0.75, 1.33)), transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(brightness=0.125, saturation=0.5), transforms.ToTensor(),
        transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    folder_set = datasets.ImageFolder(str(folder), transform=baseline)
    out = {}
    for workers in (0, 1, 2):
        data = imagenet.StreamedDataset("bench", info["shards"], info["marker"], spec, {}, workers=workers)
        ours, theirs = [], []
        for epoch in range(1, passes + 1):  # the paths take turns, so a busy moment hits both
            ours.append(rate((b.inputs("inception") for b in data.train_batches(batch, seed=SEED, epoch=epoch)), batch))
            loader = torch.utils.data.DataLoader(folder_set, batch_size=batch, shuffle=True, num_workers=workers,
                                                 generator=torch.Generator().manual_seed(epoch))
            theirs.append(rate((x for x, _ in loader), batch))
        out[workers] = (statistics.median(ours), statistics.median(theirs))
    return out


def flops() -> float:
    model = timm.create_model(ARCH, num_classes=1000).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, SIZE, SIZE))
    return float(counter.get_total_flops())


def end_to_end(images: int, classes: int, batch: int, steps: int, workers: list[int]) -> dict:
    """Images/s of dml_imagenet's training on streamed shards, end to end on this machine's device: a DML step of
    two mobilenetv1_100 (1,000 classes, TF's RMSProp, float32 with TF32 off, channels_last, sequential order as
    dml_imagenet) on each batch that `workers` decoding processes give (slim's preprocessing), after 3 warm-up
    steps; and the same steps on inputs already on the device (the GPU's own rate, what the workers must keep up
    with). What `make gpu-check` runs on a GPU (its `imagenet_stream` section)."""
    from rdml.config import load_config, resolve
    from rdml.methods import METHODS
    from rdml.train.cohort import build_cohort
    from rdml.train.execution import choose_execution
    from rdml.train.prepare import pick_device

    device = pick_device("auto")
    with tempfile.TemporaryDirectory(prefix="rdml-imagenet-e2e-") as tmp:
        _, _, info = make_data(Path(tmp), images, classes)
        spec = DataSpec("imagenet_photos", 1000, (3, SIZE, SIZE))
        cfg = resolve(load_config(None, ["dataset=imagenet", "method=dml", f"arch={ARCH}", "optimizer=rmsprop_tf",
                                         "lr=0.1", "momentum=0.9", "rmsprop_epsilon=1.0", "augment=inception",
                                         "normalize=inception", "update_order=sequential", "precision=fp32",
                                         "memory_format=channels_last", f"batch_size={batch}"]))
        execution = choose_execution(device, "fp32", "channels_last", False, False, cfg.arch, True)
        execution.apply()
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
               "batch": batch, "steps": steps, "images": info["images"], "rows": []}

        def timed(batches) -> float:
            method = METHODS["dml"](cfg)
            cohort = build_cohort(cfg, data, execution, 1000)
            done, started = 0, None
            for x, y in batches:
                if done == 3:
                    sync()
                    started = time.perf_counter()
                method.train_step(x, y, cohort)
                done += 1
                if done == 3 + steps:
                    break
            sync()
            return steps * batch / (time.perf_counter() - started)

        for count in workers:
            data = imagenet.StreamedDataset("bench", info["shards"], info["marker"], spec, {}, workers=count,
                                            device=device)

            def streamed():
                for epoch in range(1, 1000):
                    for b in data.train_batches(batch, seed=SEED, epoch=epoch):
                        yield b.inputs("inception"), b.labels

            out["rows"].append({"workers": count, "images_per_second": timed(streamed())})
        x = torch.rand(batch, 3, SIZE, SIZE, device=device) * 2 - 1
        y = torch.randint(classes, (batch,), device=device)
        out["device_only_images_per_second"] = timed(iter(lambda: (x, y), None))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "imagenet_data.md"))
    parser.add_argument("--end-to-end", type=int, nargs="+", metavar="WORKERS",
                        help="only the end-to-end training rate with each number of decoding workers, as JSON on stdout")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps of --end-to-end")
    args = parser.parse_args()
    if args.end_to_end:
        import json

        print(json.dumps(end_to_end(args.images, args.classes, args.batch, args.steps, args.end_to_end)))
        return
    torch.set_num_threads(os.cpu_count() or 1)
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="imagenet-bench-") as tmp:
        root = Path(tmp)
        shards, folder, info = make_data(root, args.images, args.classes)
        shard_bytes = sum(p.stat().st_size for p in shards.glob("train-*.tar"))
        store, layout = packed(info["samples"], root)
        single = one_process_rates(info["samples"], store, layout, args.passes)
        loaders = loader_rates(info, folder, args.batch, args.passes)
    forward = flops()
    elapsed = time.perf_counter() - started
    n = info["images"]
    packed_bytes = float(np.mean([c * h * w for _, c, h, w in layout]))
    per_image_step = 2 * 3 * forward
    one_worker = loaders[1][0]
    lines = [
        "# ImageNet input path: streamed JPEG shards with slim's preprocessing, against ImageFolder, and the decoding "
        "workers a MobileNet v1 DML pair needs",
        "",
        "Written by `benchmarks/imagenet_data.py` (its docstring says what each path does):",
        "",
        "```sh",
        f".venv/bin/python benchmarks/imagenet_data.py --images {args.images} --classes {args.classes} "
        f"--batch {args.batch} --passes {args.passes}",
        "```",
        "",
        f"Measured on {time.strftime('%Y-%m-%d')}: {cpu_name()}, {os.cpu_count()} cores, CPU only; torch "
        f"{torch.__version__}, torchvision {torchvision.__version__}, Pillow {PIL.__version__}, numpy {np.__version__}, "
        f"timm {timm.__version__}, Python {platform.python_version()}. 1-minute load average {load_start:.2f} at the "
        f"start, {os.getloadavg()[0]:.2f} at the end; the whole run took {elapsed:.0f} s. Figures differ from one CPU "
        "to another, and from run to run in their last digits.",
        "",
        f"{n} generated photos (heights {HEIGHTS[0]}-{HEIGHTS[1]}, widths {WIDTHS[0]}-{WIDTHS[1]}, JPEG quality 90, "
        f"{info['jpeg_bytes'] / 1e3:.0f} KB each on average; ImageNet's training JPEGs average "
        f"{IMAGENET_MEAN_JPEG / 1e3:.0f} KB), written as ILSVRC2012 archives in {info['write_s']:.1f} s and prepared "
        f"into shards by `rdml.data.imagenet.prepare` in {info['prepare_s']:.2f} s ({n / info['prepare_s']:,.0f} "
        f"images/s: tar reading and writing, names and counts checked, archives hashed). Batch {args.batch}, output "
        f"3 × {SIZE} × {SIZE} float32; median of {args.passes} passes, each timed after its first 2 batches.",
        "",
        "## Decoded and augmented images/s",
        "",
        "| workers | rdml: JPEG shards, slim's preprocess_for_train | torchvision: ImageFolder + RandomResizedCrop |",
        "|---|---|---|",
        *(f"| {w}{' (in process)' if w == 0 else ''} | {ours:,.0f} | {theirs:,.0f} |" for w, (ours, theirs) in loaders.items()),
        "",
        "The baseline's transform is the cheaper one: it crops and resizes in uint8 (Pillow's SIMD resampling) and "
        "jitters colours with ImageEnhance in uint8; rdml's follows slim's float32 arithmetic op for op (TF 1's "
        f"resize, TF's HSV saturation kernel), {1e3 / single['packed']:.1f} ms of its {1e3 / single['jpeg']:.1f} ms a "
        "sample (the packed row below: the same transform without the decoding). "
        "With 2 workers on 2 cores the main process competes with them for the cores; a node with more cores than "
        "workers gives each worker a core of its own, and the rate grows about linearly with the workers until the "
        "disk or memory bandwidth is reached (a worker reads ~"
        f"{info['jpeg_bytes'] * one_worker / 1e6:.0f} MB/s of JPEG bytes and writes ~"
        f"{one_worker * 3 * SIZE * SIZE * 4 / 1e6:.0f} MB/s of float32 batches).",
        "",
        "## Storage: JPEG bytes against packed uint8, one process with a worker's memory settings",
        "",
        "| format | bytes per image | ImageNet's 1,281,167 training images | images/s (read, decode, preprocess_for_train) |",
        "|---|---|---|---|",
        f"| JPEG shards (the archives' bytes) | {shard_bytes / n / 1e3:,.0f} KB here, {IMAGENET_MEAN_JPEG / 1e3:.0f} KB in "
        f"ImageNet | {1_281_167 * IMAGENET_MEAN_JPEG / 1e9:,.0f} GB | {single['jpeg']:,.0f} |",
        f"| packed uint8, short side {PACKED_SIDE} (PIL bilinear) | {packed_bytes / 1e3:,.0f} KB | "
        f"{1_281_167 * packed_bytes / 1e9:,.0f} GB | {single['packed']:,.0f} |",
        "",
        f"Decoding alone: PIL {single['decode_pil']:,.0f} images/s, torchvision.io.decode_image "
        f"{single['decode_torchvision']:,.0f} images/s (the same pixels, tests/test_imagenet_data.py; deprecated from "
        "torchvision 0.29 on, so rdml decodes with PIL).",
        "",
        "Why JPEG shards: the packed layout saves the decoding "
        f"({1e3 / single['packed']:.1f} ms a sample against {1e3 / single['jpeg']:.1f} ms here), but slim's crop takes 5 % "
        "to 100 % of the photo and resizes it to 224: from a photo stored at a short side of 256 a small crop is "
        "upsampled from fewer pixels than the original holds, which is not the preprocessing the paper's networks "
        "trained with, and packing at the photos' own size (~400 × 350 × 3 = 420 KB a photo on average) would take "
        "~540 GB against the JPEGs' 148 GB. Decoding is the price of the original pixels: one worker per "
        f"~{one_worker:,.0f} images/s here.",
        "",
        "## Decoding workers a MobileNet v1 DML pair needs per GPU: an estimate from FLOPs",
        "",
        f"One forward pass of `{ARCH}` (1,000 classes) on a 224 × 224 image: {forward / 1e9:.3f} GFLOP "
        "(torch.utils.flop_counter: convolutions and matmuls, a multiply-add counted as 2; timm's 0.58 is GMACs). A DML "
        f"step of the pair: 2 networks × 3 × forward (forward and backward) = {per_image_step / 1e9:.2f} GFLOP per image. "
        f"Assumed sustained float32 rate: a fraction of an H100's {PEAK / 1e12:.0f} TFLOP/s dense fp32 without tensor "
        "cores (the PCIe card's peak; the paper's runs are float32, not TF32). Workers per GPU = images/s the pair "
        f"consumes / {one_worker:,.0f} images/s of one worker measured here.",
        "",
        "| assumed sustained rate | images/s per GPU | decoding workers (cores) per GPU at this CPU's rate |",
        "|---|---|---|",
        *(f"| {u:.0%} of {PEAK / 1e12:.0f} TFLOP/s = {u * PEAK / 1e12:.1f} TFLOP/s | {u * PEAK / per_image_step:,.0f} | "
          f"{u * PEAK / per_image_step / one_worker:,.0f} |" for u in UTILISATIONS),
        "",
        "These are estimates, not measurements of a GPU: MobileNet's depthwise convolutions are bound by memory, so "
        "the sustained rate is likely nearer the lower rows. At 30 % an 8-GPU node needs "
        f"~{8 * 0.3 * PEAK / per_image_step / one_worker:,.0f} decoding cores at this CPU's per-core rate; set "
        "`loader_workers` to the cores a GPU's job may use (leaving one for the training process).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
