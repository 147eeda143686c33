"""The branched networks of ONE (Lan, Zhu & Gong, NeurIPS 2018) as the OKDPH code builds them for its ONE
baseline: tianlizhang/OKDPH src/models/{resnet,vgg,densenet}_one.py (commit a562089), selected by
`model_dict` in src/models/__init__.py L41-45 and built as `model_dict[name](num_classes=...,
num_branches=...)` (src/02_ONE.py L116-117), with the ONE defaults of their flags (avg=False, ind=False,
bpscale=False: a gate, no backprop rescaling).

Each is one of rdml's OKDPH backbones (rdml.models.zoo.okdph) cut after a shared trunk; every branch k has
its own copy of the backbone's last stage (`layer3_k`) and classifier (`classifier3_k`), and a gate
(`avgpool_c` → `control_v1` linear → `bn_v1` BatchNorm1d → ReLU → softmax over branches, from the
trunk's output) weights the branch logits into the teacher z_e = Σ_k g_k·z_k (ONE eq. 2). `forward`
returns, as the official modules do, the branch logits stacked on the last axis (B × classes × K) and z_e.

- `okdph_resnet32`: trunk conv1-bn1-relu-layer1-layer2 (16, 32 channels); branch = a 5-block 64-channel
  stage + linear 64→classes; gate from layer2's 32×16×16 map through `nn.AvgPool2d(16)`
  (resnet_one.py L150-165, L209-259).
- `okdph_vgg16`: trunk conv1, conv2, maxpool, layer1 (2×128), layer2 (3×256), layer3 (3×512); branch =
  the backbone's layer4 (3×512 + max-pool) + 512→512→512→classes with ReLU and **Dropout(p=0.5)**
  (`nn.Dropout()`, vgg_one.py L58-67; the plain okdph_vgg16 has p=0.0); gate from layer3's 512×2×2 map
  through adaptive average pooling (L69-72). Official quirk (`repeat_branch_forward`): in training the
  official forward runs every branch twice, the first results thrown away (L110-119, then L146-157), so
  each batch updates the branches' BatchNorm statistics twice and draws their dropout masks twice.
- `okdph_densenet40_12`: trunk conv0, denseblock1, transition1, denseblock2, transition2 (60 channels at
  8×8); branch = the third dense block + its own `norm_final_k` BN + ReLU + global average pool + linear
  132→classes (the backbone's `features.norm_final` moves into the branches); gate from the trunk's map
  through `nn.AvgPool2d(8)` (densenet_one.py L140-187, L201-248). Official quirk (`shared_stage`): the
  third block is built once and set as every `layer3_k` (L159-169), so the branches share it and differ
  only in their final BN and classifier.

Modules are created, and initialised, in the official order with the official rules (so that from one torch
seed the weights are the official ones) and carry the official names (official checkpoints load; with
`shared_stage` the state dict holds the shared block under every `layer3_k` name, as the official one does).
The dense blocks concatenate their inputs as the official `_DenseBlock` does (a list, concatenated afresh
for each layer), which gives the official gradients bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdml.core.branched import BACKBONES, check_branch_count
from rdml.keys import ConfigError
from rdml.models.zoo.branches import (build_densenet_trunk, build_resnet_trunk, init_densenet, init_resnet, init_vgg,
                                      resnet_trunk, vgg_classifier, vgg_trunk)
from rdml.models.zoo.okdph import DenseBlock, ResNet32, VGG16, _needs_32x32

__all__ = ["one_network", "BACKBONES", "OneResNet32", "OneVGG16", "OneDenseNet40"]


def gated_sum(gate, pro):
    """z_e = Σ_k g_k·z_k with the official ops (resnet_one.py L256-258; densenet_one.py L245-247): each weight
    repeated across the classes, products summed in branch order (the same bits, and gradients, as there)."""
    classes = pro.size(1)
    x_m = gate[:, 0].view(-1, 1).repeat(1, classes) * pro[:, :, 0]
    for i in range(1, pro.size(2)):
        x_m += gate[:, i].view(-1, 1).repeat(1, classes) * pro[:, :, i]
    return x_m


def gate_weights(network, x):
    """The gate, ONE §3: pool → FC → BN → ReLU → softmax over branches (resnet_one.py L250-255)."""
    x_c = network.avgpool_c(x).view(x.size(0), -1)
    return F.softmax(F.relu(network.bn_v1(network.control_v1(x_c))), dim=1)


def stacked(logits):
    """The branch logits on a last axis, concatenated one by one as the official forwards do."""
    pro = logits[0]
    for z in logits[1:]:
        pro = torch.cat([pro, z], -1)
    return pro


# ---- ResNet-32 (src/models/resnet_one.py) ---------------------------------------------------------------

class OneResNet32(nn.Module):
    _make_layer = ResNet32._make_layer  # the backbone's stage builder: 1×1-conv shortcuts (option B)

    def __init__(self, input_shape, num_classes: int, branches: int, shared_stage: bool = False, blocks=(5, 5, 5)):
        super().__init__()
        self.num_branches = branches
        trunk = build_resnet_trunk(self, input_shape[0], blocks)  # L150-155 (`fix_inplanes`)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # L156
        stage = None
        for i in range(branches):  # L157-160: each branch's stage, then its classifier
            if stage is None or not shared_stage:
                stage = self._make_layer(64, blocks[2], stride=2)
            setattr(self, f"layer3_{i}", stage)
            self.inplanes = trunk
            setattr(self, f"classifier3_{i}", nn.Linear(64, num_classes))
        # L162-165: the gate pools layer2's whole map (16×16 at 32×32 inputs: the official AvgPool2d(16))
        self.avgpool_c = nn.AvgPool2d(tuple((side + 1) // 2 for side in input_shape[1:]))
        self.control_v1 = nn.Linear(trunk, branches)
        self.bn_v1 = nn.BatchNorm1d(branches)
        init_resnet(self)  # L167-172

    def forward(self, x):  # L209-259
        x = resnet_trunk(self, x)
        logits = []
        for i in range(self.num_branches):
            h = self.avgpool(getattr(self, f"layer3_{i}")(x))
            logits.append(getattr(self, f"classifier3_{i}")(h.view(h.size(0), -1)).unsqueeze(-1))
        pro = stacked(logits)
        return pro, gated_sum(gate_weights(self, x), pro)


# ---- VGG-16 (src/models/vgg_one.py) ----------------------------------------------------------------------

class OneVGG16(nn.Module):
    _make_layers = VGG16._make_layers  # the backbone's stage builder: 3×3 conv-BN-ReLU ×n, then a 2×2 max-pool

    def __init__(self, input_shape, num_classes: int, branches: int, shared_stage: bool = False,
                 repeat_branch_forward: bool = False):
        super().__init__()
        self.num_branches = branches
        self.repeat_branch_forward = repeat_branch_forward
        self.inplanes = 64
        self.conv1 = nn.Conv2d(input_shape[0], 64, 3, padding=1)  # L42-47
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(2, 2)
        self.layer1 = self._make_layers(128, 2)  # L50-57
        self.layer2 = self._make_layers(256, 3)
        self.layer3 = self._make_layers(512, 3)
        stage = None
        for i in range(branches):  # L58-67: the backbone's layer4 and classifier per branch, nn.Dropout() = p 0.5
            if stage is None or not shared_stage:
                stage = self._make_layers(512, 3)
            setattr(self, f"layer3_{i}", stage)
            setattr(self, f"classifier3_{i}", vgg_classifier(num_classes, dropout=0.5))
        self.avgpool_c = nn.AdaptiveAvgPool2d((1, 1))  # L69-72
        self.control_v1 = nn.Linear(self.inplanes, branches)
        self.bn_v1 = nn.BatchNorm1d(branches)
        init_vgg(self)  # L75-85 (the gate's linear layer too)

    def _branch(self, i, x):
        h = getattr(self, f"layer3_{i}")(x)
        return getattr(self, f"classifier3_{i}")(h.view(h.size(0), -1))

    def forward(self, x):  # L96-160
        x = vgg_trunk(self, x)
        if self.repeat_branch_forward and self.training:
            with torch.no_grad():  # L110-119: results overwritten below; only BN statistics and dropout draws remain
                for i in range(self.num_branches):
                    self._branch(i, x)
        gate = gate_weights(self, x)  # L139-144
        first = self._branch(0, x)  # L146-157: z_e summed as the branches come
        x_m = gate[:, 0].view(-1, 1).repeat(1, first.size(1)) * first
        logits = [first.unsqueeze(-1)]
        for i in range(1, self.num_branches):
            z = self._branch(i, x)
            x_m += gate[:, i].view(-1, 1).repeat(1, z.size(1)) * z
            logits.append(z.unsqueeze(-1))
        return stacked(logits), x_m


# ---- DenseNet-40-12, BC (src/models/densenet_one.py) ----------------------------------------------------

class OneDenseNet40(nn.Module):
    def __init__(self, input_shape, num_classes: int, branches: int, shared_stage: bool = False, growth: int = 12,
                 blocks=(6, 6, 6), compression: float = 0.5, init_features: int = 24, bn_size: int = 4):
        super().__init__()
        self.num_branches = branches
        channels = build_densenet_trunk(self, input_shape[0], blocks, growth, bn_size, compression,  # L127-158
                                        init_features)
        stage = None
        for i in range(branches):  # L159-169
            if stage is None or not shared_stage:
                stage = DenseBlock(blocks[-1], channels, growth, bn_size)
            setattr(self, f"layer3_{i}", stage)
        self.avgpool_c = nn.AvgPool2d(8)  # L173-176: the gate reads the trunk's map
        self.control_v1 = nn.Linear(channels, branches)
        self.bn_v1 = nn.BatchNorm1d(branches)
        channels += blocks[-1] * growth  # L178
        for i in range(branches):  # L179-181
            setattr(self, f"norm_final_{i}", nn.BatchNorm2d(channels))
            setattr(self, f"relu_final_{i}", nn.ReLU(inplace=True))
        for i in range(branches):  # L183-184
            setattr(self, f"classifier3_{i}", nn.Linear(channels, num_classes))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # L187
        init_densenet(self)  # L190-197

    def forward(self, x):  # L201-248
        x = self.features(x)
        logits = []
        for i in range(self.num_branches):
            h = getattr(self, f"relu_final_{i}")(getattr(self, f"norm_final_{i}")(getattr(self, f"layer3_{i}")(x)))
            logits.append(getattr(self, f"classifier3_{i}")(self.avgpool(h).view(h.size(0), -1)).unsqueeze(-1))
        pro = stacked(logits)
        return pro, gated_sum(gate_weights(self, x), pro)


def one_network(backbone: str, input_shape, num_classes: int, branches: int, *, shared_stage: bool = False,
                repeat_branch_forward: bool = False) -> nn.Module:
    """The ONE network of `backbone` (one of BACKBONES) with `branches` branches (>= 2; ONE uses 3, the OKDPH
    runs 2: src/baseline.sh L16-26). `shared_stage`: the branches share one last stage (the official DenseNet);
    `repeat_branch_forward`: the official VGG's second pass of the branches in training."""
    if backbone not in BACKBONES:
        raise ConfigError(f"arch={backbone} has no ONE network; allowed: {', '.join(BACKBONES)}")
    check_branch_count(branches)
    if repeat_branch_forward and backbone != "okdph_vgg16":
        raise ConfigError(f"repeat_branch_forward=true is the official VGG-16 ONE's double pass; arch={backbone} has "
                          "none (allowed with okdph_vgg16 only)")
    if backbone == "okdph_resnet32":
        return OneResNet32(input_shape, num_classes, branches, shared_stage)
    _needs_32x32(backbone, input_shape)
    if backbone == "okdph_vgg16":
        return OneVGG16(input_shape, num_classes, branches, shared_stage, repeat_branch_forward)
    return OneDenseNet40(input_shape, num_classes, branches, shared_stage)
