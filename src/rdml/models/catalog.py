"""Every architecture by name: the function that builds it, the data kinds it takes and the published
weights it can start from; torch-free, so that configs are checked without importing torch. Builders
take the input shape (C, H, W), the number of outputs and, for the pretrained ones, a weights file."""

from __future__ import annotations

from dataclasses import dataclass

from rdml.registry import Registry

__all__ = ["Architecture", "ARCHITECTURES"]


@dataclass(frozen=True)
class Architecture:
    name: str
    builder: str  # "module:function" under rdml.models
    kinds: tuple[str, ...] = ("images",)
    weights: str | None = None  # published weights (timm's "<model>.<tag>"), fetched by `rdml pipeline weights`
    smoke: str | None = None  # a tiny stand-in for `<study>_smoke` (a network of the same kind, weights that need no download)
    words: bool = False  # built from the data set's word vectors (its vocabulary), not from an input shape alone
    note: str | None = None  # what a table caption must say of a network that departs from its paper (as released)
    features: bool = False  # exposes features(x) -> (N, D) and classify(f) -> logits, forward = classify ∘ features


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

# RDML Table 2 (§5.1): "timm is applied to acquire the pretrained weights for the models: InceptionV4, ViT,
# and YoloV3". The released code builds `volo_d3_224` under the name "yolo3" (torchversion/model.py l.37);
# the paper cites YOLOv3, whose backbone timm has as `darknet53`: both are here. The weights are timm's
# default tag for each name (timm 1.0).
for _name, _weights in {
    "inception_v4": "inception_v4.tf_in1k",
    "vit_base_patch16_224": "vit_base_patch16_224.augreg2_in21k_ft_in1k",
    "volo_d3_224": "volo_d3_224.sail_in1k",
    "darknet53": "darknet53.c2ns_in1k",
}.items():
    ARCHITECTURES.add(_name, Architecture(_name, f"timm_zoo:{_name}", ("photos",), _weights, smoke="test_vit"))
# timm's default for `vit_base_patch16_224` moved after the released code ran (parklize/rdml 57f381f, 2022-09-21:
# torchversion/model.py L33 `timm.create_model('vit_base_patch16_224', pretrained=pretrained)`, timm unpinned in
# torchversion/requirements.txt). Every timm release of 2022 (v0.5.4 2022-01-16 to v0.6.12 2022-11-16, and the
# pre-release v0.8.2dev0 2022-12-23) resolved it to the AugReg ImageNet-21k → 1k weights (`_cfg(url=...augreg/
# B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_224.npz)`), the
# tag `augreg_in21k_ft_in1k` since timm's multi-weight tags; huggingface/pytorch-image-models 60ebb6ce
# (2023-01-06, "Re-order vit pretrained entries for more sensible default weights") made `augreg2_in21k_ft_in1k`
# the default, first released in v0.8.6dev0 (2023-01-11) and v0.9.0. `vit_base_patch16_224_as_released` is the
# same network with the weights the released code got.
ARCHITECTURES.add("vit_base_patch16_224_as_released", Architecture(
    "vit_base_patch16_224_as_released", "timm_zoo:vit_base_patch16_224", ("photos",),
    "vit_base_patch16_224.augreg_in21k_ft_in1k", smoke="test_vit"))
# timm's 0.3M-parameter test ViT; its "published" weights are generated from a seed by the weights step
# (rdml.models.pretrained.GENERATED), so that smoke runs and tests take the pretrained path offline.
ARCHITECTURES.add("test_vit", Architecture("test_vit", "timm_zoo:test_vit", ("images", "photos"), "test_vit.rdml_seed0"))

# RDML Table 3: fastText with GloVe and CharCNN as the released code builds them (parklize/rdml text-clf/,
# after AnubhavGupta3377/Text-Classification-Models-Pytorch): its models end in a softmax, which its
# losses take the softmax of again; the `_logits` variants leave that softmax out (rdml.models.text).
for _name, _words in (("fasttext", True), ("fasttext_logits", True), ("charcnn", False), ("charcnn_logits", False)):
    ARCHITECTURES.add(_name, Architecture(_name, f"text:{_name}", ("text",), words=_words))
# `charcnn_as_released` is `charcnn` evaluated as the released code evaluates it, dropout on (text-clf/
# Model_CharCNN/utils.py l.124–137 never calls `eval()`).
ARCHITECTURES.add("charcnn_as_released", Architecture(
    "charcnn_as_released", "text:charcnn_as_released", ("text",),
    note="charcnn_as_released is CharCNN evaluated as the released code evaluates it, dropout 0.5 active in every "
         "validation and test pass (text-clf/Model_CharCNN/utils.py L124–137 never calls eval()): its accuracies and "
         "its best-validation epoch are those of a dropped-out network, its masks seeded per evaluation."))

# OKDPH (Zhang et al., CVPR 2023): the CIFAR backbones as tianlizhang/OKDPH src/models builds them
# (rdml.models.zoo.okdph): ResNet-32 with 1×1-conv shortcuts, its own VGG-16 (512-512 head, no dropout),
# DenseNet-40-12 BC (bottleneck, compression 0.5), ResNet-110 and WRN-20-8 of Bottleneck blocks (WRN's
# inner width 8×).
for _name in ("okdph_resnet32", "okdph_vgg16", "okdph_densenet40_12", "okdph_resnet110", "okdph_wrn20_8"):
    ARCHITECTURES.add(_name, Architecture(_name, f"zoo.okdph:{_name}"))

# DML Tables 3 and 4, Market-1501 (DML §4.1): MobileNet and InceptionV1 trained for 751-way classification, their
# last pooling layer's output the re-ID feature; the same networks train on ImageNet's 1,000 classes for Fig. 2a
# (TF-slim's nets/mobilenet_v1.py and nets/inception_v1.py, from scratch) (rdml.models.reid: `features`, `classify`, `feature_dim`), as
# TF-slim builds them in YingZhangDUT/Deep-Mutual-Learning nets/. Their ImageNet weights (Table 3's "pre? yes"
# rows) are timm's and torchvision's (rdml.models.pretrained.TORCHVISION), not the TF-slim checkpoints.
ARCHITECTURES.add("mobilenetv1_100", Architecture(
    "mobilenetv1_100", "reid:mobilenetv1_100", ("pedestrians", "imagenet_photos"), "mobilenetv1_100.ra4_e3600_r224_in1k",
    smoke="reid_tiny",
    features=True, note="mobilenetv1_100 is timm's MobileNet-V1, TF-slim's network up to padding and batch-norm constants; its "
         "ImageNet weights are timm's mobilenetv1_100.ra4_e3600_r224_in1k (75.4 % top-1 at 224 px, 3600 epochs of "
         "timm's RA4 recipe), not TF-slim's MobileNet_v1_1.0_224 checkpoint (70.9 % top-1; 70.7 % as first released "
         "in June 2017) the DML authors presumably started from."))
ARCHITECTURES.add("tv_googlenet", Architecture(
    "tv_googlenet", "reid:tv_googlenet", ("pedestrians", "imagenet_photos"), "tv_googlenet.imagenet1k_v1", smoke="reid_tiny",
    features=True, note="tv_googlenet is torchvision's GoogLeNet, a batch-normalised Inception-V1 as TF-slim's (with a batch-norm "
         "scale slim's lacks); its ImageNet weights are torchvision's GoogLeNet_Weights.IMAGENET1K_V1 (69.8 % top-1), "
         "not TF-slim's inception_v1 checkpoint (69.8 % top-1)."))
# A 64-feature stand-in of the same interface for smoke runs and tests; its "published" weights are generated
# from seed 0 by the weights step (rdml.models.pretrained.GENERATED), so that smoke runs take the pretrained path.
ARCHITECTURES.add("reid_tiny", Architecture("reid_tiny", "reid:reid_tiny", ("pedestrians", "imagenet_photos"),
                                            "reid_tiny.rdml_seed0", features=True))
