"""PCL's branched networks (Wu & Gong, "Peer Collaborative Learning for Online Knowledge Distillation",
AAAI 2021) as the official OKDPH code builds them for its PCL baseline: tianlizhang/OKDPH
src/models/resnet_pcl.py, vgg_pcl.py and densenet_pcl.py (commit a562089), selected by `model_dict`
in src/models/__init__.py L54-60 and built as `model_dict[name](num_classes=..., ema=..., num_branches=...)`
(src/06_PCL.py L175-176).

One network holds a shared trunk, B branches ("peers") and a peer-ensemble classifier `en_fc` on the
peers' concatenated features. Each branch's input view runs through the whole trunk on its own (the
trunk runs B times per forward, its batch-norm statistics updated each time) and then through that
branch (`forward`, resnet_pcl.py L208-221):

- `pcl_resnet32`: trunk conv1-bn1-relu, layer1, layer2 of `okdph_resnet32`; branch = its own layer3,
  adaptive average pool and 64→classes linear (resnet_pcl.py L108-162); features 64 per branch.
- `pcl_vgg16`: trunk conv1/conv2 and layer1-layer3 of `okdph_vgg16`; branch = its own layer4 and
  512-512-classes classifier (vgg_pcl.py L21-73); features 512 per branch.
- `pcl_densenet40_12`: trunk conv0, denseblock1, transition1, denseblock2, transition2 of
  `okdph_densenet40_12`; branch = its own third dense block, ReLU, 8×8 average pool and linear
  (densenet_pcl.py L87-178). Unlike `okdph_densenet40_12` there is no final batch norm: densenet_pcl.py
  adds none. The official `en_fc` takes `fc.in_features * 3` inputs whatever the branch count
  (L178), so only 3 branches run there (src/baseline.sh L63 runs the default, 3); here it takes
  B times the features, the same layer at B = 3.

Branches 1..B-1 are `deepcopy`s of branch 0 made before the initialisation loop (L158-160): that loop
draws every convolution again, so the branches' convolutions differ, but what it leaves alone stays
identical across branches: the ResNet's linear layers (PyTorch's default draw, no rule at L168-173) and
the DenseNet's linear weights (only the bias is set, L191-192). VGG's linear layers are drawn again,
N(0, 0.01) (vgg_pcl.py L87-89). The blocks are rdml's own (rdml.models.zoo.okdph); the networks are
assembled here because the official modules are created, and drawn, in an order the plain backbones do
not follow (the ensemble classifier's default draw comes between the branches' creation and the
initialisation loop), and module names and creation order are the official ones, so that from the same
torch seed a network starts from exactly the official initial weights and its state_dict keys are the
official keys.

A forward takes a list of B views (view k for branch k) or one tensor that every branch sees (the
official test, src/06_PCL.py L124) and returns (the B branches' logits, the ensemble classifier's
logits). The official temporal-mean network (`ema=True`) skips the ensemble classifier (L216-217); here
it is computed either way and the method ignores it (it has no state and no effect on the branches).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rdml.core.branched import check_branch_count
from rdml.models.zoo.branches import (build_densenet_trunk, build_resnet_trunk, build_vgg_trunk, init_densenet,
                                      init_resnet, init_vgg, resnet_trunk, vgg_classifier, vgg_trunk)
from rdml.models.zoo.okdph import DenseBlock, ResNet32, VGG16, _needs_32x32

__all__ = ["PeerNetwork", "pcl_resnet32", "pcl_vgg16", "pcl_densenet40_12", "PCL_NETWORKS"]


class PeerNetwork(nn.Module):
    """A shared trunk (`extract`), branches `branch0..branch{B-1}` returning (logits, features), and `en_fc`."""

    branches: int

    def _add_branches(self, branch: nn.Module, features: int, num_classes: int) -> None:
        """branch0, its deepcopies, then the ensemble classifier, in the official order (resnet_pcl.py L158-162)."""
        self.branch0 = branch
        for k in range(1, self.branches):
            setattr(self, f"branch{k}", copy.deepcopy(branch))
        self.en_fc = nn.Linear(features * self.branches, num_classes)

    extract: Callable  # the shared trunk: x → the map the branches read; each backbone's subclass sets it

    def views(self, x) -> list:
        """One input per branch: the given list, or one tensor for every branch."""
        if isinstance(x, (list, tuple)):
            if len(x) != self.branches:
                raise ValueError(f"{len(x)} views for a network of {self.branches} branches; give one view per "
                                 "branch, or one tensor for every branch")
            return list(x)
        return [x] * self.branches

    def forward(self, x):
        logits, features = [], []
        for k, view in enumerate(self.views(x)):  # resnet_pcl.py L209-214
            out, feature = getattr(self, f"branch{k}")(self.extract(view))
            logits.append(out)
            features.append(feature)
        return logits, self.en_fc(torch.cat(features, dim=1))  # L219-221


# ---- ResNet-32 (src/models/resnet_pcl.py) -----------------------------------------------------------

class ResNetBranch(nn.Module):
    """resnet_pcl.py `Branch` (L108-121): layer3, average pool, linear; returns (logits, pooled features)."""

    def __init__(self, layer: nn.Module, fc: nn.Linear):
        super().__init__()
        self.layer = layer
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = fc

    def forward(self, x):
        feature = self.avgpool(self.layer(x)).view(x.size(0), -1)
        return self.fc(feature), feature


class PCLResNet32(PeerNetwork):
    """resnet_pcl.py `ResNet(BasicBlock, [5, 5, 5], num_branches=B)` (L124-230): the trunk and stages of
    rdml's okdph_resnet32 (its BasicBlock and `_make_layer`), layer3 and the classifier in each branch."""

    _make_layer = ResNet32._make_layer

    def __init__(self, input_shape, num_classes: int, branches: int, blocks=(5, 5, 5)):
        super().__init__()
        self.branches = branches
        build_resnet_trunk(self, input_shape[0], blocks)
        layer = self._make_layer(64, blocks[2], stride=2)
        self._add_branches(ResNetBranch(layer, nn.Linear(64, num_classes)), 64, num_classes)
        init_resnet(self)  # L168-173

    extract = resnet_trunk  # L223-230


def pcl_resnet32(input_shape, num_classes: int, branches: int) -> PCLResNet32:
    return PCLResNet32(input_shape, num_classes, check_branch_count(branches))


# ---- VGG-16 (src/models/vgg_pcl.py) -------------------------------------------------------------------

class VGGBranch(nn.Module):
    """vgg_pcl.py `Branch` (L21-32): layer4, flatten, the 512-512-classes classifier (named `fc`)."""

    def __init__(self, layer: nn.Module, fc: nn.Module):
        super().__init__()
        self.layer = layer
        self.fc = fc

    def forward(self, x):
        out = self.layer(x)
        feature = out.view(out.size(0), -1)
        return self.fc(feature), feature


class PCLVGG16(PeerNetwork):
    """vgg_pcl.py `VGG(depth=16, num_branches=B)` (L35-129): rdml's okdph_vgg16 stages (`_make_layers`),
    layer4 and the classifier in each branch; Dropout(p=0.0) as the default `dropout` (L36) leaves it."""

    _make_layers = VGG16._make_layers

    def __init__(self, input_shape, num_classes: int, branches: int, dropout: float = 0.0):
        super().__init__()
        self.branches = branches
        build_vgg_trunk(self, input_shape[0])
        layer = self._make_layers(512, 3)
        self._add_branches(VGGBranch(layer, vgg_classifier(num_classes, dropout)), 512, num_classes)
        init_vgg(self)  # L79-89

    extract = vgg_trunk  # L116-129


def pcl_vgg16(input_shape, num_classes: int, branches: int) -> PCLVGG16:
    _needs_32x32("okdph_vgg16", input_shape)
    return PCLVGG16(input_shape, num_classes, check_branch_count(branches))


# ---- DenseNet-40-12, BC (src/models/densenet_pcl.py) ---------------------------------------------------

class DenseNetBranch(nn.Module):
    """densenet_pcl.py `Branch` (L87-101): the third dense block, ReLU, 8×8 average pool, linear."""

    def __init__(self, layer: nn.Module, fc: nn.Linear, avgpool_size: int = 8):
        super().__init__()
        self.layer = layer
        self.avgpool = nn.AvgPool2d(kernel_size=avgpool_size)
        self.fc = fc

    def forward(self, x):
        out = self.avgpool(F.relu(self.layer(x), inplace=True))
        feature = out.view(x.size(0), -1)
        return self.fc(feature), feature


class PCLDenseNet(PeerNetwork):
    """densenet_pcl.py `DenseNet(growth_rate=12, block_config=[6, 6, 6], num_branches=B)` (L104-240) with its
    defaults (compression 0.5, 24 initial features, bn_size 4, no dropout, small inputs): rdml's DenseBlock and
    Transition (okdph_densenet40_12's), the third block in each branch, no final batch norm."""

    def __init__(self, input_shape, num_classes: int, branches: int, growth: int = 12, blocks=(6, 6, 6),
                 compression: float = 0.5, init_features: int = 24, bn_size: int = 4):
        super().__init__()
        self.branches = branches
        channels = build_densenet_trunk(self, input_shape[0], blocks, growth, bn_size, compression,  # L142-158
                                        init_features)
        block = DenseBlock(blocks[-1], channels, growth, bn_size)  # L160-170
        channels += blocks[-1] * growth
        self._add_branches(DenseNetBranch(block, nn.Linear(channels, num_classes)), channels, num_classes)
        init_densenet(self)  # L184-192

    def extract(self, x):  # L224-226
        return self.features(x)


def pcl_densenet40_12(input_shape, num_classes: int, branches: int) -> PCLDenseNet:
    _needs_32x32("okdph_densenet40_12", input_shape)
    return PCLDenseNet(input_shape, num_classes, check_branch_count(branches))


# The backbone a run names (its `arch`) → its PCL network (src/models/__init__.py L54-60).
PCL_NETWORKS = {"okdph_resnet32": pcl_resnet32, "okdph_vgg16": pcl_vgg16, "okdph_densenet40_12": pcl_densenet40_12}
