"""OKDPH's per-student augmentations (online KD by parameter hybridization), each image of a batch with its own draws.

The official code (tianlizhang/OKDPH src/data/data_loader.py `build_transform`, L144–294) gives each student
one of these per-image transforms of a PIL CIFAR image, after Resize(32) (the identity on CIFAR's 32×32) and
RandomCrop(32, padding=4) with zero fill:
- `cutout` (L245–253): RandomHorizontalFlip, ToTensor, Cutout(n_holes=1, length=16) (src/data/auto_aug.py L7–33);
- `augment` (L171–177): torchvision's RandAugment() with its defaults (2 ops, magnitude 9 of 31 bins), no flip;
- `auto_aug` (L237–243): torchvision's AutoAugment() with its default policy, IMAGENET (not CIFAR10), no flip.
Here every image draws what torchvision's transform draws for it, and each op kind runs once, batched, on the
images that drew it. The ops work on pixel values (x·255 rounded, float32: the uint8 image the data came from)
and are torchvision's tensor ops (transforms.functional, what RandAugment and AutoAugment call) on that uint8
image to the bit: float32 where torchvision casts uint8 to float32, truncation where it casts back (`_blend`),
rounding where it rounds, its affine grid. The official code ran them on PIL images: at the magnitudes OKDPH
uses, torchvision's PIL path gives the same pixels for all but Color and Contrast (one level off on up to half
the pixels at factor 0.2: PIL's rounded grayscale and mean), Sharpness and AutoContrast (one level, on ≤ 3 %
and < 1 %), as tests/test_policies.py measures. transforms.v2 differs from v1 in those four ops by a level as
well. Draws come from a CPU generator.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AUTO_AUGMENT_OPS", "AUTO_AUGMENT_POLICIES", "RAND_AUGMENT_OPS", "SIGNED", "affine", "apply_op",
           "auto_augment", "cutout", "equalize", "from_pixels", "op_magnitude", "rand_augment", "to_pixels"]

# torchvision 0.29 transforms/autoaugment.py: RandAugment's ops in the order of its `_augmentation_space`
# (L320–337), which its op index draws from; AutoAugment's space (L222–239) has Invert and no Identity.
RAND_AUGMENT_OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
                    "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
AUTO_AUGMENT_OPS = RAND_AUGMENT_OPS[1:] + ("Invert",)
SIGNED = frozenset(("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
                    "Sharpness"))
AUTO_AUGMENT_BINS = 10  # AutoAugment.forward's `_augmentation_space(10, ...)` (L266)

# AutoAugment's sub-policies, (op, probability, magnitude bin) twice (autoaugment.py L132–220).
AUTO_AUGMENT_POLICIES = {
    "imagenet": (
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)), (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)), (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)), (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ),
    "cifar10": (
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)), (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)), (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)), (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)), (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)), (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)), (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)), (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)), (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)), (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)), (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)), (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)), (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ),
    "svhn": (
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)), (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)), (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)), (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)), (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)), (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)), (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)), (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)), (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)), (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)), (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ),
}


def op_magnitude(op: str, bins: int, index: int | None, height: int, width: int) -> float:
    """The (unsigned) magnitude of bin `index` of `op` on a height × width image, as torchvision's
    `_augmentation_space` tables (autoaugment.py L222–239, L320–337; the same torch calls, so the same float32
    values) read by `float(magnitudes[index].item())`; 0.0 for ops without a magnitude or without a bin."""
    if op in ("ShearX", "ShearY"):
        table = torch.linspace(0.0, 0.3, bins)
    elif op in ("TranslateX", "TranslateY"):
        table = torch.linspace(0.0, 150.0 / 331.0 * (width if op == "TranslateX" else height), bins)
    elif op == "Rotate":
        table = torch.linspace(0.0, 30.0, bins)
    elif op in ("Brightness", "Color", "Contrast", "Sharpness"):
        table = torch.linspace(0.0, 0.9, bins)
    elif op == "Posterize":
        table = 8 - (torch.arange(bins) / ((bins - 1) / 4)).round().int()
    elif op == "Solarize":
        table = torch.linspace(255.0, 0.0, bins)
    else:
        return 0.0
    return 0.0 if index is None else float(table[index].item())


def to_pixels(x: Tensor) -> Tensor:
    """[0, 1] pixels that came from uint8 (u/255) back to their uint8 values, held in float32."""
    return (x.float() * 255).round_()


def from_pixels(pixels: Tensor, dtype: torch.dtype) -> Tensor:
    """Pixel values to [0, 1]: ToTensor's u/255 in float32 (to_tensor's `img.float().div(255)`), then `dtype`."""
    return (pixels / 255).to(dtype)


def _column(values: Tensor, pixels: Tensor) -> Tensor:
    """Per-image values (N,) as an (N, 1, 1, 1) float32 column on the pixels' device."""
    return values.to(device=pixels.device, dtype=torch.float32).view(-1, 1, 1, 1)


def _blend(pixels: Tensor, other: Tensor, ratios: Tensor) -> Tensor:
    """`_blend` (transforms/_functional_tensor.py L258–261) on uint8: ratio·img1 + (1 − ratio)·img2 in float32,
    ratio and 1 − ratio (Python floats) each rounded to float32, clamped to [0, 255], truncated to uint8."""
    ratios = ratios.to(device="cpu", dtype=torch.float64)
    return (_column(ratios, pixels) * pixels + _column(1.0 - ratios, pixels) * other).clamp_(0, 255).trunc_()


def _grayscale(pixels: Tensor) -> Tensor:
    """rgb_to_grayscale (L148–166) on uint8: 0.2989 r + 0.587 g + 0.114 b in float32, truncated; (N, 1, H, W)."""
    if pixels.shape[1] == 1:
        return pixels
    r, g, b = pixels.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).trunc_().unsqueeze(1)


def _blurred(pixels: Tensor) -> Tensor:
    """`_blurred_degenerate_image` (L809–824): the interior smoothed by [[1, 1, 1], [1, 5, 1], [1, 1, 1]]/13 and
    rounded, the border kept. The weighted sum k is a whole number, summed exactly here; k/13 is never within
    1/26 of a half, so torchvision's float32 convolution rounds to the same round(k/13) on any device."""
    height, width = pixels.shape[-2:]
    k = 4 * pixels[..., 1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            k = k + pixels[..., dy:height - 2 + dy, dx:width - 2 + dx]
    out = pixels.clone()
    out[..., 1:-1, 1:-1] = (k / 13).round_()
    return out


def _autocontrast(pixels: Tensor) -> Tensor:
    """autocontrast (L841–860): each image's channel stretched from its [min, max] to [0, 255] by the float32
    scale 255/(max − min), truncated; a constant channel unchanged."""
    low = pixels.amin((-2, -1), keepdim=True)
    high = pixels.amax((-2, -1), keepdim=True)
    scale = 255 / (high - low)
    constant = ~torch.isfinite(scale)
    low, scale = low.masked_fill(constant, 0), scale.masked_fill(constant, 1)
    return ((pixels - low) * scale).clamp_(0, 255).trunc_()


def equalize(pixels: Tensor) -> Tensor:
    """equalize (L863–902, PIL's ImageOps.equalize) of each image's channel, all at once: a 256-bin histogram
    per channel (scatter_add on offsets), step = (pixels − those of the channel's largest value) // 255, the
    lookup table (cumulative count + step // 2) // step shifted by one level; a channel with step 0 unchanged."""
    n, c, height, width = pixels.shape
    levels = pixels.reshape(n * c, height * width).long()
    counts = torch.zeros(n * c, 256, dtype=torch.int64, device=pixels.device)
    counts.scatter_add_(1, levels, torch.ones_like(levels))
    step = (height * width - counts.gather(1, levels.amax(1, keepdim=True))) // 255
    lut = (counts.cumsum(1) + step // 2) // step.clamp(min=1)
    lut = F.pad(lut, (1, 0))[:, :-1].clamp_(0, 255)
    out = torch.where(step > 0, lut.gather(1, levels), levels)
    return out.view(n, c, height, width).to(pixels.dtype)


def _inverse_affine_matrix(center: list[float], angle: float, translate: list[float], scale: float,
                           shear: list[float]) -> list[float]:
    """transforms/functional.py `_get_inverse_affine_matrix` (L1006–1052, inverted), Python floats in its order."""
    rot = math.radians(angle)
    sx = math.radians(shear[0])
    sy = math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    matrix = [x / scale for x in [d, -b, 0.0, -c, a, 0.0]]
    matrix[2] += matrix[0] * (-cx - tx) + matrix[1] * (-cy - ty)
    matrix[5] += matrix[3] * (-cx - tx) + matrix[4] * (-cy - ty)
    matrix[2] += cx
    matrix[5] += cy
    return matrix


def affine(pixels: Tensor, matrices: Tensor) -> Tensor:
    """Each image sampled through its inverse affine matrix ((N, 6), torchvision's, float64), nearest, zero
    fill: the tensor affine/rotate (_functional_tensor.py L579–618 `_gen_affine_grid`, L545–576 with fill None)
    of a uint8 image: the matrix cast to float32, the centred pixel grid times it over half the extent."""
    n, _, height, width = pixels.shape
    device = pixels.device
    theta = matrices.to(device=device, dtype=torch.float32).view(n, 2, 3)
    base = torch.empty(1, height, width, 3, dtype=torch.float32, device=device)
    xs = torch.linspace(-width * 0.5 + 0.5, width * 0.5 + 0.5 - 1, steps=width, device=device)
    ys = torch.linspace(-height * 0.5 + 0.5, height * 0.5 + 0.5 - 1, steps=height, device=device)
    base[..., 0].copy_(xs)
    base[..., 1].copy_(ys[:, None])
    base[..., 2].fill_(1)
    rescaled = theta.transpose(1, 2) / torch.tensor([0.5 * width, 0.5 * height], dtype=torch.float32, device=device)
    grid = base.view(1, height * width, 3).expand(n, -1, -1).bmm(rescaled).view(n, height, width, 2)
    return F.grid_sample(pixels, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _matrices(values: Tensor, matrix: Callable[[float], list[float]]) -> Tensor:
    """(N, 6) float64: `matrix(value)` of each image's value, worked out once per distinct value (the values
    come from a magnitude table: two per op in RandAugment, a few in AutoAugment)."""
    out = torch.empty(len(values), 6, dtype=torch.float64)
    for value in values.unique().tolist():
        out[values == value] = torch.tensor(matrix(value), dtype=torch.float64)
    return out


def apply_op(pixels: Tensor, op: str, magnitudes: Tensor) -> Tensor:
    """torchvision's `_apply_op(img, op, magnitude, NEAREST, fill=None)` (autoaugment.py L13–90) of each image of
    `pixels` (N, C, H, W) with its own signed magnitude ((N,), float64): the same functional op, parameters and
    uint8 arithmetic, batched."""
    height, width = pixels.shape[-2:]
    values = magnitudes.to(device="cpu", dtype=torch.float64)
    if op in ("ShearX", "ShearY"):  # shear by atan(m) degrees about the top-left corner
        def shear(m):
            degrees = math.degrees(math.atan(m))
            return _inverse_affine_matrix([-width * 0.5, -height * 0.5], 0.0, [0.0, 0.0], 1.0,
                                          [degrees, 0.0] if op == "ShearX" else [0.0, degrees])
        return affine(pixels, _matrices(values, shear))
    if op in ("TranslateX", "TranslateY"):  # whole pixels, int(m)
        def translate(m):
            shift = [float(int(m)), 0.0] if op == "TranslateX" else [0.0, float(int(m))]
            return _inverse_affine_matrix([0.0, 0.0], 0.0, shift, 1.0, [0.0, 0.0])
        return affine(pixels, _matrices(values, translate))
    if op == "Rotate":  # counter-clockwise by m degrees about the centre (rotate passes −angle)
        return affine(pixels, _matrices(values, lambda m: _inverse_affine_matrix([0.0, 0.0], -m, [0.0, 0.0], 1.0,
                                                                                 [0.0, 0.0])))
    if op == "Brightness":
        return _blend(pixels, torch.zeros((), device=pixels.device), 1.0 + values)
    if op == "Color":  # adjust_saturation: unchanged with one channel
        return pixels if pixels.shape[1] == 1 else _blend(pixels, _grayscale(pixels), 1.0 + values)
    if op == "Contrast":  # towards the float32 mean of the (truncated) grayscale
        return _blend(pixels, _grayscale(pixels).mean((-3, -2, -1), keepdim=True), 1.0 + values)
    if op == "Sharpness":
        return pixels if height <= 2 or width <= 2 else _blend(pixels, _blurred(pixels), 1.0 + values)
    if op == "Posterize":  # keep the top int(m) bits
        step = _column(2.0 ** (8 - values.trunc()), pixels)
        return (pixels / step).floor_() * step
    if op == "Solarize":  # invert the levels ≥ the threshold (compared in float32)
        return torch.where(pixels >= _column(values, pixels), 255 - pixels, pixels)
    if op == "AutoContrast":
        return _autocontrast(pixels)
    if op == "Equalize":
        return equalize(pixels)
    if op == "Invert":
        return 255 - pixels
    if op == "Identity":
        return pixels
    raise ValueError(f"unknown op {op!r}")


def _apply_each(pixels: Tensor, ops: tuple[str, ...], chosen: Tensor, magnitudes: Tensor, active: Tensor) -> Tensor:
    """One step of a policy: the images that drew op `ops[k]` (chosen == k) and apply it (active), each with its
    magnitude; one batched call per op kind, written back in place."""
    for k, op in enumerate(ops):
        rows = ((chosen == k) & active).nonzero()[:, 0]
        if op != "Identity" and len(rows):
            index = rows.to(pixels.device)
            pixels.index_copy_(0, index, apply_op(pixels.index_select(0, index), op, magnitudes[rows]))
    return pixels


def _signed(values: Tensor, ops: tuple[str, ...], chosen: Tensor, negative: Tensor) -> Tensor:
    """Each image's magnitude, negated where its op is signed and its sign draw says so."""
    signed = torch.tensor([op in SIGNED for op in ops])[chosen]
    return torch.where(signed & negative, -values, values)


def rand_augment(x: Tensor, generator: torch.Generator, num_ops: int = 2, magnitude: int = 9,
                 bins: int = 31) -> Tensor:
    """torchvision's RandAugment(num_ops, magnitude, bins) (autoaugment.py L286–376, NEAREST, fill None) of
    each image of a [0, 1] batch from uint8: per image and step an op uniform over its 14 (L356) and a fair sign
    (L360, 1 negates; drawn for every op, used by the signed ones), the op at the magnitude's bin. Draws: the
    ops (N, num_ops), then the signs (N, num_ops)."""
    n, _, height, width = x.shape
    chosen = torch.randint(len(RAND_AUGMENT_OPS), (n, num_ops), generator=generator)
    negative = torch.randint(2, (n, num_ops), generator=generator) == 1
    table = torch.tensor([op_magnitude(op, bins, magnitude, height, width) for op in RAND_AUGMENT_OPS],
                         dtype=torch.float64)
    pixels = to_pixels(x)
    every = torch.ones(n, dtype=torch.bool)
    for step in range(num_ops):
        ops = chosen[:, step]
        values = _signed(table[ops], RAND_AUGMENT_OPS, ops, negative[:, step])
        pixels = _apply_each(pixels, RAND_AUGMENT_OPS, ops, values, every)
    return from_pixels(pixels, x.dtype)


def auto_augment(x: Tensor, generator: torch.Generator, policy: str = "imagenet") -> Tensor:
    """torchvision's AutoAugment(policy) (autoaugment.py L103–283, NEAREST, fill None) of each image of a [0, 1]
    batch from uint8: per image a sub-policy uniform over the 25, then each of its two ops applied where the
    image's uniform draw is ≤ its probability (compared in float32, as the float32 draw with a Python float),
    at its bin of 10, negated where signed and the image's sign draw is 0 (`get_params`, L242–251; L273–276).
    Draws: the sub-policies (N,), the uniforms (N, 2), the signs (N, 2)."""
    policies = AUTO_AUGMENT_POLICIES[policy]
    n, _, height, width = x.shape
    chosen = torch.randint(len(policies), (n,), generator=generator)
    uniforms = torch.rand(n, 2, generator=generator)
    negative = torch.randint(2, (n, 2), generator=generator) == 0
    pixels = to_pixels(x)
    for step in range(2):
        ops = torch.tensor([AUTO_AUGMENT_OPS.index(sub[step][0]) for sub in policies])[chosen]
        probability = torch.tensor([sub[step][1] for sub in policies], dtype=torch.float32)[chosen]
        table = torch.tensor([op_magnitude(sub[step][0], AUTO_AUGMENT_BINS, sub[step][2], height, width)
                              for sub in policies], dtype=torch.float64)
        values = _signed(table[chosen], AUTO_AUGMENT_OPS, ops, negative[:, step])
        pixels = _apply_each(pixels, AUTO_AUGMENT_OPS, ops, values, uniforms[:, step] <= probability)
    return from_pixels(pixels, x.dtype)


def cutout(x: Tensor, generator: torch.Generator, holes: int = 1, length: int = 16) -> Tensor:
    """The official Cutout (src/data/auto_aug.py L7–33) of each image, after ToTensor: per hole a centre (y, x)
    uniform over the pixels, rows [y − length//2, y + length//2) and the same columns, clipped to the image, set
    to 0. Draws: the rows (N, holes), then the columns (N, holes)."""
    n, _, height, width = x.shape
    ys = torch.randint(height, (n, holes), generator=generator)
    xs = torch.randint(width, (n, holes), generator=generator)
    half = length // 2
    rows, cols = torch.arange(height), torch.arange(width)
    in_rows = (rows >= (ys - half).clamp(0, height)[..., None]) & (rows < (ys + half).clamp(0, height)[..., None])
    in_cols = (cols >= (xs - half).clamp(0, width)[..., None]) & (cols < (xs + half).clamp(0, width)[..., None])
    hole = (in_rows[..., :, None] & in_cols[..., None, :]).any(1)
    return x.masked_fill(hole[:, None].to(x.device), 0)
