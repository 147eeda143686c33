"""ResNet-18/34/50/152 (He et al. 2016, ImageNet widths 64–512) with a 3×3 stride-1 stem and no max
pool, the usual adaptation to 32×32 (and 28×28) inputs, as in pytorch-cifar100 which the RDML code uses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
        )
        self.shortcut = _shortcut(cin, width, stride)

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block, counts, input_shape, num_classes: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        layers, cin = [], 64
        for width, count, stride in zip((64, 128, 256, 512), counts, (1, 2, 2, 2)):
            for i in range(count):
                layers.append(block(cin, width, stride if i == 0 else 1))
                cin = width * block.expansion
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def resnet18(input_shape, num_classes):
    return ResNet(Basic, (2, 2, 2, 2), input_shape, num_classes)


def resnet34(input_shape, num_classes):
    return ResNet(Basic, (3, 4, 6, 3), input_shape, num_classes)


def resnet50(input_shape, num_classes):
    return ResNet(Bottleneck, (3, 4, 6, 3), input_shape, num_classes)


def resnet152(input_shape, num_classes):
    return ResNet(Bottleneck, (3, 8, 36, 3), input_shape, num_classes)
