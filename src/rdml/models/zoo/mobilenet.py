"""MobileNet v1 (Howard et al. 2017) for 32×32 inputs: a 3×3 stride-1 stem, then 13 depthwise-
separable blocks to 1024 channels; width multiplier 1."""

from __future__ import annotations

from torch import nn

BLOCKS = (64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)


def mobilenet(input_shape, num_classes):
    layers = [nn.Conv2d(input_shape[0], 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True)]
    cin = 32
    for spec in BLOCKS:
        cout, stride = spec if isinstance(spec, tuple) else (spec, 1)
        layers += [
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        ]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, num_classes))
