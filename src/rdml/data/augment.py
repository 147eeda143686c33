"""Training-set augmentation of a whole batch in a few tensor ops on its device, seeded.

The papers' per-sample PIL transforms, done for every image of a batch at once:
- `crop_flip`: RandomCrop(size, padding=4) with zero padding, RandomHorizontalFlip (RDML paper);
- `crop_flip_reflect`: the same with reflection padding (DML paper: "filling missing pixels with
  reflections of original image");
- `crop_flip_rotate`: crop, flip, then RandomRotation(15) with nearest interpolation and black fill,
  as the released RDML code (pytorch-cifar100) does;
- `resized_crop_flip`: RandomResizedCrop to the input's own size (scale (0.08, 1), ratio (3/4, 4/3),
  bilinear), then RandomHorizontalFlip: timm's training transform (Wightman et al. 2021), which the
  Rényi-KD thesis trained with ("rescaling, cropping, and flipping images").
Random draws come from a CPU generator, so a run is reproducible on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_batch", "random_crop", "random_flip", "random_rotate", "resized_crop", "resized_crop_boxes"]

PADDING = 4
DEGREES = 15.0
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
ATTEMPTS = 10


def random_crop(x: Tensor, padding: int, mode: str, generator: torch.Generator) -> Tensor:
    """Pad by `padding` on each side, then cut a random H×W window from each image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode=mode)
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    out = padded.gather(2, rows.expand(n, c, h, w + 2 * padding))
    return out.gather(3, cols.expand(n, c, h, w))


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_rotate(x: Tensor, degrees: float, generator: torch.Generator) -> Tensor:
    """Rotate each image by an angle uniform in [−degrees, degrees] about its centre; black fill."""
    angles = (torch.rand(x.shape[0], generator=generator) * 2 - 1) * degrees * math.pi / 180
    cos, sin = angles.cos(), angles.sin()
    zero = torch.zeros_like(cos)
    # torchvision rotates counter-clockwise for positive angles; the grid maps output to input pixels.
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def resized_crop_boxes(n: int, height: int, width: int, generator: torch.Generator,
                       scale: tuple[float, float] = SCALE, ratio: tuple[float, float] = RATIO) -> Tensor:
    """Per-image crop boxes (N, 4) of int64 (top, left, h, w), distributed as torchvision's
    RandomResizedCrop.get_params: all `ATTEMPTS` draws at once, each image keeping its first box that
    fits, else the central crop with the aspect ratio clamped to `ratio`. Float64, so that the rounding
    to whole pixels happens where torchvision's (Python float) does."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    uniform = torch.rand(2, n, ATTEMPTS, generator=generator, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * uniform[0])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * uniform[1])
    w = torch.round(torch.sqrt(target * aspect)).long()  # round half to even, as Python's round
    h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # the first fitting attempt (0 when none fits)
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    # The fallback depends only on the image's shape: the same central box for every image that needs it.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    fallback = ~fits.any(1)
    h, w = torch.where(fallback, fh, h), torch.where(fallback, fw, w)
    # A uniform integer in [0, H − h] (torch.randint with a per-image bound); the central crop if fallen back.
    top = (torch.rand(n, generator=generator, dtype=torch.float64) * (height - h + 1)).long().clamp_max(height - h)
    left = (torch.rand(n, generator=generator, dtype=torch.float64) * (width - w + 1)).long().clamp_max(width - w)
    top = torch.where(fallback, (height - fh) // 2, top)
    left = torch.where(fallback, (width - fw) // 2, left)
    return torch.stack([top, left, h, w], 1)


def _box_coordinates(start: Tensor, length: Tensor, size: int) -> Tensor:
    """grid_sample's coordinate (align_corners=False) of each output pixel along one axis, (N, size):
    output pixel i samples the box at (i + ½)·length/size − ½, clamped to the box's first and last
    pixel centres, as torch's bilinear resize of the cropped box does."""
    i = torch.arange(size, dtype=torch.float64, device=start.device)
    source = ((i + 0.5) * length[:, None] / size - 0.5).clamp(min=0).minimum(length[:, None] - 1)
    return (2 * (start[:, None] + source) + 1) / size - 1


def resized_crop(x: Tensor, boxes: Tensor) -> Tensor:
    """Resize each image's box (top, left, h, w) to the image's own size, bilinearly, in one grid_sample
    whose grid (float64 until cast) keeps to the box: the same as cropping, then resizing. A box is never
    larger than the image, so this only ever upscales (or copies), where torchvision's antialias does
    nothing: the result is torchvision's resized_crop(..., antialias=True) as well as without."""
    n, _, height, width = x.shape
    top, left, h, w = boxes.to(device=x.device, dtype=torch.float64).unbind(1)
    gx = _box_coordinates(left, w, width).to(x.dtype)[:, None, :].expand(n, height, width)
    gy = _box_coordinates(top, h, height).to(x.dtype)[:, :, None].expand(n, height, width)
    grid = torch.stack([gx, gy], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(x: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """Augment a float batch (N, C, H, W) of [0, 1] pixels before normalisation; `kind` is one of the
    image kind's augmentations in rdml.data.catalog."""
    if kind == "none":
        return x
    if kind == "resized_crop_flip":
        n, _, height, width = x.shape
        return random_flip(resized_crop(x, resized_crop_boxes(n, height, width, generator)), generator)
    mode = "reflect" if kind == "crop_flip_reflect" else "constant"
    x = random_flip(random_crop(x, PADDING, mode, generator), generator)
    if kind == "crop_flip_rotate":
        x = random_rotate(x, DEGREES, generator)
    return x
