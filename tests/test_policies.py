"""OKDPH's per-student augmentations (rdml.data.policies) against torchvision and the official code as the
independent references: each op against transforms.functional (what RandAugment and AutoAugment call) on
the same uint8 images and parameters, exactly; rdml's per-image draws replayed through torchvision's own
RandAugment and AutoAugment `forward` (torch.randint monkeypatched, get_params overridden), exactly; Cutout
against the official class with numpy's draws replayed; augment_batch's three kinds against the official
Compose replayed. The PIL path the official code ran and transforms.v2 are measured, not matched."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
import torchvision.transforms.v2.functional as TF2
from torchvision.transforms import AutoAugment, AutoAugmentPolicy, InterpolationMode, RandAugment

from rdml.data import policies
from rdml.data.augment import augment_batch
from rdml.data.catalog import KINDS
from rdml.data.policies import (AUTO_AUGMENT_OPS, AUTO_AUGMENT_POLICIES, RAND_AUGMENT_OPS, SIGNED, apply_op,
                                auto_augment, cutout, op_magnitude, rand_augment)

NEAREST = InterpolationMode.NEAREST
KINDS_ADDED = ("crop_flip_cutout", "crop_randaugment", "crop_autoaugment")
DEVICES = ["cpu",
           pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


def images(n, seed, shape=(3, 32, 32)):
    """uint8 images that exercise every op: each channel in its own random range (some constant, some the
    full range), half of them smooth (bilinear upsampled 8×8 noise), half pixel noise."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    low = torch.randint(0, 160, (n, c, 1, 1), generator=g).float()
    span = torch.randint(0, 256, (n, c, 1, 1), generator=g).float().minimum(255 - low)
    span = torch.where(torch.rand(n, c, 1, 1, generator=g) < 0.1, 0.0, span)
    smooth = F.interpolate(torch.rand(n, c, 8, 8, generator=g), size=(h, w), mode="bilinear", align_corners=False)
    mix = torch.where(torch.rand(n, 1, 1, 1, generator=g) < 0.5, smooth, torch.rand(n, c, h, w, generator=g))
    return (low + span * mix).round().to(torch.uint8)


def torchvision_op(img, op, m):
    """torchvision's `_apply_op(img, op, m, NEAREST, fill=None)` (transforms/autoaugment.py L13–90) spelt out:
    the transforms.functional call with its parameters."""
    if op in ("ShearX", "ShearY"):
        degrees = math.degrees(math.atan(m))
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, interpolation=NEAREST, fill=None, center=[0, 0],
                         shear=[degrees, 0.0] if op == "ShearX" else [0.0, degrees])
    if op in ("TranslateX", "TranslateY"):
        return TF.affine(img, angle=0.0, translate=[int(m), 0] if op == "TranslateX" else [0, int(m)], scale=1.0,
                         interpolation=NEAREST, shear=[0.0, 0.0], fill=None)
    calls = {"Rotate": lambda: TF.rotate(img, m, interpolation=NEAREST, fill=None),
             "Brightness": lambda: TF.adjust_brightness(img, 1.0 + m),
             "Color": lambda: TF.adjust_saturation(img, 1.0 + m),
             "Contrast": lambda: TF.adjust_contrast(img, 1.0 + m),
             "Sharpness": lambda: TF.adjust_sharpness(img, 1.0 + m),
             "Posterize": lambda: TF.posterize(img, int(m)),
             "Solarize": lambda: TF.solarize(img, m),
             "AutoContrast": lambda: TF.autocontrast(img),
             "Equalize": lambda: TF.equalize(img),
             "Invert": lambda: TF.invert(img),
             "Identity": lambda: img}
    return calls[op]()


def v2_op(img, op, m):
    """The same op through transforms.v2.functional."""
    if op in ("ShearX", "ShearY"):
        degrees = math.degrees(math.atan(m))
        return TF2.affine(img, angle=0.0, translate=[0, 0], scale=1.0, interpolation=NEAREST, fill=None, center=[0, 0],
                          shear=[degrees, 0.0] if op == "ShearX" else [0.0, degrees])
    if op in ("TranslateX", "TranslateY"):
        return TF2.affine(img, angle=0.0, translate=[int(m), 0] if op == "TranslateX" else [0, int(m)], scale=1.0,
                          interpolation=NEAREST, shear=[0.0, 0.0], fill=None)
    calls = {"Rotate": lambda: TF2.rotate(img, m, interpolation=NEAREST, fill=None),
             "Brightness": lambda: TF2.adjust_brightness(img, 1.0 + m),
             "Color": lambda: TF2.adjust_saturation(img, 1.0 + m),
             "Contrast": lambda: TF2.adjust_contrast(img, 1.0 + m),
             "Sharpness": lambda: TF2.adjust_sharpness(img, 1.0 + m),
             "Posterize": lambda: TF2.posterize(img, int(m)),
             "Solarize": lambda: TF2.solarize(img, m),
             "AutoContrast": lambda: TF2.autocontrast(img),
             "Equalize": lambda: TF2.equalize(img),
             "Invert": lambda: TF2.invert(img),
             "Identity": lambda: img}
    return calls[op]()


def okdph_magnitudes(op, height=32, width=32):
    """The signed magnitudes the OKDPH students use: RandAugment's bin 9 of 31 and AutoAugment IMAGENET's bins."""
    values = {op_magnitude(op, 31, 9, height, width)} if op in RAND_AUGMENT_OPS else set()
    values |= {op_magnitude(op, 10, b, height, width) for sub in AUTO_AUGMENT_POLICIES["imagenet"] for o, _, b in sub
               if o == op}
    return sorted(values | ({-v for v in values} if op in SIGNED else set()))


def all_magnitudes(op, height, width):
    """Every signed magnitude of RandAugment's 31 bins, and AutoAugment's bins in all three policies."""
    values = {op_magnitude(op, 31, b, height, width) for b in range(31)}
    values |= {op_magnitude(op, 10, b, height, width) for policy in AUTO_AUGMENT_POLICIES.values() for sub in policy
               for o, _, b in sub if o == op}
    return sorted(values | ({-v for v in values} if op in SIGNED else set()))


# The tables


def test_op_lists_magnitude_tables_and_policies_are_torchvisions():
    for transform, ops, bins in ((RandAugment(), RAND_AUGMENT_OPS, 31), (AutoAugment(), AUTO_AUGMENT_OPS, 10)):
        space = transform._augmentation_space(bins, (24, 40))
        assert tuple(space) == ops
        for op, (table, signed) in space.items():
            assert signed == (op in SIGNED), op
            expected = [float(v) for v in table] if table.ndim else [0.0] * bins
            assert [op_magnitude(op, bins, b, 24, 40) for b in range(bins)] == expected, op
    for name in AUTO_AUGMENT_POLICIES:
        theirs = AutoAugment(AutoAugmentPolicy(name)).policies
        assert AUTO_AUGMENT_POLICIES[name] == tuple(tuple(sub) for sub in theirs)
    assert AutoAugment().policy == AutoAugmentPolicy.IMAGENET  # the default the official code used


# Each op


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 24, 40)])
@pytest.mark.parametrize("op", AUTO_AUGMENT_OPS + ("Identity",))
def test_each_op_equals_torchvision_functional_on_uint8(op, shape):
    """Every magnitude RandAugment's 31 bins and the three AutoAugment policies give the op, each image of one
    batch with its own (so the per-image parameters are batched), on colour, grey and non-square images:
    exactly transforms.functional on the uint8 image (equal pixel values, and equal [0, 1] floats after
    ToTensor's /255)."""
    values = all_magnitudes(op, *shape[1:])
    x = images(2 * len(values), 1, shape)
    magnitudes = torch.tensor(values, dtype=torch.float64).repeat(2)
    got = apply_op(x.float(), op, magnitudes)
    expected = torch.stack([torchvision_op(img, op, float(m)) for img, m in zip(x, magnitudes)])
    assert torch.equal(got, expected.float())
    assert torch.equal(policies.from_pixels(got, torch.float32), expected.float().div(255))


def test_to_pixels_recovers_the_uint8_values_of_to_tensor_floats():
    x = images(64, 2)
    floats = x.float().div(255)  # rdml.data.base's x.float() / 255, ToTensor's img.float().div(255)
    assert torch.equal(policies.to_pixels(floats), x.float())
    assert torch.equal(policies.to_pixels(floats.double()), x.float())
    assert torch.equal(policies.from_pixels(x.float(), torch.float32), floats)


V2_EXACT = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Posterize", "Solarize", "Equalize",
            "Invert")


def test_transforms_v2_agrees_except_for_a_level_in_four_ops():
    """transforms.v2.functional (which v2's RandAugment calls; the official code used v1's) on the same uint8
    images: the geometric, Brightness, Posterize, Solarize, Equalize and Invert ops equal; Color, Contrast,
    Sharpness and AutoContrast differ by at most one level on some pixels (its own float arithmetic)."""
    x = images(64, 3)
    for op in AUTO_AUGMENT_OPS:
        for m in okdph_magnitudes(op):
            ours = apply_op(x.float(), op, torch.full((len(x),), m, dtype=torch.float64))
            theirs = torch.stack([v2_op(img, op, m) for img in x]).float()
            difference = (ours - theirs).abs().max()
            assert difference == 0 if op in V2_EXACT else difference <= 1, (op, m)


# The PIL path: measured (per op: largest difference in levels, largest fraction of pixels that differ,
# over the OKDPH magnitudes on 64 images of `images`)
# (256 images: Color 0.42, Contrast 0.51 at factor 0.2, Sharpness 0.021, AutoContrast 0.004).
PIL_DIFFERENCE = {"Color": (1, 0.6), "Contrast": (1, 0.6), "Sharpness": (1, 0.05), "AutoContrast": (1, 0.01)}


def test_the_pil_path_differs_only_by_a_level_in_four_ops():
    """The official code ran RandAugment and AutoAugment on PIL images. On the magnitudes OKDPH uses, the PIL
    path gives exactly the tensor path's pixels for the geometric ops (PIL takes the pixel that holds the mapped
    centre, the tensor path rounds the mapped coordinate half to even: they part only where a shear puts a row
    on a half, as 0.2 does below, and m = 0.09, 1/6 and the rotations do not), Brightness, Posterize, Solarize,
    Equalize and Invert; Color and Contrast (PIL's rounded grayscale and rounded mean against a truncated
    grayscale and a float mean), Sharpness (PIL blends from the blurred image) and AutoContrast (PIL's lookup
    table) are within a level, on up to half the pixels for Color and Contrast at factor 0.2."""
    x = images(64, 4)
    for op in AUTO_AUGMENT_OPS:
        worst, fraction = 0, 0.0
        for m in okdph_magnitudes(op):
            ours = apply_op(x.float(), op, torch.full((len(x),), m, dtype=torch.float64))
            pil = torch.stack([TF.pil_to_tensor(torchvision_op(TF.to_pil_image(img), op, m)) for img in x]).float()
            difference = (ours - pil).abs()
            worst, fraction = max(worst, difference.max().item()), max(fraction, (difference > 0).float().mean().item())
        bound = PIL_DIFFERENCE.get(op, (0, 0.0))
        assert worst <= bound[0] and fraction <= bound[1], (op, worst, fraction)
        if op in PIL_DIFFERENCE:
            assert worst == 1 and fraction > 0


def test_pil_and_tensor_shears_differ_on_exact_halves():
    """Why the bound above holds only for the magnitudes used: a shear of 0.2 (CIFAR10 and SVHN policies'
    bins) puts rows on exact halves, where PIL's floor and torch's round-half-to-even pick neighbours."""
    x = images(32, 5)
    ours = apply_op(x.float(), "ShearX", torch.full((32,), 0.2, dtype=torch.float64))
    pil = torch.stack([TF.pil_to_tensor(torchvision_op(TF.to_pil_image(img), "ShearX", 0.2)) for img in x]).float()
    assert 0.01 < (ours != pil).float().mean() < 0.2


# The draws, replayed through torchvision's own transforms


def rand_augment_draws(n, num_ops, seed):
    """What rand_augment draws, in its order: the ops (N, num_ops), then the signs (N, num_ops)."""
    draws = torch.Generator().manual_seed(seed)
    ops = torch.randint(len(RAND_AUGMENT_OPS), (n, num_ops), generator=draws)
    return ops, torch.randint(2, (n, num_ops), generator=draws)


def auto_augment_draws(n, seed):
    """What auto_augment draws, in its order: the sub-policies (N,), the uniforms (N, 2), the signs (N, 2)."""
    draws = torch.Generator().manual_seed(seed)
    chosen = torch.randint(25, (n,), generator=draws)
    return chosen, torch.rand(n, 2, generator=draws), torch.randint(2, (n, 2), generator=draws)


def replayed_randint(answers):
    """torch.randint for RandAugment.forward: returns the queued (high, value) answers in order."""
    queue = iter(answers)

    def randint(high, size, **kwargs):
        expected_high, value = next(queue)
        assert (high, tuple(size), kwargs) == (expected_high, (1,), {})
        return torch.tensor([value])
    return randint, queue


def torchvision_rand_augment(x, ops, signs, monkeypatch, **kwargs):
    """RandAugment(**kwargs).forward on each uint8 image, its torch.randint answering rdml's draws: per step the
    op index, then the sign where the op is signed (forward draws none for the others)."""
    transform = RandAugment(**kwargs)
    answers = []
    for image_ops, image_signs in zip(ops.tolist(), signs.tolist()):
        for op, sign in zip(image_ops, image_signs):
            answers.append((len(RAND_AUGMENT_OPS), op))
            if RAND_AUGMENT_OPS[op] in SIGNED:
                answers.append((2, sign))
    randint, queue = replayed_randint(answers)
    with monkeypatch.context() as patch:
        patch.setattr(torch, "randint", randint)
        out = torch.stack([transform(img) for img in x])
    assert next(queue, None) is None
    return out


@pytest.mark.parametrize("num_ops,magnitude,bins", [(2, 9, 31), (3, 30, 31), (1, 4, 11)])
def test_rand_augment_is_torchvisions_forward_replayed(num_ops, magnitude, bins, monkeypatch):
    """OKDPH's RandAugment() (2 ops, bin 9 of 31), the largest magnitude, and a coarse table: exactly
    torchvision's forward on every uint8 image given the same op and sign; every op drawn at every step."""
    x = images(300, 6)
    got = rand_augment(x.float().div(255), torch.Generator().manual_seed(7), num_ops, magnitude, bins)
    ops, signs = rand_augment_draws(300, num_ops, 7)
    expected = torchvision_rand_augment(x, ops, signs, monkeypatch, num_ops=num_ops, magnitude=magnitude,
                                        num_magnitude_bins=bins)
    assert all(len(ops[:, step].unique()) == 14 for step in range(num_ops))
    assert got.dtype == torch.float32 and torch.equal(got, expected.float().div(255))


def torchvision_auto_augment(x, chosen, uniforms, signs, policy):
    """AutoAugment(policy).forward on each uint8 image, its get_params returning rdml's draws for it."""
    transform = AutoAugment(AutoAugmentPolicy(policy))
    out = []
    for img, index, uniform, sign in zip(x, chosen.tolist(), uniforms, signs):
        transform.get_params = lambda count, params=(index, uniform, sign): params
        out.append(transform(img))
    return torch.stack(out)


@pytest.mark.parametrize("policy", ["imagenet", "cifar10", "svhn"])
def test_auto_augment_is_torchvisions_forward_replayed(policy):
    """The default IMAGENET policy OKDPH used, and the other two: exactly torchvision's forward on every uint8
    image given the same sub-policy, uniforms and signs; every sub-policy drawn, ops both applied and skipped."""
    x = images(500, 8)
    got = auto_augment(x.float().div(255), torch.Generator().manual_seed(9), policy)
    chosen, uniforms, signs = auto_augment_draws(500, 9)
    expected = torchvision_auto_augment(x, chosen, uniforms, signs, policy)
    assert len(chosen.unique()) == 25 and torch.equal(got, expected.float().div(255))


def test_auto_augment_compares_its_probabilities_in_float32(monkeypatch):
    """forward's `probs[i] <= p` compares a float32 draw with a Python float in float32: a draw equal to
    float32(0.6) (above 0.6) applies an op of probability 0.6. Every uniform forced to that value."""
    assert torch.tensor(0.6, dtype=torch.float32) <= 0.6 and torch.tensor(0.6, dtype=torch.float32).item() > 0.6
    x = images(200, 10)
    real_rand = torch.rand
    with monkeypatch.context() as patch:
        patch.setattr(torch, "rand", lambda *size, generator: real_rand(*size, generator=generator).fill_(0.6))
        got = auto_augment(x.float().div(255), torch.Generator().manual_seed(11))
    assert torch.rand is real_rand
    chosen, _, signs = auto_augment_draws(200, 11)
    uniforms = torch.full((200, 2), 0.6, dtype=torch.float32)
    assert torch.equal(got, torchvision_auto_augment(x, chosen, uniforms, signs, "imagenet").float().div(255))
    sixty = [i for i, sub in enumerate(AUTO_AUGMENT_POLICIES["imagenet"]) if sub[0][1] == 0.6]
    assert torch.isin(chosen, torch.tensor(sixty)).any()


def test_each_image_draws_its_own_ops():
    """One image repeated 256 times: a batch-level transform (one random op applied to the whole batch) would
    give one output; here the copies come out as different images, as many as their distinct draws give."""
    x = images(1, 12)[0].float().div(255).expand(256, -1, -1, -1).contiguous()
    ra = rand_augment(x, torch.Generator().manual_seed(13))
    aa = auto_augment(x, torch.Generator().manual_seed(14))
    assert len(ra.unique(dim=0)) > 50 and len(aa.unique(dim=0)) > 15
    ops, _ = rand_augment_draws(256, 2, 13)
    assert len(ops.unique(dim=0)) > 100  # of the 14 × 14 op pairs


# Cutout


class OfficialCutout(object):
    """tianlizhang/OKDPH src/data/auto_aug.py L7–33, as released."""

    def __init__(self, n_holes, length):
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img):
        h = img.size(1)
        w = img.size(2)

        mask = np.ones((h, w), np.float32)

        for n in range(self.n_holes):
            y = np.random.randint(h)
            x = np.random.randint(w)

            y1 = np.clip(y - self.length // 2, 0, h)
            y2 = np.clip(y + self.length // 2, 0, h)
            x1 = np.clip(x - self.length // 2, 0, w)
            x2 = np.clip(x + self.length // 2, 0, w)

            mask[y1: y2, x1: x2] = 0.

        mask = torch.from_numpy(mask)
        mask = mask.expand_as(img)
        img = img * mask

        return img


def official_cutout(x, ys, xs, length, monkeypatch):
    """The official Cutout of each image, numpy's randint answering rdml's centres (y, then x, per hole)."""
    answers = iter([(bound, int(v)) for y_row, x_row in zip(ys, xs) for y, xx in zip(y_row, x_row)
                    for bound, v in ((x.shape[2], y), (x.shape[3], xx))])

    def randint(high):
        bound, value = next(answers)
        assert high == bound
        return value
    with monkeypatch.context() as patch:
        patch.setattr(np.random, "randint", randint)
        out = torch.stack([OfficialCutout(ys.shape[1], length)(img) for img in x])
    assert next(answers, None) is None
    return out


@pytest.mark.parametrize("holes,length,shape", [(1, 16, (3, 32, 32)), (2, 8, (3, 24, 40)), (1, 7, (1, 28, 28))])
def test_cutout_is_the_official_cutout_at_the_same_centres(holes, length, shape, monkeypatch):
    """OKDPH's Cutout(1, 16), two holes, an odd length (a 6-pixel hole: length // 2 either side), on [0, 1]
    floats after ToTensor: the same pixels zeroed, holes clipped at the borders."""
    x = images(300, 15, shape).float().div(255)
    got = cutout(x, torch.Generator().manual_seed(16), holes, length)
    draws = torch.Generator().manual_seed(16)
    ys = torch.randint(shape[1], (300, holes), generator=draws)
    xs = torch.randint(shape[2], (300, holes), generator=draws)
    assert torch.equal(got, official_cutout(x, ys, xs, length, monkeypatch))
    zeroed = ((got == 0) & (x != 0)).all(1).flatten(1).sum(1)
    side = 2 * (length // 2)
    assert zeroed.max() <= holes * side * side and (zeroed < side * side).any()  # clipped at a border


# augment_batch


def replayed_crop(x, top, left):
    """RandomCrop(32, padding=4) with zero fill on each uint8 image at rdml's offsets (as tests/test_vision.py)."""
    h, w = x.shape[-2:]
    return [TF.crop(TF.pad(img, [4, 4, 4, 4]), int(t), int(l), h, w) for img, t, l in zip(x, top, left)]


@pytest.mark.parametrize("kind", KINDS_ADDED)
def test_augment_batch_is_the_official_compose_replayed(kind, monkeypatch):
    """data_loader.py's Compose per image on uint8 tensors, each random step replayed with augment_batch's draws
    (crop offsets, flips, then the policy's): RandomCrop(32, 4) → flip → ToTensor → Cutout(1, 16); RandomCrop →
    RandAugment(); RandomCrop → AutoAugment(). Exactly the same [0, 1] floats."""
    n = 300
    x = images(n, 17)
    generator = torch.Generator().manual_seed(18)
    got = augment_batch(x.float().div(255), kind, generator)
    draws = torch.Generator().manual_seed(18)
    top, left = torch.randint(0, 9, (n,), generator=draws), torch.randint(0, 9, (n,), generator=draws)
    cropped = torch.stack(replayed_crop(x, top, left))
    if kind == "crop_flip_cutout":
        flips = torch.rand(n, generator=draws) < 0.5
        flipped = torch.where(flips[:, None, None, None], cropped.flip(3), cropped)
        ys, xs = torch.randint(32, (n, 1), generator=draws), torch.randint(32, (n, 1), generator=draws)
        expected = official_cutout(flipped.float().div(255), ys, xs, 16, monkeypatch)
        assert 0 < flips.sum() < n
    elif kind == "crop_randaugment":
        ops, signs = (torch.randint(14, (n, 2), generator=draws), torch.randint(2, (n, 2), generator=draws))
        expected = torchvision_rand_augment(cropped, ops, signs, monkeypatch).float().div(255)
    else:
        chosen = torch.randint(25, (n,), generator=draws)
        uniforms, signs = torch.rand(n, 2, generator=draws), torch.randint(2, (n, 2), generator=draws)
        expected = torchvision_auto_augment(cropped, chosen, uniforms, signs, "imagenet").float().div(255)
    assert torch.equal(got, expected)
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=draws))  # no other draws


@pytest.mark.parametrize("kind", KINDS_ADDED)
@pytest.mark.parametrize("device", DEVICES)
def test_augment_batch_kinds_are_reproducible_shaped_and_device_independent(kind, device):
    """Reproducible from the generator, different for another seed, float32 or float64 in and out, values
    u/255 of uint8 u; on CUDA the pixel ops are the same float32 and integer arithmetic, and the affine grid's
    matrix product may round differently, which can move a nearest pick that lies on an exact half."""
    x = images(64, 19).float().div(255)
    a = augment_batch(x.to(device), kind, torch.Generator().manual_seed(1))
    b = augment_batch(x.to(device), kind, torch.Generator().manual_seed(1))
    c = augment_batch(x.to(device), kind, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == torch.float32 and a.device.type == device
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(policies.from_pixels(policies.to_pixels(a), torch.float32), a)
    double = augment_batch(x.double(), kind, torch.Generator().manual_seed(1))
    cpu = augment_batch(x, kind, torch.Generator().manual_seed(1))
    assert double.dtype == torch.float64 and torch.equal(double.float(), cpu)
    assert (a.cpu() != cpu).float().mean() <= (0 if device == "cpu" else 1e-3)


def test_the_kinds_are_registered_for_images_only():
    assert set(KINDS_ADDED) <= set(KINDS["images"].augmentations)
    assert not set(KINDS_ADDED) & set(KINDS["photos"].augmentations)
    with pytest.raises(ValueError, match="does not apply to photos"):
        augment_batch(torch.rand(2, 3, 8, 8), "crop_randaugment", torch.Generator(),
                      sizes=torch.tensor([[8, 8], [8, 8]]))
