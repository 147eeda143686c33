"""Networks from timm (Wightman 2019, `timm.create_model`) with a head of the requested size.

Random initialisation never downloads anything. Published weights come from a local file only (the
one `rdml pipeline weights` fetched), loaded through timm's own pretrained path
(`pretrained_cfg_overlay=dict(file=...)`): timm adapts what the file holds to the network asked for,
dropping a classifier of another size and resampling a ViT's position embedding to the input size.

The Rényi-KD thesis trains its ResNets with timm ("Training utilizes the Timm library", §3.2): timm's
ResNets are the ImageNet ones (7×7 stride-2 stem and a max-pool), which on 32×32 CIFAR images leave a
1×1 map before the pooling, unlike the 3×3-stem CIFAR ResNets of `zoo`. RDML Table 2 fine-tunes
timm's pretrained ImageNet networks on DTD and Flowers102 at 224 px.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["create", "timm_resnet18", "timm_resnet152", "inception_v4", "vit_base_patch16_224", "volo_d3_224",
           "darknet53", "test_vit"]


def create(timm_name: str, input_shape, num_classes: int, weights: str | Path | None = None, **kwargs):
    """timm's `timm_name` with `input_shape[0]` input channels and `num_classes` outputs; from the
    weights in file `weights` where given, else randomly initialised."""
    import timm

    if weights is None:
        return timm.create_model(timm_name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0], **kwargs)
    return timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(weights)},
                             num_classes=num_classes, in_chans=input_shape[0], **kwargs)


def timm_resnet18(input_shape, num_classes, weights=None):
    return create("resnet18", input_shape, num_classes, weights)


def timm_resnet152(input_shape, num_classes, weights=None):
    return create("resnet152", input_shape, num_classes, weights)


def inception_v4(input_shape, num_classes, weights=None):
    return create("inception_v4", input_shape, num_classes, weights)


def vit_base_patch16_224(input_shape, num_classes, weights=None):
    return create("vit_base_patch16_224", input_shape, num_classes, weights, img_size=tuple(input_shape[1:]))


def volo_d3_224(input_shape, num_classes, weights=None):
    return create("volo_d3_224", input_shape, num_classes, weights, img_size=tuple(input_shape[1:]))


def darknet53(input_shape, num_classes, weights=None):
    return create("darknet53", input_shape, num_classes, weights)


def test_vit(input_shape, num_classes, weights=None):
    return create("test_vit", input_shape, num_classes, weights, img_size=tuple(input_shape[1:]))
