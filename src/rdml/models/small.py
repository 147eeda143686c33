"""The small networks of the embedded default (8×8 grey digits): `mlp` and `cnn` are the students,
`cnn_wide` is the larger teacher that gives KD something to teach. Each builder takes the input shape
(C, H, W) and the number of classes."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp", "cnn", "cnn_wide"]


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 32) -> nn.Module:
    features = 1
    for size in input_shape:
        features *= size
    return nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))


def cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    channels = input_shape[0]
    return nn.Sequential(
        *_conv_bn(channels, 16),
        *_conv_bn(16, 32, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )


def cnn_wide(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    channels = input_shape[0]
    return nn.Sequential(
        *_conv_bn(channels, 64),
        *_conv_bn(64, 64),
        *_conv_bn(64, 128, stride=2),
        *_conv_bn(128, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, num_classes),
    )
