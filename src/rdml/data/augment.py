"""Training-set augmentation of a whole batch in a few tensor ops on its device, seeded.

The papers' per-sample PIL transforms, done for every image of a batch at once:
- `crop_flip`: RandomCrop(size, padding=4) with zero padding, RandomHorizontalFlip (RDML paper);
- `crop_flip_reflect`: the same with reflection padding (DML paper: "filling missing pixels with
  reflections of original image");
- `crop_flip_rotate`: crop, flip, then RandomRotation(15) with nearest interpolation and black fill,
  as the released RDML code (pytorch-cifar100) does;
- `resized_crop_flip`: RandomResizedCrop to the input's own size (scale (0.08, 1), ratio (3/4, 4/3),
  bilinear), then RandomHorizontalFlip: timm's training transform (Wightman et al. 2021), which the
  Rényi-KD thesis trained with ("rescaling, cropping, and flipping images");
- `flip`: RandomHorizontalFlip alone, the official DML code's re-ID augmentation (rdml.data.market);
- `crop_flip_cutout`, `crop_randaugment`, `crop_autoaugment`: RandomCrop(size, padding=4) with zero padding,
  then flip and Cutout(1 hole, 16 px), torchvision's RandAugment(), or its AutoAugment() (IMAGENET policy): the
  OKDPH students' augmentations (tianlizhang/OKDPH src/data/data_loader.py L171–177, L237–253), each image with
  its own draws (rdml.data.policies).
For photos (rdml.data.photos: each cached warped to one S × S size, with the (H, W) of the reference
photo the released transforms crop), the released RDML code's (parklize/rdml torchversion/dataloader.py)
per-photo transforms, in the reference photo's geometry, resized to the models' input size:
- `resized_crop_flip`: RandomResizedCrop(224) (antialiased bilinear), RandomHorizontalFlip (Flowers102,
  whose reference is the photo after Resize(256));
- `rotate_resized_crop_flip`: RandomRotation(30) (nearest, black fill) first, then the same (DTD).
Random draws come from a CPU generator, so a run is reproducible on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["antialiased_resized_crop", "augment_batch", "random_crop", "random_flip", "random_rotate", "resized_crop",
           "resized_crop_boxes", "rotate"]

PADDING = 4
DEGREES = 15.0
PHOTO_DEGREES = 30.0  # RandomRotation(30) of the released RDML code's DTD transform
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


def resized_crop_boxes(n: int, height: int | Tensor, width: int | Tensor, generator: torch.Generator,
                       scale: tuple[float, float] = SCALE, ratio: tuple[float, float] = RATIO) -> Tensor:
    """Per-image crop boxes (N, 4) of int64 (top, left, h, w), distributed as torchvision's
    RandomResizedCrop.get_params on an image of `height` × `width` (ints, or each image's own as (N,)
    tensors): all `ATTEMPTS` draws at once, each image keeping its first box that fits, else the central
    crop with the aspect ratio clamped to `ratio`. Float64, so that the rounding to whole pixels happens
    where torchvision's (Python float) does; ints and tensors of the same sizes draw the same boxes."""
    height = torch.as_tensor(height, dtype=torch.int64, device="cpu").expand(n)
    width = torch.as_tensor(width, dtype=torch.int64, device="cpu").expand(n)
    area = (height * width).double()[:, None]
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    uniform = torch.rand(2, n, ATTEMPTS, generator=generator, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * uniform[0])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * uniform[1])
    w = torch.round(torch.sqrt(target * aspect)).long()  # round half to even, as Python's round
    h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (w > 0) & (w <= width[:, None]) & (h > 0) & (h <= height[:, None])
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # the first fitting attempt (0 when none fits)
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    # The fallback depends only on the image's shape: the same central box for every image of that shape.
    in_ratio = width.double() / height.double()
    too_tall, too_wide = in_ratio < min(ratio), in_ratio > max(ratio)
    fw = torch.where(too_wide, torch.round(height.double() * max(ratio)).long(), width)
    fh = torch.where(too_tall, torch.round(width.double() / min(ratio)).long(), height)
    fallback = ~fits.any(1)
    h, w = torch.where(fallback, fh, h), torch.where(fallback, fw, w)
    # A uniform integer in [0, H − h] (torch.randint with a per-image bound); the central crop if fallen back.
    top = (torch.rand(n, generator=generator, dtype=torch.float64) * (height - h + 1)).long().minimum(height - h)
    left = (torch.rand(n, generator=generator, dtype=torch.float64) * (width - w + 1)).long().minimum(width - w)
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


def _antialias_weights(start: Tensor, length: Tensor, size: int, extent: int) -> Tensor:
    """(N, size, extent) float64 weights resizing each image's box [start, start + length) along one axis
    of `extent` pixels (fractional, in those pixels) to `size` pixels: torch's antialiased bilinear filter
    (`_upsample_bilinear2d_aa`, `_compute_indices_min_size_weights_aa`, as PIL's resize): output pixel i
    centred at start + (i + ½)·scale, scale = length/size, weighs each pixel the box overlaps by a triangle
    of half-width max(scale, 1) about that centre, normalised over those pixels (the crop's edge)."""
    scale = length / size
    support = scale.clamp(min=1)[:, None, None]
    centre = start[:, None] + (torch.arange(size, dtype=torch.float64, device=start.device) + 0.5) * scale[:, None]
    pixel = torch.arange(extent, dtype=torch.float64, device=start.device)
    weights = (pixel + 0.5 - centre[:, :, None]).abs_().div_(support).neg_().add_(1).clamp_(min=0)
    overlaps = (pixel + 1 > start[:, None]) & (pixel < (start + length)[:, None])
    weights.mul_(overlaps[:, None, :])
    return weights.div_(weights.sum(2, keepdim=True))  # never 0: the pixel under each centre is within ½ of it


def antialiased_resized_crop(x: Tensor, boxes: Tensor, sizes: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize each image's box (top, left, h, w), given in the pixels of its reference photo of `sizes`
    (N, 2) (H, W), to `size`, from the batch (N, C, S_h, S_w) that holds each reference photo warped to
    S_h × S_w (box rows scaled by S_h/H, columns by S_w/W, fractional): torchvision's resized_crop(...,
    antialias=True) of the reference photo, the filter the released code's PIL RandomResizedCrop applies.
    Separable: out = Wy · x · Wxᵀ with per-image weights, two batched matmuls in x's dtype."""
    n, c, height, width = x.shape
    top, left, h, w = boxes.to(device=x.device, dtype=torch.float64).unbind(1)
    ref_h, ref_w = sizes.to(device=x.device, dtype=torch.float64).unbind(1)
    wy = _antialias_weights(top * height / ref_h, h * height / ref_h, size[0], height).to(x.dtype)
    wx = _antialias_weights(left * width / ref_w, w * width / ref_w, size[1], width).to(x.dtype)
    columns = torch.bmm(x.reshape(n, c * height, width), wx.transpose(1, 2)).view(n, c, height, size[1])
    return wy[:, None] @ columns


def rotate(x: Tensor, angles: Tensor, sizes: Tensor | None = None) -> Tensor:
    """Rotate each image counter-clockwise by its angle (degrees, (N,)) about the centre of its reference
    photo of `sizes` (N, 2) (H, W), which the batch's S_h × S_w pixels cover (the image's own size if
    None), nearest sampling, black fill: torchvision's rotate(img, angle, NEAREST, fill=0), RandomRotation's
    defaults, of the reference photo. torchvision's grid, with each image's matrix: the inverse rotation in
    reference pixels [[cos, −sin], [sin, cos]] over half the reference's extent, applied to the output
    pixels' centred coordinates scaled to reference pixels (H/S_h, W/S_w; exactly 1 when unwarped)."""
    n, _, height, width = x.shape
    reference = torch.tensor([[height, width]]) if sizes is None else sizes
    ref_h, ref_w = reference.to(device=x.device, dtype=torch.float64).expand(n, 2).unbind(1)
    radians = angles.to(device=x.device, dtype=torch.float64) * (math.pi / 180)
    cos, sin = radians.cos(), radians.sin()
    # theta transposed (N, 3, 2), cast to x's dtype and divided by half the extent as torchvision's
    # _affine_grid does; then its x and y rows scaled from cache to reference pixels.
    zero = torch.zeros_like(cos)
    theta_t = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1), torch.stack([zero, zero], 1)], 1)
    theta_t = theta_t.to(x.dtype) / torch.stack([0.5 * ref_w, 0.5 * ref_h], 1).to(x.dtype)[:, None, :]
    theta_t = theta_t * torch.stack([ref_w / width, ref_h / height, torch.ones_like(ref_w)], 1).to(x.dtype)[:, :, None]
    base = torch.empty(1, height, width, 3, dtype=x.dtype, device=x.device)
    base[..., 0].copy_(torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, steps=width, device=x.device))
    base[..., 1].copy_(torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, steps=height, device=x.device)[:, None])
    base[..., 2].fill_(1)
    grid = base.view(1, height * width, 3).expand(n, -1, -1).bmm(theta_t).view(n, height, width, 2)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def augment_batch(x: Tensor, kind: str, generator: torch.Generator, sizes: Tensor | None = None,
                  size: tuple[int, int] | None = None) -> Tensor:
    """Augment a float batch (N, C, H, W) of [0, 1] pixels before normalisation; `kind` is one of the
    data kind's augmentations in rdml.data.catalog. `sizes` (N, 2): each image's reference (H, W) where
    the batch holds photos warped to one size; `size`: the output's (H, W), the batch's own if None."""
    if kind == "none":
        return x
    if kind == "flip":  # pedestrian crops, already at the models' input size (Dataset.inputs)
        return random_flip(x, generator)
    n, _, height, width = x.shape
    size = (height, width) if size is None else tuple(size)
    if sizes is not None or kind == "rotate_resized_crop_flip" or size != (height, width):
        # Photos: the released transforms of each reference photo (the image itself where no size is given).
        sizes = torch.tensor([[height, width]]).expand(n, 2) if sizes is None else sizes.cpu()
        return _augment_photos(x, kind, generator, sizes, size)
    if kind == "resized_crop_flip":
        return random_flip(resized_crop(x, resized_crop_boxes(n, height, width, generator)), generator)
    if kind in ("crop_flip_cutout", "crop_randaugment", "crop_autoaugment"):
        from rdml.data import policies

        x = random_crop(x, PADDING, "constant", generator)
        if kind == "crop_flip_cutout":
            return policies.cutout(random_flip(x, generator), generator)
        if kind == "crop_randaugment":
            return policies.rand_augment(x, generator)
        return policies.auto_augment(x, generator)
    mode = "reflect" if kind == "crop_flip_reflect" else "constant"
    x = random_flip(random_crop(x, PADDING, mode, generator), generator)
    if kind == "crop_flip_rotate":
        x = random_rotate(x, DEGREES, generator)
    return x


def _augment_photos(x: Tensor, kind: str, generator: torch.Generator, sizes: Tensor, size: tuple[int, int]) -> Tensor:
    """The released transforms of each reference photo of `sizes` (N, 2, on the CPU), output `size`; draws
    in their order: the angles (uniform in [−PHOTO_DEGREES, PHOTO_DEGREES], RandomRotation's), the boxes,
    the flips. The ops run on x's device."""
    if kind not in ("resized_crop_flip", "rotate_resized_crop_flip"):
        raise ValueError(f"augmentation {kind!r} does not apply to photos cached at one size")
    if kind == "rotate_resized_crop_flip":
        angles = (torch.rand(x.shape[0], generator=generator, dtype=torch.float64) * 2 - 1) * PHOTO_DEGREES
        x = rotate(x, angles, sizes)
    boxes = resized_crop_boxes(x.shape[0], sizes[:, 0], sizes[:, 1], generator)
    return random_flip(antialiased_resized_crop(x, boxes, sizes, size), generator)
