"""Architectures by name. Each builder takes the input shape (C, H, W) and the number of classes.

The embedded default trains on 8×8 grey digits: `mlp` and `cnn` are the small students, `cnn_wide`
is the larger teacher that gives KD something to teach. The papers' CIFAR and Fashion-MNIST
networks live in `rdml.zoo`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rdml.zoo import cifar_resnet, densenet, googlenet, mobilenet, resnet, vgg, wrn

__all__ = ["ARCHITECTURES", "build_model", "check_arch"]


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


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "cnn": cnn,
    "cnn_wide": cnn_wide,
    "resnet20": cifar_resnet.resnet20,
    "resnet32": cifar_resnet.resnet32,
    "resnet110": cifar_resnet.resnet110,
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet152": resnet.resnet152,
    "vgg16_bn": vgg.vgg16_bn,
    "googlenet": googlenet.googlenet,
    "inception_v1": googlenet.inception_v1,
    "mobilenet": mobilenet.mobilenet,
    "wrn_28_10": wrn.wrn_28_10,
    "wrn_20_8": wrn.wrn_20_8,
    "densenet40_12": densenet.densenet40_12,
}


def check_arch(name: str) -> str:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; allowed: {', '.join(sorted(ARCHITECTURES))}")
    return name


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return ARCHITECTURES[check_arch(name)](tuple(input_shape), num_classes)
