"""The branched OKDDip networks of the OKDPH code (tianlizhang/OKDPH at a562089: src/models/resnet_okddip.py,
vgg_okddip.py, densenet_okddip.py, the `*_okddip` entries of `model_dict`, src/models/__init__.py L47–53),
built from rdml's OKDPH backbones (rdml.models.zoo.okdph: their blocks and stage builders) in the
official module names and creation order, so that from one torch seed a network starts from exactly the
official initial weights and its state_dict keys are the official keys.

A network of n branches shares its trunk; each branch is the backbone's last stage and a classifier of
its own. Branches 0..n−2 are the auxiliary peers, branch n−1 the group leader (Chen et al., AAAI 2020).
`forward` returns, as the official `forward` (e.g. resnet_okddip.py L187–246),

    pro   B×C×P  the peers' logits, one column per peer,
    x_m   B×C×P  each peer's target: x_m[:, :, a] = Σ_b softmax_b(q_a·k_b) pro[:, :, b],
    lead  B×C    the leader's logits,

with q = W_q h and k = W_k h linear projections (no bias) of a peer's pooled features h of width D to D // 8
(`factor=8`: ResNet-32 64→8, VGG-16 512→64, DenseNet-40-12 132→16), and the dot products not scaled
(L238–240). With two branches there is one peer, whose attention is a 1×1 softmax: x_m = pro.

- `okddip_resnet32` (resnet_okddip.py L109–185, L248–259): the stem, layer1 and layer2 are shared; branch i
  is `layer3_i` (5 BasicBlocks, 64 channels, stride 2) and `classifier3_i` (64→C). Projections of width
  64 (`input_channel=lookup('resnet32')`, src/04_OKDDip.py L40–42, L122–125). Conv weights Kaiming-normal
  (fan_out), BN 1 and 0; linear layers PyTorch's default (L147–152).
- `okddip_vgg16` (vgg_okddip.py L19–138): conv1, conv2, layer1–layer3 shared; branch i is `layer3_i` (the
  backbone's fourth stage: 3×512 convolutions and a max-pool) and `classifier3_i` 512→512→512→C with
  Dropout(p=0.5) (L20: `dropout=0.5`, which src/04_OKDDip.py L127 leaves; the OKDPH VGG-16 has 0.0).
  Linear weights N(0, 0.01) but their biases keep PyTorch's default (L65–66: not set to 0 as in vgg.py);
  the projections, created before that loop, are N(0, 0.01) too.
- `okddip_densenet40_12` (densenet_okddip.py L114–249, L257–268): the features (conv0, dense blocks 1–2,
  transitions) shared; each branch a third dense block `Branch{i}`, `norm_final_i` + `relu_final_i` and
  `classifier3_i` (132→C), as the other backbones' branches. Projections of width 132 (the default
  `input_channel`, L128), created after the initialisation loop (L195–206): PyTorch's default. As released
  (`as_released=True`, the official network bit for bit), three things differ: ONE third dense block object
  is registered as `Branch0`..`Branch{n−1}` (L170–180), so every branch runs the same weights and
  batch-norm statistics (the state_dict lists them under each name) and differs from the others only in
  its norm_final and classifier; every branch, the leader's included, is a column of pro and x_m (L226–243:
  the peers' loop runs to n−1), so the leader is attended to and averaged as a peer; and the leader's
  logits are `classifier3_{n−1}` of the pooled block output WITHOUT its norm_final and ReLU (L245–248).
  The block then runs n + 1 times per forward, updating its batch-norm statistics each time. The same
  network is in the OKDDip authors' code (DefangChen/OKDDip models/model_cifar/densenet_GL.py), and ONE's
  DenseNet shares its block the same way (src/models/densenet_one.py L160–169).

The input's channel count replaces the hard-coded 3. VGG-16 takes 32×32 inputs only (its classifiers read the
512×1×1 map); the DenseNet here pools adaptively (L185), unlike the OKDPH backbone's avg_pool2d(8), so it
takes any size, as the ResNet does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdml.core.branched import check_branch_count
from rdml.keys import ConfigError
from rdml.models.zoo.branches import (build_densenet_trunk, build_resnet_trunk, build_vgg_trunk, init_densenet,
                                      init_resnet, init_vgg, resnet_trunk, vgg_classifier, vgg_trunk)
from rdml.models.zoo.okdph import DenseBlock, ResNet32, VGG16, _needs_32x32

__all__ = ["BRANCHED", "okddip_network", "okddip_resnet32", "okddip_vgg16", "okddip_densenet40_12", "FACTOR"]

FACTOR = 8  # the projections' width is the features' // 8 (resnet_okddip.py L110, vgg L20, densenet L128)


class PeersAndLeader(nn.Module):
    """The official forward over a shared trunk (e.g. resnet_okddip.py L187–246): peers' logits, their
    attention-weighted targets, the leader's logits. Subclasses give `trunk`, `peer_features(i, h)`,
    `leader_features(h)` and `peers`, the number of columns of pro."""

    peers: int

    def forward(self, x):
        h = self.trunk(x)
        logits, queries, keys = [], [], []
        for i in range(self.peers):  # each peer's projections, then its classifier (the official order)
            features = self.peer_features(i, h)
            queries.append(self.query_weight(features))
            keys.append(self.key_weight(features))
            logits.append(getattr(self, f"classifier3_{i}")(features))
        pro = torch.stack(logits, -1)  # B x C x P
        proj_q, proj_k = torch.stack(queries, 1), torch.stack(keys, 1)  # B x P x D/8
        attention = F.softmax(torch.bmm(proj_q, proj_k.permute(0, 2, 1)), dim=-1)  # L238-239: no 1/sqrt(d)
        x_m = torch.bmm(pro, attention.permute(0, 2, 1))  # L240
        leader = getattr(self, f"classifier3_{self.branches - 1}")(self.leader_features(h))
        return pro, x_m, leader

    def init_projections(self, width: int) -> None:
        self.query_weight = nn.Linear(width, width // FACTOR, bias=False)
        self.key_weight = nn.Linear(width, width // FACTOR, bias=False)


class OKDDipResNet32(PeersAndLeader):
    """resnet_okddip.py `ResNet(BasicBlock, [5, 5, 5], num_branches=n, input_channel=64)`."""

    def __init__(self, input_shape, num_classes: int, branches: int, blocks=(5, 5, 5)):
        super().__init__()
        self.branches, self.peers = branches, branches - 1
        trunk_planes = build_resnet_trunk(self, input_shape[0], blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        for i in range(branches):  # L139-142
            setattr(self, f"layer3_{i}", ResNet32._make_layer(self, 64, blocks[2], stride=2))
            self.inplanes = trunk_planes
            setattr(self, f"classifier3_{i}", nn.Linear(64, num_classes))
        self.init_projections(64)  # L144-145
        init_resnet(self)  # L147-152

    trunk = resnet_trunk

    def peer_features(self, i, h):
        return self.avgpool(getattr(self, f"layer3_{i}")(h)).flatten(1)

    def leader_features(self, h):
        return self.peer_features(self.branches - 1, h)


class OKDDipVGG16(PeersAndLeader):
    """vgg_okddip.py `VGG(depth=16, num_branches=n)` with its default dropout 0.5."""

    def __init__(self, input_shape, num_classes: int, branches: int, dropout: float = 0.5):
        super().__init__()
        self.branches, self.peers = branches, branches - 1
        build_vgg_trunk(self, input_shape[0])
        for i in range(branches):  # L40-51
            setattr(self, f"layer3_{i}", VGG16._make_layers(self, 512, 3))
            setattr(self, f"classifier3_{i}", vgg_classifier(num_classes, dropout))
        self.init_projections(512)  # L53-55
        init_vgg(self, linear_bias=False)  # L57-66: the linear biases keep their default draw

    trunk = vgg_trunk

    def peer_features(self, i, h):
        return getattr(self, f"layer3_{i}")(h).flatten(1)

    def leader_features(self, h):
        return self.peer_features(self.branches - 1, h)


class OKDDipDenseNet(PeersAndLeader):
    """densenet_okddip.py `DenseNet(growth_rate=12, block_config=[6, 6, 6], num_branches=n)`. As released: one
    last dense block shared by every branch, every branch a column of pro, the leader without its norm_final;
    otherwise each branch has its own block, the peers are branches 0..n−2 and the leader is read as they are."""

    def __init__(self, input_shape, num_classes: int, branches: int, as_released: bool = False, growth: int = 12,
                 blocks=(6, 6, 6), compression: float = 0.5, init_features: int = 24, bn_size: int = 4):
        super().__init__()
        self.branches, self.as_released = branches, as_released
        self.peers = branches if as_released else branches - 1
        channels = build_densenet_trunk(self, input_shape[0], blocks, growth, bn_size, compression,  # L153-169
                                        init_features)
        last = DenseBlock(blocks[-1], channels, growth, bn_size) if as_released else None
        for i in range(branches):  # L179-180: as released, the same block under every name
            setattr(self, f"Branch{i}", last if last is not None else DenseBlock(blocks[-1], channels, growth, bn_size))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        channels += blocks[-1] * growth
        for i in range(branches):  # L188-190
            setattr(self, f"norm_final_{i}", nn.BatchNorm2d(channels))
            setattr(self, f"relu_final_{i}", nn.ReLU(inplace=True))
        for i in range(branches):  # L192-193
            setattr(self, f"classifier3_{i}", nn.Linear(channels, num_classes))
        init_densenet(self)  # L196-203
        self.init_projections(channels)  # L205-206, after the loop

    def trunk(self, x):
        return self.features(x)

    def peer_features(self, i, h):
        h = getattr(self, f"relu_final_{i}")(getattr(self, f"norm_final_{i}")(getattr(self, f"Branch{i}")(h)))
        return self.avgpool(h).flatten(1)

    def leader_features(self, h):
        if not self.as_released:
            return self.peer_features(self.branches - 1, h)
        return self.avgpool(getattr(self, f"Branch{self.branches - 1}")(h)).flatten(1)  # L245-247


def okddip_resnet32(input_shape, num_classes, branches):
    return OKDDipResNet32(input_shape, num_classes, branches)


def okddip_vgg16(input_shape, num_classes, branches):
    _needs_32x32("okdph_vgg16", input_shape)
    return OKDDipVGG16(input_shape, num_classes, branches)


def okddip_densenet40_12(input_shape, num_classes, branches, as_released=False):
    return OKDDipDenseNet(input_shape, num_classes, branches, as_released)


# the backbone a run names (its `arch`) → its branched network (src/models/__init__.py L47-53)
BRANCHED = {"okdph_resnet32": okddip_resnet32, "okdph_vgg16": okddip_vgg16, "okdph_densenet40_12": okddip_densenet40_12}


def okddip_network(arch: str, input_shape, num_classes: int, branches: int,
                   densenet_as_released: bool = False) -> PeersAndLeader:
    """The branched network of backbone `arch` with `branches` branches (n−1 peers and the leader); the DenseNet
    as released where `densenet_as_released` (the ResNet's and VGG's branches are the paper's as released)."""
    if arch not in BRANCHED:
        raise ConfigError(f"arch={arch}: okddip builds its branched network from one of {', '.join(BRANCHED)} "
                          "(the backbones of the official *_okddip models)")
    check_branch_count(branches, "peers and a leader")
    if densenet_as_released and arch != "okdph_densenet40_12":
        raise ConfigError(f"densenet_as_released=true is the released DenseNet-40-12's branches; arch={arch} has no "
                          "other (set it with arch=okdph_densenet40_12 only)")
    if arch == "okdph_densenet40_12":
        return okddip_densenet40_12(input_shape, num_classes, branches, densenet_as_released)
    return BRANCHED[arch](input_shape, num_classes, branches)
