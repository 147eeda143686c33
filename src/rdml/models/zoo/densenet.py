"""DenseNet-40 with growth rate 12 (Huang et al. 2017): three dense blocks of 12 BN-ReLU-3×3 layers,
transitions of BN-ReLU-1×1 conv and 2×2 average pooling, no bottleneck and no compression."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(cin), nn.Conv2d(cin, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], 1)


def densenet40_12(input_shape, num_classes, growth: int = 12, layers: int = 12):
    modules, channels = [nn.Conv2d(input_shape[0], 16, 3, 1, 1, bias=False)], 16
    for block in range(3):
        for _ in range(layers):
            modules.append(DenseLayer(channels, growth))
            channels += growth
        if block < 2:
            modules += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1, bias=False), nn.AvgPool2d(2)]
    modules += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*modules)
