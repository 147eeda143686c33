"""Every architecture by name: the function that builds it and the data kinds it takes; torch-free,
so that configs are checked without importing torch. Builders of the image kind take the input shape
(C, H, W) and the number of classes."""

from __future__ import annotations

from dataclasses import dataclass

from rdml.registry import Registry

__all__ = ["Architecture", "ARCHITECTURES"]


@dataclass(frozen=True)
class Architecture:
    name: str
    builder: str  # "module:function" under rdml.models
    kinds: tuple[str, ...] = ("images",)


ARCHITECTURES: Registry[Architecture] = Registry("arch")
for _name, _builder in {
    "mlp": "small:mlp",
    "cnn": "small:cnn",
    "cnn_wide": "small:cnn_wide",
    "resnet20": "zoo.cifar_resnet:resnet20",
    "resnet32": "zoo.cifar_resnet:resnet32",
    "resnet110": "zoo.cifar_resnet:resnet110",
    "resnet18": "zoo.resnet:resnet18",
    "resnet34": "zoo.resnet:resnet34",
    "resnet50": "zoo.resnet:resnet50",
    "resnet152": "zoo.resnet:resnet152",
    "vgg16_bn": "zoo.vgg:vgg16_bn",
    "googlenet": "zoo.googlenet:googlenet",
    "inception_v1": "zoo.googlenet:inception_v1",
    "mobilenet": "zoo.mobilenet:mobilenet",
    "wrn_28_10": "zoo.wrn:wrn_28_10",
    "wrn_20_8": "zoo.wrn:wrn_20_8",
    "densenet40_12": "zoo.densenet:densenet40_12",
    "timm_resnet18": "timm_zoo:timm_resnet18",
    "timm_resnet152": "timm_zoo:timm_resnet152",
    "googlenet_as_released": "zoo.googlenet:googlenet_as_released",
}.items():
    ARCHITECTURES.add(_name, Architecture(_name, _builder))
