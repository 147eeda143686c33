"""GoogLeNet / Inception v1 (Szegedy et al. 2014) for 32×32 inputs.

`googlenet` is the pytorch-cifar100 variant the RDML code uses (3×3 stem, the 5×5 branch as two 3×3
convolutions), with one correction: that code passes a branch's channel count as BatchNorm's `eps`
(`nn.BatchNorm2d(n3x3_reduce, n3x3)`), which is not inherited here. `inception_v1` keeps the original
5×5 branch, the network the DML paper calls InceptionV1.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Inception(nn.Module):
    def __init__(self, cin, n1, r3, n3, r5, n5, pool, five_as_two_threes: bool):
        super().__init__()
        self.b1 = nn.Sequential(*_conv(cin, n1, 1))
        self.b2 = nn.Sequential(*_conv(cin, r3, 1), *_conv(r3, n3, 3))
        five = [*_conv(r5, n5, 3), *_conv(n5, n5, 3)] if five_as_two_threes else _conv(r5, n5, 5)
        self.b3 = nn.Sequential(*_conv(cin, r5, 1), *five)
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv(cin, pool, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


MODULES = {  # name: (in, 1×1, 3×3 reduce, 3×3, 5×5 reduce, 5×5, pool proj), from the paper's Table 1
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    def __init__(self, input_shape, num_classes: int, five_as_two_threes: bool):
        super().__init__()
        self.stem = nn.Sequential(*_conv(input_shape[0], 64, 3), *_conv(64, 64, 3), *_conv(64, 192, 3))
        blocks = []
        for name, spec in MODULES.items():
            if name in ("4a", "5a"):
                blocks.append(nn.MaxPool2d(3, 2, 1))
            blocks.append(Inception(*spec, five_as_two_threes=five_as_two_threes))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.4), nn.Linear(1024, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def googlenet(input_shape, num_classes):
    return GoogLeNet(input_shape, num_classes, five_as_two_threes=True)


def inception_v1(input_shape, num_classes):
    return GoogLeNet(input_shape, num_classes, five_as_two_threes=False)
