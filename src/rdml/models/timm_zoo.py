"""Networks from timm (Wightman 2019, `timm.create_model`), randomly initialised, with a head of the
data set's size. The Rényi-KD thesis trains its ResNets with timm ("Training utilizes the Timm
library", §3.2): timm's ResNets are the ImageNet ones (7×7 stride-2 stem and a max-pool), which on
32×32 CIFAR images leave a 1×1 map before the pooling, unlike the 3×3-stem CIFAR ResNets of `zoo`.
"""

from __future__ import annotations

__all__ = ["create", "timm_resnet18", "timm_resnet152"]


def create(timm_name: str, input_shape, num_classes: int):
    """timm's `timm_name`, random init (no download), `input_shape[0]` input channels, `num_classes` outputs."""
    import timm

    return timm.create_model(timm_name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0])


def timm_resnet18(input_shape, num_classes):
    return create("resnet18", input_shape, num_classes)


def timm_resnet152(input_shape, num_classes):
    return create("resnet152", input_shape, num_classes)
