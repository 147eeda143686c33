"""FFL's branched CIFAR backbones and fusion modules (Kim, Hyun, Chung & Kwak, "Feature Fusion for Online
Mutual Knowledge Distillation", ICPR 2020) as the OKDPH code builds them for its supplement's FFL column:
tianlizhang/OKDPH src/models/resnet_ffl.py, vgg_ffl.py and densenet_ffl.py (commit a562089), selected by
src/baseline.sh L53-55 (`resnet32_ffl resnet_fm`, `vgg16_ffl vgg_fm`, `densenet-40-12_ffl densenet_fm`).

Each backbone is rdml's OKDPH network (rdml.models.zoo.okdph) with its last stage repeated once per
branch; the shared trunk and every stage are built by that module's own layer builders:

- ResNet-32 (resnet_ffl.py L172-248): conv1-bn1-relu, layer1, layer2 shared; branch b (from 1) is
  `layer3_b` and `classfier3_b` (sic), after `AvgPool2d(8)`; the fusion module reads the layer3 maps
  (64×8×8). Its convolutions are initialised by `conv_init`: "he", N(0, 2/(k²·c_out)) as Kim et al.'s
  code does (Jangho-Kim/FFL-pytorch our_network.py L201-204), or "okdph", N(0, 2/5): resnet_ffl.py L205-208
  computes n = k²·c_out and then divides by `layers[0]`, the first stage's block count (5), instead, so
  every convolution starts with std √0.4 ≈ 0.632 whatever its size.
- VGG-16 (vgg_ffl.py L20-97): everything up to layer3 shared; branch b (from 1) is `layer4_b`, whose
  512×1×1 map the fusion module reads. With `shared_parts=True`, as the OKDPH code has it, every branch
  goes through the one `classifier` (L45-53, L95); otherwise each has its own `classifier_b`.
- DenseNet-40-12 (densenet_ffl.py L87-180): conv0, blocks 1-2 and their transitions shared; branch b
  (from 0) is `features.denseblock3_b`, `features.norm_final_b` and `classifier_b`. With
  `shared_parts=True`, as the OKDPH code has it, `denseblock3_1`… are the very module `denseblock3_0`
  (L141-143 add the same `block` again): the branches share their last dense block, run once per branch
  (its batch-norm statistics updated once per branch), and differ only by their final BN and classifier.
  The fusion module reads each branch's ReLU(norm_final(·)) map (132×8×8): L173-176 append the map to
  `fmap` and then apply ReLU to it in place.

The fusion module (resnet_Fusion_module, vgg_Fusion_module, densenet_Fusion_module, one definition with
other defaults; resnet_ffl.py L251-282) concatenates the branches' maps, applies a depthwise 3×3
convolution, BN, ReLU, a pointwise convolution back to the channels of one map, BN, ReLU, an average pool
over the map (8×8, or 1×1 for VGG) and its own classifier `fc2`. Its channels are 05_FFL.py L110's
`channel_dict` (64, 512, 132); its convolutions are He fan-out, N(0, 2/(k²·c_out)), BN 1 and 0, `fc2`
PyTorch's default.

Module names and the order of creation are the official ones (with `shared_parts=True` and, for
ResNet-32, `conv_init="okdph"`): from the same torch seed, a backbone and then its fusion module start
from exactly the official initial weights (05_FFL.py L111-119 builds them in that order). A backbone
returns (the branches' logits, the maps the fusion module reads). 32×32 inputs only: the heads pool
fixed 8×8 (1×1) maps.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from rdml.core.branched import BACKBONES as FFL_BACKBONES
from rdml.core.branched import check_branch_count
from rdml.keys import ConfigError
from rdml.models.zoo.branches import (build_resnet_trunk, build_vgg_trunk, init_densenet, init_vgg, resnet_trunk,
                                      vgg_classifier, vgg_trunk)
from rdml.models.zoo.okdph import VGG16, DenseBlock, ResNet32, Transition, _needs_32x32

__all__ = ["FFL_BACKBONES", "FFLResNet32", "FFLVGG16", "FFLDenseNet40", "FusionModule", "ffl_backbone", "fusion_module"]

CONV_INITS = ("he", "okdph")
# 05_FFL.py L110 (`channel_dict`) and each fusion module's default `sptial` (resnet_ffl.py L252, vgg_ffl.py L101,
# densenet_ffl.py L184): the channels and side of one branch's map
FUSED_MAPS = {"okdph_resnet32": (64, 8), "okdph_vgg16": (512, 1), "okdph_densenet40_12": (132, 8)}


def _he_fan_out(m: nn.Module) -> None:
    """N(0, 2/n), n = k²·c_out, written as the official modules write it (normal_(0, math.sqrt(2. / n)))."""
    n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
    m.weight.data.normal_(0, math.sqrt(2. / n))


# ---- ResNet-32 (resnet_ffl.py) ---------------------------------------------------------------------------

class FFLResNet32(ResNet32):
    """rdml's okdph_resnet32 with `branches` copies of layer3 and the classifier (resnet_ffl.py L172-248)."""

    def __init__(self, input_shape, num_classes: int, branches: int = 2, conv_init: str = "he", blocks=(5, 5, 5)):
        nn.Module.__init__(self)  # ResNet32's layers, but another head: its __init__ would build one layer3
        if conv_init not in CONV_INITS:
            raise ConfigError(f"conv_init={conv_init!r} is not allowed; allowed: {', '.join(CONV_INITS)}")
        self.num_branches = branches
        trunk = build_resnet_trunk(self, input_shape[0], blocks)
        for b in range(1, branches + 1):  # L196-199
            setattr(self, f"layer3_{b}", self._make_layer(64, blocks[2], stride=2))
            self.inplanes = trunk
        self.avgpool = nn.AvgPool2d(8)
        for b in range(1, branches + 1):  # L202-203
            setattr(self, f"classfier3_{b}", nn.Linear(64, num_classes))
        for m in self.modules():  # L205-211
            if isinstance(m, nn.Conv2d):
                if conv_init == "okdph":
                    m.weight.data.normal_(0, math.sqrt(2. / blocks[0]))
                else:
                    _he_fan_out(m)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def forward(self, x):
        x = resnet_trunk(self, x)
        logits, maps = [], []
        for b in range(1, self.num_branches + 1):  # L239-248
            feature = getattr(self, f"layer3_{b}")(x)
            maps.append(feature)
            logits.append(getattr(self, f"classfier3_{b}")(self.avgpool(feature).flatten(1)))
        return logits, maps


# ---- VGG-16 (vgg_ffl.py) ------------------------------------------------------------------------------

class FFLVGG16(VGG16):
    """rdml's okdph_vgg16 with `branches` copies of layer4 (vgg_ffl.py L20-97); one shared classifier with
    `shared_parts` (L45-53, L95), else one per branch."""

    def __init__(self, input_shape, num_classes: int, branches: int = 2, shared_parts: bool = True):
        nn.Module.__init__(self)  # VGG16's layers, but another head
        self.num_branches, self.shared_parts = branches, shared_parts
        build_vgg_trunk(self, input_shape[0])
        for b in range(1, branches + 1):  # L42-43
            setattr(self, f"layer4_{b}", self._make_layers(512, 3))
        if shared_parts:
            self.classifier = vgg_classifier(num_classes, dropout=0.0)
        else:
            for b in range(1, branches + 1):
                setattr(self, f"classifier_{b}", vgg_classifier(num_classes, dropout=0.0))
        init_vgg(self)  # L54-64, as rdml's VGG16

    def forward(self, x):
        x = vgg_trunk(self, x)
        logits, maps = [], []
        for b in range(1, self.num_branches + 1):  # L89-97
            feature = getattr(self, f"layer4_{b}")(x)
            maps.append(feature)
            head = self.classifier if self.shared_parts else getattr(self, f"classifier_{b}")
            logits.append(head(feature.flatten(1)))
        return logits, maps


# ---- DenseNet-40-12, BC (densenet_ffl.py) ----------------------------------------------------------------

class FFLDenseNet40(nn.Module):
    """rdml's okdph_densenet40_12 blocks with `branches` last blocks, final BNs and classifiers
    (densenet_ffl.py L101-180; `densenetd40k12_ffl`, L213-224); with `shared_parts` the last blocks are one
    module (L141-143)."""

    def __init__(self, input_shape, num_classes: int, branches: int = 2, shared_parts: bool = True, growth: int = 12,
                 blocks=(6, 6, 6), compression: float = 0.5, init_features: int = 24, bn_size: int = 4):
        super().__init__()
        self.num_branches = branches
        conv0 = nn.Conv2d(input_shape[0], init_features, 3, 1, 1, bias=False)
        self.features = nn.Sequential(OrderedDict([("conv0", conv0)]))
        channels = init_features
        for i, layers in enumerate(blocks):
            block = DenseBlock(layers, channels, growth, bn_size)
            self.features.add_module(f"denseblock{i + 1}_0", block)
            entering, channels = channels, channels + layers * growth
            if i != len(blocks) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(channels, int(channels * compression)))
                channels = int(channels * compression)
            else:
                for b in range(1, branches):
                    self.features.add_module(f"denseblock{i + 1}_{b}",
                                             block if shared_parts else DenseBlock(layers, entering, growth, bn_size))
        self.last = len(blocks)
        for b in range(branches):  # L146-147
            self.features.add_module(f"norm_final_{b}", nn.BatchNorm2d(channels))
        for b in range(branches):  # L149-150
            setattr(self, f"classifier_{b}", nn.Linear(channels, num_classes))
        init_densenet(self)  # L153-160 (shared modules once: modules() skips repeats)

    def forward(self, x):
        f = self.features
        x = f.conv0(x)
        for i in range(1, self.last):
            x = getattr(f, f"transition{i}")(getattr(f, f"denseblock{i}_0")(x))
        logits, maps = [], []
        for b in range(self.num_branches):  # L171-180: the shared block runs once per branch, as there
            feature = F.relu(getattr(f, f"norm_final_{b}")(getattr(f, f"denseblock{self.last}_{b}")(x)))
            maps.append(feature)  # after the ReLU: L176 applies it in place to the map already in fmap
            logits.append(getattr(self, f"classifier_{b}")(F.avg_pool2d(feature, kernel_size=8).flatten(1)))
        return logits, maps


# ---- The fusion module (resnet_ffl.py L251-282, vgg_ffl.py L100-128, densenet_ffl.py L183-210) ------------

class FusionModule(nn.Module):
    """Depthwise 3×3 conv over the concatenated maps, BN, ReLU, pointwise conv to `channels`, BN, ReLU, average
    pool over the `spatial`×`spatial` map, linear `fc2`."""

    def __init__(self, num_classes: int, channels: int, spatial: int, branches: int = 2):
        super().__init__()
        wide = channels * branches
        self.fc2 = nn.Linear(channels, num_classes)
        self.conv1 = nn.Conv2d(wide, wide, kernel_size=3, stride=1, padding=1, groups=wide, bias=False)
        self.bn1 = nn.BatchNorm2d(wide)
        self.conv1_1 = nn.Conv2d(wide, channels, kernel_size=1, groups=1, bias=False)
        self.bn1_1 = nn.BatchNorm2d(channels)
        self.spatial = spatial
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _he_fan_out(m)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def forward(self, maps):
        x = F.relu(self.bn1(self.conv1(torch.cat(list(maps), 1))))
        x = F.relu(self.bn1_1(self.conv1_1(x)))
        return self.fc2(F.avg_pool2d(x, self.spatial).flatten(1))


def ffl_backbone(arch: str, input_shape, num_classes: int, branches: int = 2, conv_init: str = "he",
                 shared_parts: bool = True) -> nn.Module:
    """The branched network of `arch` (one of FFL_BACKBONES) for 32×32 inputs."""
    if arch not in FFL_BACKBONES:
        raise ConfigError(f"arch={arch}: ffl branches one of {', '.join(FFL_BACKBONES)}")
    _needs_32x32(arch, input_shape)
    check_branch_count(branches)
    if arch == "okdph_resnet32":
        return FFLResNet32(input_shape, num_classes, branches, conv_init)
    if arch == "okdph_vgg16":
        return FFLVGG16(input_shape, num_classes, branches, shared_parts)
    return FFLDenseNet40(input_shape, num_classes, branches, shared_parts)


def fusion_module(arch: str, num_classes: int, branches: int = 2) -> FusionModule:
    """The fusion module over `branches` maps of `arch`'s backbone (05_FFL.py L112-115)."""
    if arch not in FFL_BACKBONES:
        raise ConfigError(f"arch={arch}: ffl branches one of {', '.join(FFL_BACKBONES)}")
    channels, spatial = FUSED_MAPS[arch]
    return FusionModule(num_classes, channels, spatial, branches)
