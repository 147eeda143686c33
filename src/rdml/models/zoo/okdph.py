"""The CIFAR backbones of OKDPH (Zhang et al., CVPR 2023) as its code builds them: tianlizhang/OKDPH
src/models/{resnet,vgg,densenet}.py (commit f65b661; src unchanged through a562089), selected by
`model_dict` in src/models/__init__.py L26-39 and built as `model_dict[name](num_classes=...)`
(src/OKDPH.py L115 and the baselines, e.g. src/00_Base.py L68). The supplement's five backbones
(Sec. 1.2, Tables 5-6): ResNet-32, ResNet-110, VGG-16, DenseNet-40-12 and WRN-20-8.

- `okdph_resnet32`: resnet.py `ResNet(BasicBlock, [5, 5, 5])` (L198-209): torchvision's BasicBlock
  (L27-64) in three stages of 16, 32, 64 channels (L135-137), a 3×3 stride-1 stem without max-pool
  (L130-134), and shortcuts that change shape as a 1×1 stride-2 convolution + BatchNorm (option B,
  L164-168), not the parameter-free option A of rdml's `resnet32` (zoo.cifar_resnet); adaptive average
  pool, 64→classes linear. Conv weights Kaiming-normal (fan_out, relu), BN weight 1 and bias 0 (L141-146);
  the linear layer keeps PyTorch's default initialisation. 0.467M parameters at 10 classes, 0.473M at 100.
- `okdph_vgg16`: vgg.py `VGG(depth=16)` (L19-104), not torchvision's: conv1/conv2 (64) with BN, then
  stages of 2×128, 3×256, 3×512, 3×512 3×3 convolutions with bias, BN and ReLU, each ending in a 2×2
  max-pool (L29-39, L62-69; the first pool is `self.maxpool` after conv2); the 512×1×1 map is flattened
  (no average pool: 32×32 inputs only) into 512→512→512→classes with ReLU and Dropout(p=0.0) (L41-49;
  `dropout=0.0` is the default, L20, and nothing passes another). Conv weights Kaiming-normal (fan_out,
  relu) and biases 0; BN 1 and 0; linear weights N(0, 0.01), biases 0 (L50-60). 15.25M / 15.30M.
- `okdph_densenet40_12`: densenet.py `DenseNet(growth_rate=12, block_config=[6, 6, 6])` (L170-181) with
  its defaults (L100-102): DenseNet-BC, bottleneck layers BN-ReLU-1×1 conv (bn_size·k = 48)-BN-ReLU-3×3
  conv (L29-52), compression 0.5 (transitions BN-ReLU-1×1 conv-2×2 average pool, L55-62, L135-139),
  24 initial features from a 3×3 stride-1 convolution (small_inputs, L109-112), no dropout (drop_rate 0),
  a final BN (L142), then ReLU and `avg_pool2d(kernel_size=8)` (L162-163; 32×32 inputs only). Conv
  weights Kaiming-normal (fan_in, the default mode), BN 1 and 0, linear bias 0, linear weight PyTorch's
  default (L148-155). The name's "40" counts 3·6 layers of two convolutions, the first convolution, two
  transitions and the classifier. 0.176M / 0.188M. (rdml's `densenet40_12`, zoo.densenet, is the
  original DenseNet-40 without bottleneck or compression, 1.0M.)
- `okdph_resnet110` (`model_dict['resnet110']`, L31): resnet.py `ResNet(Bottleneck, [12, 12, 12])`
  (L211-222), ResNet-32's stem, stages, shortcut rule and initialisation (L109-196) with torchvision's
  (v1.5) Bottleneck (L67-107): 1×1 conv to planes-BN-ReLU, 3×3 conv carrying the stride-BN-ReLU, 1×1 conv
  to 4·planes-BN, shortcut, ReLU; stages end in 64, 128, 256 channels, the first block of each (layer1's
  too: 16 ≠ 64) with the 1×1 conv + BN shortcut (L164-168), and the classifier is 256→classes (L139).
  110 = 3·12 blocks of three convolutions + the stem + the classifier. 1.148M parameters at 10 classes,
  1.171M at 100 (rdml's `resnet110`, zoo.cifar_resnet, is He et al.'s basic-block ResNet-110, 1.7M).
- `okdph_wrn20_8` (`model_dict['wrn_20_8']`, L34): resnet.py `wide_resnet20_8`, `ResNet(Bottleneck,
  [2, 2, 2], width_per_group=64 * 8)` (L224-238), the same network with two Bottlenecks a stage whose
  inner width is int(planes·512/64) = 8·planes (L75): 128, 256, 512, the outer widths staying 64, 128,
  256 (torchvision's Wide-ResNet-50-2 rule; its docstring's "Wide ResNet-28-10", L226, is a leftover).
  20 = 3·2·3 + 2. 6.848M / 6.871M (rdml's `wrn_20_8`, zoo.wrn, is Zagoruyko & Komodakis' pre-activation
  basic-block WRN, 11.0M).

Module names, and the order in which modules are created, are the official ones: the state_dict keys
are the official keys (its checkpoints load as they are), and from the same torch seed a network starts
from exactly the official initial weights. The input's channel count replaces the hard-coded 3; the
official `KD` flag (returning the pooled features too) is left out.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from rdml.keys import ConfigError

__all__ = ["okdph_resnet32", "okdph_vgg16", "okdph_densenet40_12", "okdph_resnet110", "okdph_wrn20_8"]


# ---- ResNet-32 (src/models/resnet.py) ---------------------------------------------------------------

class BasicBlock(nn.Module):
    """torchvision's BasicBlock (resnet.py L27-64): 3×3-BN-ReLU-3×3-BN, plus the shortcut, then ReLU."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet32(nn.Module):
    def __init__(self, input_shape, num_classes: int, blocks=(5, 5, 5)):
        super().__init__()
        self.inplanes = 16
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, blocks[0])
        self.layer2 = self._make_layer(32, blocks[1], stride=2)
        self.layer3 = self._make_layer(64, blocks[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, count: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:  # resnet.py L164-168: 1×1 conv + BN (option B)
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def okdph_resnet32(input_shape, num_classes):
    return ResNet32(input_shape, num_classes)


# ---- VGG-16 (src/models/vgg.py) ---------------------------------------------------------------------

def _needs_32x32(name: str, input_shape) -> None:
    if tuple(input_shape[1:]) != (32, 32):
        raise ConfigError(f"arch={name} takes 32×32 inputs as the OKDPH code builds it (its head expects the "
                          f"{'512×1×1 map after five 2×2 max-pools' if 'vgg' in name else '8×8 map of avg_pool2d(8)'}), "
                          f"not {tuple(input_shape[1:])}")


class VGG16(nn.Module):
    def __init__(self, input_shape, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(input_shape[0], 64, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(True)
        self.layer1 = self._make_layers(128, 2)
        self.maxpool = nn.MaxPool2d(2, 2)
        self.layer2 = self._make_layers(256, 3)
        self.layer3 = self._make_layers(512, 3)
        self.layer4 = self._make_layers(512, 3)
        self.classifier = nn.Sequential(
            nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(512, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def _make_layers(self, planes: int, count: int) -> nn.Sequential:
        layers = []
        for _ in range(count):
            layers += [nn.Conv2d(self.inplanes, planes, 3, padding=1), nn.BatchNorm2d(planes), nn.ReLU(inplace=True)]
            self.inplanes = planes
        return nn.Sequential(*layers, nn.MaxPool2d(2, 2))

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.relu(self.bn2(self.conv2(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.classifier(x.flatten(1))


def okdph_vgg16(input_shape, num_classes):
    _needs_32x32("okdph_vgg16", input_shape)
    return VGG16(input_shape, num_classes)


# ---- DenseNet-40-12, BC (src/models/densenet.py) ------------------------------------------------------

class DenseLayer(nn.Module):
    """densenet.py `_DenseLayer` (L29-52): BN-ReLU-1×1 conv to bn_size·k, BN-ReLU-3×3 conv to k. It takes
    the concatenation of the block's earlier maps, which the block keeps as one running tensor."""

    def __init__(self, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.Module):
    """densenet.py `_DenseBlock` (L46-64): every layer takes one fresh concatenation of the block's input and all
    earlier outputs, and the block returns theirs. A running concatenation gives the same values, but sums the
    gradients in another order: the official steps are matched bit for bit only this way."""

    def __init__(self, layers: int, cin: int, growth: int, bn_size: int):
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth, growth, bn_size))

    def forward(self, x):
        features = [x]
        for layer in self.children():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(OrderedDict([("norm", nn.BatchNorm2d(cin)), ("relu", nn.ReLU(inplace=True)),
                                      ("conv", nn.Conv2d(cin, cout, 1, 1, bias=False)), ("pool", nn.AvgPool2d(2, 2))]))


class DenseNetBC(nn.Module):
    def __init__(self, input_shape, num_classes: int, growth: int = 12, blocks=(6, 6, 6), compression: float = 0.5,
                 init_features: int = 24, bn_size: int = 4):
        super().__init__()
        conv0 = nn.Conv2d(input_shape[0], init_features, 3, 1, 1, bias=False)
        self.features = nn.Sequential(OrderedDict([("conv0", conv0)]))
        channels = init_features
        for i, layers in enumerate(blocks):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(layers, channels, growth, bn_size))
            channels += layers * growth
            if i != len(blocks) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(channels, int(channels * compression)))
                channels = int(channels * compression)
        self.features.add_module("norm_final", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = F.relu(self.features(x), inplace=True)
        return self.classifier(F.avg_pool2d(x, kernel_size=8).flatten(1))


def okdph_densenet40_12(input_shape, num_classes):
    _needs_32x32("okdph_densenet40_12", input_shape)
    return DenseNetBC(input_shape, num_classes)


# ---- ResNet-110 and WRN-20-8: the Bottleneck ResNet (src/models/resnet.py) ---------------------------

class Bottleneck(nn.Module):
    """torchvision's (v1.5) Bottleneck (resnet.py L67-107): 1×1 to `width`-BN-ReLU, 3×3 (the stride here)
    -BN-ReLU, 1×1 to 4·planes-BN, plus the shortcut, then ReLU. width = int(planes · base_width / 64) (L75,
    groups 1): planes for ResNet-110, 8·planes for WRN-20-8's base_width 512."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 base_width: int = 64):
        super().__init__()
        width = int(planes * (base_width / 64.0))
        self.conv1 = nn.Conv2d(inplanes, width, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class BottleneckResNet(nn.Module):
    """resnet.py `ResNet(Bottleneck, ...)` (L109-196): ResNet-32's stem, stages (16, 32, 64 planes), shortcut
    rule and initialisation, with Bottleneck blocks, so the stages end in 64, 128, 256 channels and the
    classifier is 256→classes (L139)."""

    def __init__(self, input_shape, num_classes: int, blocks, width_per_group: int = 64):
        super().__init__()
        self.inplanes = 16
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, blocks[0])
        self.layer2 = self._make_layer(32, blocks[1], stride=2)
        self.layer3 = self._make_layer(64, blocks[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, count: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:  # L164-168: every stage's first block
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, self.base_width)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, base_width=self.base_width) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def okdph_resnet110(input_shape, num_classes):
    return BottleneckResNet(input_shape, num_classes, (12, 12, 12))


def okdph_wrn20_8(input_shape, num_classes):
    return BottleneckResNet(input_shape, num_classes, (2, 2, 2), width_per_group=64 * 8)
