"""TF 1's legacy bilinear resize (rdml.data.resize) against a per-pixel transcription of TensorFlow 1.3's
ResizeBilinear CPU kernel, and the pedestrians kind's input path against the official DML preprocessing
written out by hand.

The transcription follows tensorflow/tensorflow v1.3.0 (commit 9e76bf324f6bac63137a02bb6e6ec9120703ea9b):
- image_resizer_state.h L41-46 `CalculateResizeScale`: align_corners=False gives `in_size / (float) out_size`,
  a float32 (`tf.image.resize_images` defaults to BILINEAR, align_corners=False: image_ops_impl.py L691-694,
  calling gen_image_ops.resize_bilinear at L765-768);
- resize_bilinear_op.cc L77-89 `compute_interpolation_weights`: `const float in = i * scale`, lower =
  (int64) in, upper = min(lower + 1, in_size - 1), lerp = in - lower (all float32);
- L95-101 `compute_lerp`: top = tl + (tr - tl)·x_lerp, bottom = bl + (br - bl)·x_lerp, top + (bottom - top)·y_lerp;
- L126-196 the loops over batch, output row, output column and channel; L216-220 the no-op resize (a cast).
The arithmetic here is float64 (the kernel's is float32), so float64 inputs must agree to rounding.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rdml.data.augment import augment_batch
from rdml.data.base import Dataset, _normalisation
from rdml.data.catalog import DataSpec
from rdml.data.resize import resize_tf, tf_legacy_weights

# (in H, in W) → (out H, out W): the stored Market crops to the models' input, its inverse (down), non-square
# and mixed up/down, an exact 2×, size-1 edges on either side, and no resize at all.
SIZES = [((160, 64), (224, 224)), ((224, 224), (160, 64)), ((5, 7), (11, 3)), ((13, 17), (26, 34)),
         ((37, 53), (17, 29)), ((1, 1), (4, 6)), ((4, 6), (1, 1)), ((1, 5), (3, 1)), ((7, 9), (7, 9))]
# Max abs difference measured on inputs in [0, 1): float64 ≤ 2e-16 (the weights are the kernel's float32
# lerps, exactly); float32 ≤ 1.2e-7 (two rounded products and a sum, against the kernel's lerp formula).
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-6}


def tf1_interpolation(out_size: int, in_size: int) -> tuple[list[int], list[int], list[float]]:
    """compute_interpolation_weights with CalculateResizeScale (align_corners=False), float32 as in C++."""
    scale = np.float32(in_size) / np.float32(out_size)
    lower, upper, lerp = [], [], []
    for i in range(out_size):
        position = np.float32(i) * scale  # const float in = i * scale;
        low = int(position)  # static_cast<int64>(in), in ≥ 0
        lower.append(low)
        upper.append(min(low + 1, in_size - 1))
        lerp.append(float(position - np.float32(low)))  # in - interpolation[i].lower, a float
    return lower, upper, lerp


def tf1_resize_bilinear(images: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
    """ResizeBilinear on an NHWC batch, pixel by pixel (channels vectorised), in float64."""
    n, in_height, in_width, channels = images.shape
    if (out_height, out_width) == (in_height, in_width):  # the kernel's no-op: a cast
        return images.astype(np.float64)
    ys_lower, ys_upper, ys_lerp = tf1_interpolation(out_height, in_height)
    xs_lower, xs_upper, xs_lerp = tf1_interpolation(out_width, in_width)
    output = np.empty((n, out_height, out_width, channels))
    for b in range(n):
        for y in range(out_height):
            for x in range(out_width):
                top_left = images[b, ys_lower[y], xs_lower[x]]
                top_right = images[b, ys_lower[y], xs_upper[x]]
                bottom_left = images[b, ys_upper[y], xs_lower[x]]
                bottom_right = images[b, ys_upper[y], xs_upper[x]]
                top = top_left + (top_right - top_left) * xs_lerp[x]
                bottom = bottom_left + (bottom_right - bottom_left) * xs_lerp[x]
                output[b, y, x] = top + (bottom - top) * ys_lerp[y]
    return output


def reference(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The transcription on an NCHW tensor: transposed to TF's NHWC and back."""
    nhwc = x.double().permute(0, 2, 3, 1).numpy()
    return torch.from_numpy(tf1_resize_bilinear(nhwc, *size)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("size_in,size_out", SIZES)
def test_resize_tf_equals_the_tf1_kernel(size_in, size_out, dtype):
    x = torch.rand(2, 3, *size_in, generator=torch.Generator().manual_seed(0), dtype=dtype)
    got = resize_tf(x, size_out)
    assert got.dtype == dtype and got.shape == (2, 3, *size_out)
    assert (got.double() - reference(x, size_out)).abs().max() <= TOLERANCE[dtype]


@pytest.mark.parametrize("size_in,size_out", [(160, 224), (64, 224), (224, 160), (224, 64), (7, 3), (1, 4), (4, 1)])
def test_weights_are_the_kernels_float32_lerps_exactly(size_in, size_out):
    """Each row holds 1 − lerp at lower and lerp at upper (their sum where they coincide), nothing else: the
    kernel's float32 positions, which differ from i · in/out by up to ~1e-5 at 224 px (and cross an integer,
    changing `lower`, at three rows of 224 → 160)."""
    lower, upper, lerp = tf1_interpolation(size_out, size_in)
    expected = np.zeros((size_out, size_in))
    for i in range(size_out):
        expected[i, lower[i]] += 1 - lerp[i]
        expected[i, upper[i]] += lerp[i]
    np.testing.assert_array_equal(tf_legacy_weights(size_in, size_out).numpy(), expected)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("size_in,size_out", [(160, 224), (64, 224), (224, 160), (5, 11), (11, 5), (1, 3), (3, 1), (6, 6)])
def test_each_row_of_weights_sums_to_one_over_at_most_two_neighbours(size_in, size_out, dtype):
    weights = tf_legacy_weights(size_in, size_out, dtype)
    assert weights.dtype == dtype and weights.shape == (size_out, size_in)
    assert (weights >= 0).all() and ((weights != 0).sum(1) <= 2).all()
    assert torch.allclose(weights.sum(1), torch.ones(size_out, dtype=dtype), rtol=0, atol=TOLERANCE[dtype])


def test_the_transcription_tells_the_legacy_rule_from_torchs_half_pixel_one():
    """torch's bilinear interpolate (align_corners=False) samples at half-pixel centres: on the stored crops'
    160 × 64 → 224 × 224 it is far from TF 1's result, so the comparisons above can fail."""
    x = torch.rand(2, 3, 160, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = reference(x, (224, 224))
    half_pixel = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    assert (half_pixel - expected).abs().max() > 0.1
    assert (resize_tf(x, (224, 224)) - expected).abs().max() <= TOLERANCE[torch.float64]


def test_a_constant_image_stays_constant_and_a_one_pixel_image_spreads():
    x = torch.full((1, 3, 160, 64), 0.25, dtype=torch.float64)
    assert torch.equal(resize_tf(x, (224, 224)), torch.full((1, 3, 224, 224), 0.25, dtype=torch.float64))
    pixel = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).view(1, 3, 1, 1)
    assert torch.equal(resize_tf(pixel, (5, 2)), pixel.expand(1, 3, 5, 2))


def pedestrians(n: int = 6, seed: int = 0) -> Dataset:
    """A pedestrians set built directly: uint8 crops stored at the official 160 × 64, models' input 224 × 224,
    normalize=inception."""
    x = torch.randint(0, 256, (n, 3, 160, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(n) % 12
    mean, std = _normalisation(x, "inception", "pedestrians")
    return Dataset("pedestrians", x, y, x[:2], y[:2], DataSpec("pedestrians", 12, (3, 224, 224)), mean, std)


def official_preprocessing(crops: torch.Tensor, flips: torch.Tensor | None) -> torch.Tensor:
    """reid_preprocessing.py L30-39 (train) and L54-60 (eval) per image: uint8 → [0, 1] floats, resize to
    224 × 224 (the transcription), flip left-right where drawn (train only), then (x − 0.5) · 2."""
    out = []
    for i, crop in enumerate(crops):
        image = reference(crop[None].double() / 255, (224, 224))[0]
        if flips is not None and flips[i]:
            image = image.flip(-1)
        out.append((image - 0.5) * 2.0)
    return torch.stack(out)


def test_pedestrian_training_inputs_are_resize_then_flip_then_inception_scaling():
    data = pedestrians()
    rows = torch.tensor([4, 0, 5, 2, 3, 1])
    flips = torch.rand(len(rows), generator=torch.Generator().manual_seed(7)) < 0.5  # RandomHorizontalFlip, p = 0.5
    assert 0 < int(flips.sum()) < len(rows)  # both branches occur in this draw
    draws = torch.Generator().manual_seed(7)
    # the training loop's augmentation (rdml.train.loop): augment_batch of the run's kind, called with sizes/size
    got = data.train_inputs(rows, lambda x, sizes=None, size=None: augment_batch(x, "flip", draws, sizes, size))
    assert got.dtype == torch.float32 and got.shape == (6, 3, 224, 224)
    expected = official_preprocessing(data.x_train[rows], flips)
    assert (got.double() - expected).abs().max() <= 1e-6  # float32 against float64: 2.5e-7 measured
    # flipping after the resize is not flipping before it: the legacy rule is not symmetric left to right
    flipped_first = torch.stack([(reference(c[None].double().flip(-1) / 255, (224, 224))[0] - 0.5) * 2
                                 for c in data.x_train[rows][flips]])
    assert (got[flips].double() - flipped_first).abs().max() > 0.05


def test_pedestrian_evaluation_inputs_are_resize_then_inception_scaling():
    data = pedestrians()
    got = torch.cat([x for x, _ in data.eval_batches("test", 1)])
    assert (got.double() - official_preprocessing(data.x_test, None)).abs().max() <= 1e-6
