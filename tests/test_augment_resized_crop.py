"""The batched `resized_crop_flip` augmentation against torchvision's own RandomResizedCrop as the
independent reference: the same pixels for the same boxes, boxes distributed as get_params draws
them (fallback included), and the whole augmentation reproducible from its generator."""

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from conftest import fallback_box, torchvision_boxes, torchvision_resized_crop
from rdml.data.augment import RATIO, SCALE, augment_batch, resized_crop, resized_crop_boxes

# Max abs difference measured against torchvision: float64 ≤ 7e-15; float32 ≤ 3.6e-6 (both sides
# round the source coordinate in float32, by up to ~size·eps, on a 24×40 image; 2e-7 on 32×32).
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}
SHAPES = [(32, 32), (24, 40), (40, 24)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("height,width", SHAPES)
def test_resized_crop_equals_torchvision_for_the_same_boxes(dtype, height, width):
    x = torch.rand(64, 3, height, width, generator=torch.Generator().manual_seed(0), dtype=dtype)
    boxes = resized_crop_boxes(64, height, width, torch.Generator().manual_seed(1))
    got, expected = resized_crop(x, boxes), torchvision_resized_crop(x, boxes)
    assert got.dtype == dtype and got.shape == x.shape
    assert (got - expected).abs().max() <= TOLERANCE[dtype]
    assert len({tuple(map(int, box)) for box in boxes}) > 32  # per-image boxes, most of them different


def test_resized_crop_of_the_whole_image_is_the_image_and_of_one_pixel_is_constant():
    x = torch.rand(2, 3, 24, 40, dtype=torch.float64)
    boxes = torch.tensor([[0, 0, 24, 40], [5, 7, 1, 1]])
    got = resized_crop(x, boxes)
    assert torch.allclose(got[0], x[0], rtol=0, atol=1e-12)
    assert torch.allclose(got[1], x[1, :, 5:6, 7:8].expand(3, 24, 40), rtol=0, atol=1e-12)


@pytest.mark.parametrize("height,width", SHAPES + [(4, 64)])
def test_boxes_lie_inside_the_image_within_the_ranges_or_are_the_fallback(height, width):
    top, left, h, w = resized_crop_boxes(5000, height, width, torch.Generator().manual_seed(2)).unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (h > 0).all() and (w > 0).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    fallback = (torch.stack([top, left, h, w], 1) == fallback_box(height, width)).all(1)
    # w and h are rounded to whole pixels: the unrounded box is within half a pixel of each side.
    area, ratio = height * width, torch.tensor(RATIO, dtype=torch.float64)
    h, w = h.double(), w.double()
    in_range = (((w - 0.5) * (h - 0.5) <= SCALE[1] * area) & ((w + 0.5) * (h + 0.5) >= SCALE[0] * area)
                & ((w - 0.5) / (h + 0.5) <= ratio[1]) & ((w + 0.5) / (h - 0.5) >= ratio[0]))
    assert (in_range | fallback).all()
    if (height, width) == (4, 64):  # too wide for most attempts: both paths occur
        assert 0.5 < fallback.float().mean() < 1


@pytest.mark.parametrize("height,width,expected", [(4, 64, (0, 29, 4, 5)), (64, 4, (29, 0, 5, 4)),
                                                   (32, 32, (0, 0, 32, 32))])
def test_fallback_is_torchvisions_central_crop(height, width, expected):
    """A scale close to 1 makes every attempt too tall (or too wide) for a 4×64 (64×4) image; an
    impossible scale makes every attempt too big for a square one."""
    scale = (0.9, 1.0) if height != width else (1.5, 2.0)
    boxes = resized_crop_boxes(100, height, width, torch.Generator().manual_seed(3), scale=scale)
    reference = torchvision_boxes(100, height, width, 3, scale=scale)
    assert (boxes == torch.tensor(expected)).all() and (reference == torch.tensor(expected)).all()


@pytest.mark.parametrize("height,width", [(32, 32), (24, 40), (4, 64)])
def test_box_distribution_matches_torchvisions_get_params(height, width):
    """Means of 20000 draws each (fixed seeds, so the verdict is fixed): two-sample z within 4, and a
    Kolmogorov–Smirnov distance of the area fraction below its 0.1% critical value."""
    n = 20000
    ours = resized_crop_boxes(n, height, width, torch.Generator().manual_seed(4)).double()
    theirs = torchvision_boxes(n, height, width, 4).double()

    def statistics(boxes):
        top, left, h, w = boxes.unbind(1)
        return {"area": h * w / (height * width), "log_aspect": torch.log(w / h), "top": top, "left": left}

    ours, theirs = statistics(ours), statistics(theirs)
    for name in ours:
        a, b = ours[name], theirs[name]
        spread = (a.var() / n + b.var() / n).sqrt()
        assert (a.mean() - b.mean()).abs() <= 4 * spread + 1e-12, name
    a, b = ours["area"].sort().values, theirs["area"].sort().values
    points = torch.cat([a, b]).unique()
    distance = (torch.searchsorted(a, points, right=True) - torch.searchsorted(b, points, right=True)).abs().max() / n
    assert distance < 1.95 * math.sqrt(2 / n)


def test_augment_batch_is_torchvisions_resized_crop_then_flip():
    """The same draws in the same order: the boxes, then whether each image flips."""
    x = torch.rand(32, 3, 24, 40, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    got = augment_batch(x, "resized_crop_flip", torch.Generator().manual_seed(6))
    draws = torch.Generator().manual_seed(6)
    boxes = resized_crop_boxes(32, 24, 40, draws)
    flip = torch.rand(32, generator=draws) < 0.5
    expected = torchvision_resized_crop(x, boxes)
    expected = torch.stack([TF.horizontal_flip(e) if f else e for e, f in zip(expected, flip)])
    assert 0 < flip.sum() < 32
    assert (got - expected).abs().max() <= TOLERANCE[torch.float64]


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_augment_batch_is_reproducible_keeps_shape_dtype_device_and_depends_on_the_seed(device):
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(7)).to(device)
    a = augment_batch(x, "resized_crop_flip", torch.Generator().manual_seed(1))
    b = augment_batch(x, "resized_crop_flip", torch.Generator().manual_seed(1))
    c = augment_batch(x, "resized_crop_flip", torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    assert 0 <= a.min() and a.max() <= 1  # bilinear blends of [0, 1] pixels stay in [0, 1]
    if device != "cpu":  # the draws are on the CPU: the same boxes and flips on any device
        cpu = augment_batch(x.cpu(), "resized_crop_flip", torch.Generator().manual_seed(1))
        assert torch.allclose(a.cpu(), cpu, rtol=0, atol=TOLERANCE[torch.float32])
