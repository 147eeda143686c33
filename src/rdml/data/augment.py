"""Training-set augmentation of a whole batch in a few tensor ops on its device, seeded.

The papers' per-sample PIL transforms, done for every image of a batch at once:
- `crop_flip`: RandomCrop(size, padding=4) with zero padding, RandomHorizontalFlip (RDML paper);
- `crop_flip_reflect`: the same with reflection padding (DML paper: "filling missing pixels with
  reflections of original image");
- `crop_flip_rotate`: crop, flip, then RandomRotation(15) with nearest interpolation and black fill,
  as the released RDML code (pytorch-cifar100) does.
Random draws come from a CPU generator, so a run is reproducible on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_batch", "random_crop", "random_flip", "random_rotate"]

PADDING = 4
DEGREES = 15.0


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


def augment_batch(x: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """Augment a float batch (N, C, H, W) of [0, 1] pixels before normalisation; `kind` is one of the
    image kind's augmentations in rdml.data.catalog."""
    if kind == "none":
        return x
    mode = "reflect" if kind == "crop_flip_reflect" else "constant"
    x = random_flip(random_crop(x, PADDING, mode, generator), generator)
    if kind == "crop_flip_rotate":
        x = random_rotate(x, DEGREES, generator)
    return x
