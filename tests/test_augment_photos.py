"""The photos kind's batched augmentations against torchvision as the independent reference: the
released RDML code's DTD transform (RandomRotation(30) → RandomResizedCrop(224) → flip) and Flowers102
transform (RandomResizedCrop(224) → flip on the Resize(256) photo), done on photos cached warped to one
size with each reference photo's (H, W). Where the batch is the reference photo itself, each op is
torchvision's on the same parameters; where it is warped, it is torchvision's geometry of the reference."""

import math

import pytest
import torch
import torchvision.transforms.v2 as v2
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from conftest import fallback_box, torchvision_boxes, torchvision_resized_crop
from rdml.data.augment import (PHOTO_DEGREES, antialiased_resized_crop, augment_batch, random_flip, resized_crop,
                               resized_crop_boxes, rotate)

# Max abs difference measured against torchvision on the same parameters (images of ≤ 80 px): float64
# ≤ 9e-15; float32 ≤ 5e-6. torchvision's float32 kernel rounds each output pixel's source centre to
# float32 (up to ½ ulp of the coordinate, ~size·3e-8 px), ours works them out in float64: at 448 → 224
# px torchvision's float32 is 4e-5 from its own float64 result, and ours 2e-7 (the last test below).
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}
SHAPES = [(64, 64), (48, 80), (80, 48)]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


def reference_sizes(n, height, width):
    return torch.tensor([[height, width]]).expand(n, 2)


def torchvision_rotate(x, angles):
    return torch.stack([TF.rotate(image, float(angle), interpolation=InterpolationMode.NEAREST, fill=0)
                        for image, angle in zip(x, angles)])


# Boxes for per-image reference sizes


def test_per_image_sizes_draw_the_scalar_calls_boxes_and_fall_back_per_image():
    """The same sizes as tensors draw exactly the boxes of the scalar call (the images kind's draws);
    in a mixed batch each image's box lies in its own image, and with a scale close to 1 the wide 4×64
    image falls back to its own central crop while the square one never needs to."""
    same = resized_crop_boxes(500, torch.full((500,), 24), torch.full((500,), 40), torch.Generator().manual_seed(0))
    assert torch.equal(same, resized_crop_boxes(500, 24, 40, torch.Generator().manual_seed(0)))
    sizes = torch.tensor([[4, 64], [64, 4], [32, 32], [375, 500]]).repeat(250, 1)
    top, left, h, w = resized_crop_boxes(1000, sizes[:, 0], sizes[:, 1], torch.Generator().manual_seed(1),
                                         scale=(0.9, 1.0)).unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (h > 0).all() and (w > 0).all()
    assert (top + h <= sizes[:, 0]).all() and (left + w <= sizes[:, 1]).all()
    boxes = torch.stack([top, left, h, w], 1)
    assert (boxes[0::4] == torch.tensor([0, 29, 4, 5])).all() and (boxes[1::4] == torch.tensor([29, 0, 5, 4])).all()
    assert not (boxes[2::4] == fallback_box(32, 32)).all(1).all()


@pytest.mark.parametrize("height,width", [(300, 640), (640, 160), (256, 341)])
def test_box_distribution_per_image_size_matches_torchvisions_get_params(height, width):
    """One batch of three reference sizes interleaved (a wide, a very tall and a Flowers-like one); the rows
    of each size against 20000 get_params draws on an image of that size (fixed seeds, so the verdict is
    fixed): means of the area fraction, log aspect, top, left and the fallback rate within 4 two-sample
    standard errors, and a Kolmogorov–Smirnov distance of the area fraction below its 0.1% critical value.
    300×640 (0.4 %) and 640×160 (8 %) have attempts miss often enough that their fallback boxes are drawn."""
    n, shapes = 20000, [(300, 640), (640, 160), (256, 341)]
    sizes = torch.tensor(shapes).repeat(n, 1)
    mine = torch.tensor([(s[0], s[1]) == (height, width) for s in shapes]).repeat(n)
    ours = resized_crop_boxes(3 * n, sizes[:, 0], sizes[:, 1], torch.Generator().manual_seed(4))[mine]
    theirs = torchvision_boxes(n, height, width, 4)
    fallback = fallback_box(height, width)

    def statistics(boxes):
        top, left, h, w = boxes.double().unbind(1)
        return {"area": h * w / (height * width), "log_aspect": torch.log(w / h), "top": top, "left": left,
                "fallback": (boxes == fallback).all(1).double()}

    ours, theirs = statistics(ours), statistics(theirs)
    for name in ours:
        a, b = ours[name], theirs[name]
        spread = (a.var() / n + b.var() / n).sqrt()
        assert (a.mean() - b.mean()).abs() <= 4 * spread + 1e-12, name
    if height != 256:
        assert ours["fallback"].mean() > 0.002 and theirs["fallback"].mean() > 0.002
    a, b = ours["area"].sort().values, theirs["area"].sort().values
    points = torch.cat([a, b]).unique()
    distance = (torch.searchsorted(a, points, right=True) - torch.searchsorted(b, points, right=True)).abs().max() / n
    assert distance < 1.95 * math.sqrt(2 / n)


# The antialiased resized crop


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("height,width", SHAPES)
@pytest.mark.parametrize("size", [(24, 20), (96, 112)], ids=["downscale", "upscale"])
def test_antialiased_resized_crop_equals_torchvision_when_the_batch_is_the_reference(dtype, height, width, size):
    """Boxes larger than the output (antialiasing matters: the triangle widens with the scale) and
    smaller (plain bilinear), on square and non-square references."""
    x = torch.rand(64, 3, height, width, generator=torch.Generator().manual_seed(0), dtype=dtype)
    boxes = resized_crop_boxes(64, height, width, torch.Generator().manual_seed(1))
    got = antialiased_resized_crop(x, boxes, reference_sizes(64, height, width), size)
    expected = torchvision_resized_crop(x, boxes, size)
    assert got.dtype == dtype and got.shape == (64, 3, *size)
    assert (got - expected).abs().max() <= TOLERANCE[dtype]
    larger = (boxes[:, 2] > size[0]) & (boxes[:, 3] > size[1])
    assert larger.float().mean() > 0.5 if size == (24, 20) else not larger.any()


def test_antialiased_resized_crop_of_a_warped_batch_is_torchvisions_on_the_scaled_box():
    """Reference photos of several sizes cached at 48×48 by repeating each pixel (48/H times down,
    48/W across): each box, scaled by 48/H and 48/W, falls on whole cache pixels, where the op must be
    torchvision's resized_crop of the cache on that scaled box."""
    sizes = torch.tensor([[16, 24], [24, 16], [48, 48], [12, 48], [48, 8], [24, 24]]).repeat(6, 1)
    n = len(sizes)
    references = [torch.rand(3, h, w, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
                  for i, (h, w) in enumerate(sizes.tolist())]
    x = torch.stack([r.repeat_interleave(48 // r.shape[1], 1).repeat_interleave(48 // r.shape[2], 2) for r in references])
    boxes = resized_crop_boxes(n, sizes[:, 0], sizes[:, 1], torch.Generator().manual_seed(2))
    for size in [(20, 28), (72, 64)]:
        got = antialiased_resized_crop(x, boxes, sizes, size)
        scaled = boxes * (48 // sizes).repeat(1, 2)
        assert (got - torchvision_resized_crop(x, scaled, size)).abs().max() <= TOLERANCE[torch.float64]


def test_antialiased_resized_crop_in_float32_is_torchvisions_float64_at_full_size():
    """The real sizes: 448-px cache, 224-px output. Ours in float32 is within 2e-7 of torchvision's float64
    result (float64 weights, cast); torchvision's own float32 kernel is up to 4e-5 from it."""
    x = torch.rand(8, 3, 448, 448, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    boxes = resized_crop_boxes(8, 448, 448, torch.Generator().manual_seed(4))
    got = antialiased_resized_crop(x.float(), boxes, reference_sizes(8, 448, 448), (224, 224))
    assert (got.double() - torchvision_resized_crop(x, boxes, (224, 224))).abs().max() <= 1e-6


# Rotation


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("height,width", SHAPES + [(375, 500)])
def test_rotate_equals_torchvision_when_the_batch_is_the_reference(dtype, height, width):
    """Exactly: the same grid to the last bit (torchvision's matrix, cast, over half the extent, times
    the centred pixel coordinates), so nearest sampling picks the same pixels, ties included."""
    x = torch.rand(16, 3, height, width, generator=torch.Generator().manual_seed(5), dtype=dtype)
    angles = (torch.rand(16, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 2 - 1) * PHOTO_DEGREES
    got = rotate(x, angles, reference_sizes(16, height, width))
    assert torch.equal(got, torchvision_rotate(x, angles))
    assert torch.equal(rotate(x, angles), got)  # no sizes: the image is its own reference
    assert ((got == 0).all(1).float().mean() > 0.01)  # black corners


def test_rotate_of_a_uniformly_warped_batch_is_torchvisions_of_the_cache():
    """A 24×24 reference cached at 48×48 is the same geometry, scaled: rotating about its centre is
    torchvision's rotation of the cache, to the bit (the scalings by 2 are exact)."""
    x = torch.rand(16, 3, 48, 48, generator=torch.Generator().manual_seed(7))
    angles = (torch.rand(16, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 2 - 1) * PHOTO_DEGREES
    assert torch.equal(rotate(x, angles, reference_sizes(16, 24, 24)), torchvision_rotate(x, angles))


@pytest.mark.parametrize("height,width", [(30, 60), (60, 30)])
def test_rotate_of_a_warped_batch_turns_the_reference_photo(height, width):
    """Each cache pixel holds the reference coordinates (x, y) of its centre and a 1: after the rotation
    every output pixel holds the point it came from, which must be the output pixel's centre turned
    clockwise by the angle about the reference's centre (the inverse of the counter-clockwise turn) to
    within half a cache pixel along each axis (nearest sampling), in reference pixels; black outside."""
    s, n = 48, 32
    centre = (torch.arange(s, dtype=torch.float64) + 0.5)
    xs, ys = (centre * width / s)[None, :].expand(s, s), (centre * height / s)[:, None].expand(s, s)
    x = torch.stack([xs, ys, torch.ones(s, s, dtype=torch.float64)])[None].expand(n, 3, s, s)
    angles = (torch.rand(n, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 2 - 1) * PHOTO_DEGREES
    got = rotate(x, angles, reference_sizes(n, height, width))
    a = (angles * math.pi / 180)[:, None, None]
    u, v = xs - width / 2, ys - height / 2  # centred; y points down, so [[cos, −sin], [sin, cos]] turns clockwise
    source_x = width / 2 + a.cos() * u - a.sin() * v
    source_y = height / 2 + a.sin() * u + a.cos() * v
    inside = got[:, 2] == 1
    half = 0.5 + 1e-9
    assert ((got[:, 0] - source_x).abs() <= half * width / s)[inside].all()
    assert ((got[:, 1] - source_y).abs() <= half * height / s)[inside].all()
    margin_x, margin_y = width / s, height / s  # a cache pixel
    well_inside = ((source_x > margin_x) & (source_x < width - margin_x)
                   & (source_y > margin_y) & (source_y < height - margin_y))
    assert inside[well_inside].all() and (got.transpose(0, 1)[:, ~inside] == 0).all()
    assert 0.01 < (~inside).float().mean() < 0.5


# augment_batch on photos


class ReplayedRotation(v2.RandomRotation):
    """The released DTD transform's RandomRotation(30), with its defaults, drawing the given angle."""

    def __init__(self, angle):
        super().__init__(PHOTO_DEGREES)
        self.angle = angle

    def make_params(self, flat_inputs):
        return {"angle": self.angle}


class ReplayedResizedCrop(v2.RandomResizedCrop):
    """RandomResizedCrop(size), with its defaults (bilinear, antialias), drawing the given box."""

    def __init__(self, size, box):
        super().__init__(size)
        self.box = box

    def make_params(self, flat_inputs):
        return dict(zip(("top", "left", "height", "width"), map(int, self.box)))


def replayed_draws(kind, n, sizes, seed):
    """The angles, boxes and flips augment_batch draws, in its order, from the same seed."""
    draws = torch.Generator().manual_seed(seed)
    angles = None
    if kind == "rotate_resized_crop_flip":
        angles = (torch.rand(n, generator=draws, dtype=torch.float64) * 2 - 1) * PHOTO_DEGREES
    boxes = resized_crop_boxes(n, sizes[:, 0], sizes[:, 1], draws)
    flips = torch.rand(n, generator=draws) < 0.5
    return angles, boxes, flips


@pytest.mark.parametrize("kind", ["rotate_resized_crop_flip", "resized_crop_flip"])
def test_augment_batch_is_the_released_compose_replayed_on_a_square_reference(kind):
    """torchvision's Compose of the released transforms (RandomRotation(30) → RandomResizedCrop →
    RandomHorizontalFlip; no rotation for Flowers102) on each reference photo, replayed with the
    parameters augment_batch draws: the same pixels, boxes larger and smaller than the output."""
    n, side, size = 32, 96, (40, 40)
    x = torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    sizes = reference_sizes(n, side, side)
    got = augment_batch(x, kind, torch.Generator().manual_seed(11), sizes=sizes, size=size)
    angles, boxes, flips = replayed_draws(kind, n, sizes, 11)
    expected = []
    for i in range(n):
        steps = [] if angles is None else [ReplayedRotation(float(angles[i]))]
        steps += [ReplayedResizedCrop(size, boxes[i]), v2.RandomHorizontalFlip(p=float(flips[i]))]
        expected.append(v2.Compose(steps)(x[i]))
    assert 0 < flips.sum() < n and ((boxes[:, 2] > 40) & (boxes[:, 3] > 40)).any() and (boxes[:, 2] < 40).any()
    assert (got - torch.stack(expected)).abs().max() <= TOLERANCE[torch.float64]


@pytest.mark.parametrize("kind", ["rotate_resized_crop_flip", "resized_crop_flip"])
@pytest.mark.parametrize("device", DEVICES)
def test_augment_batch_on_photos_is_reproducible_shaped_and_device_independent(kind, device):
    """Cached photos at 448 px of their reference sizes (sizes on the device too, as Dataset.to puts
    them) to the models' 224 px: reproducible from the generator, different for another seed, and the
    same on any device (the draws are on the CPU)."""
    x = torch.rand(4, 3, 448, 448, generator=torch.Generator().manual_seed(12)).to(device)
    sizes = torch.tensor([[375, 500], [500, 375], [256, 341], [640, 480]], device=device)
    a = augment_batch(x, kind, torch.Generator().manual_seed(1), sizes=sizes, size=(224, 224))
    b = augment_batch(x, kind, torch.Generator().manual_seed(1), sizes=sizes, size=(224, 224))
    c = augment_batch(x, kind, torch.Generator().manual_seed(2), sizes=sizes, size=(224, 224))
    assert a.shape == (4, 3, 224, 224) and a.dtype == x.dtype and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert -1e-6 <= a.min() and a.max() <= 1 + 1e-6  # convex blends of [0, 1] pixels (and black)
    cpu = augment_batch(x.cpu(), kind, torch.Generator().manual_seed(1), sizes=sizes.cpu(), size=(224, 224))
    assert (a.cpu() - cpu).abs().max() <= TOLERANCE[torch.float32]


def test_augment_batch_draws_angles_then_boxes_then_flips():
    """On a warped batch: the ops composed by hand on draws replayed in that order give the same result."""
    x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(13))
    sizes = torch.tensor([[30, 50], [50, 30], [64, 64], [100, 80]]).repeat(2, 1)
    got = augment_batch(x, "rotate_resized_crop_flip", torch.Generator().manual_seed(14), sizes=sizes, size=(32, 32))
    angles, boxes, flips = replayed_draws("rotate_resized_crop_flip", 8, sizes, 14)
    expected = antialiased_resized_crop(rotate(x, angles, sizes), boxes, sizes, (32, 32))
    expected = torch.where(flips[:, None, None, None], expected.flip(3), expected)
    assert torch.equal(got, expected)


def test_without_sizes_the_images_path_and_its_draws_are_unchanged():
    """The images kind (sizes None, size the batch's own) keeps its grid_sample resized crop and its draws."""
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(15))
    draws = torch.Generator().manual_seed(16)
    got = augment_batch(x, "resized_crop_flip", draws, sizes=None, size=(32, 32))
    replay = torch.Generator().manual_seed(16)
    expected = random_flip(resized_crop(x, resized_crop_boxes(16, 32, 32, replay)), replay)
    assert torch.equal(got, expected) and torch.equal(torch.rand(4, generator=draws), torch.rand(4, generator=replay))


def test_other_augmentations_are_refused_for_photos():
    with pytest.raises(ValueError, match="crop_flip"):
        augment_batch(torch.rand(2, 3, 8, 8), "crop_flip", torch.Generator(), sizes=torch.tensor([[8, 8], [8, 8]]))
