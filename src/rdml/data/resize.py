"""Resizing a batch on its device as TensorFlow 1 resized the official DML code's re-ID crops.

The official code stores Market-1501 crops at 160 × 64 and resizes them to the network's square input with
`tf.image.resize_images` (YingZhangDUT/Deep-Mutual-Learning preprocessing/reid_preprocessing.py), whose
default in TF 1.x is bilinear with `align_corners=False` and no half-pixel centres: output pixel i reads the
input at i · (in / out), between floor and floor + 1 (the last clamped to the edge). The kernel computes that
position in float32 (tensorflow v1.3.0 core/kernels/image_resizer_state.h L41-46, resize_bilinear_op.cc
L77-89): at 224 px it is up to ~1e-5 from the exact i · in / out, so the weights here are its float32 lerps,
exactly (tests/test_reid_resize.py). torch's `interpolate`
(align_corners=False) samples at half-pixel centres, (i + 0.5) · in / out − 0.5, a shift of up to half an
input pixel. Bilinear resizing is separable and linear, so each axis is one (out × in) matrix, applied by two
matrix products: the same numbers on any device, no per-image Python.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["tf_legacy_weights", "resize_tf"]


def tf_legacy_weights(size_in: int, size_out: int, dtype=torch.float64) -> Tensor:
    """(size_out × size_in) weights of TF 1's legacy bilinear resize along one axis (align_corners=False):
    output i reads input position p = i · size_in / size_out, (1 − (p − ⌊p⌋)) from ⌊p⌋ and (p − ⌊p⌋) from
    min(⌊p⌋ + 1, size_in − 1); the scale and p in float32, as the kernel's `float`s."""
    scale = torch.tensor(size_in, dtype=torch.float32) / size_out  # CalculateResizeScale: in_size / (float) out_size
    position = torch.arange(size_out, dtype=torch.float32) * scale  # const float in = i * scale
    low = position.floor().long()
    frac = (position - low).double()  # in - lower, exact in float32
    high = (low + 1).clamp(max=size_in - 1)
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    weights.index_put_((rows, low), 1 - frac, accumulate=True)
    weights.index_put_((rows, high), frac, accumulate=True)
    return weights.to(dtype)


def resize_tf(x: Tensor, size: tuple[int, int]) -> Tensor:
    """A float batch (N, C, H, W) resized to `size` (H', W') as TF 1's `tf.image.resize_images` resizes (see
    the module docstring), in x's dtype on x's device."""
    height, width = x.shape[-2:]
    rows = tf_legacy_weights(height, size[0], x.dtype).to(x.device)
    cols = tf_legacy_weights(width, size[1], x.dtype).to(x.device)
    return torch.einsum("oh,nchw,pw->ncop", rows, x, cols)
