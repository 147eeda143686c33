"""OKDPH's CIFAR backbones (rdml.models.zoo.okdph) against a transcription of the official modules:
tianlizhang/OKDPH src/models/resnet.py (ResNet-32, ResNet-110, WRN-20-8), vgg.py and densenet.py (commit
f65b661, src unchanged through a562089). Same state_dict keys and shapes, parameter counts, initial weights
from the same seed, layers in the same order, and the same outputs with the same weights."""

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import count, randomise_batch_norm, trace
from official_okdph import (OfficialDenseBlock, OfficialTransition, conv1x1, conv3x3, official_init_densenet,
                            official_init_resnet, official_init_vgg, official_make_layers)
from rdml.data.catalog import DataSpec
from rdml.keys import ConfigError
from rdml.models import build_model
from rdml.models.catalog import ARCHITECTURES
from rdml.models.zoo.okdph import okdph_densenet40_12, okdph_resnet32, okdph_resnet110, okdph_vgg16, okdph_wrn20_8

# ---- the official modules, transcribed ----------------------------------------------------------------
# What the OKDPH runs use of each file: the branches they never take (dilation, zero_init_residual, large
# inputs, checkpointing, dropout, KD outputs) are left out; the rest is line for line. conv3x3/conv1x1
# (resnet.py L18-25), the DenseNet blocks (densenet.py L20-83), VGG's _make_layers (vgg.py L62-69) and the
# three initialisation loops are shared with the baselines' tests: tests/official_okdph.py. The ResNet blocks
# and _make_layer stay here: ResNet-110 and WRN-20-8 pass `groups` and `base_width` (width_per_group=512) to
# the block, which tests/official_okdph.py's BasicBlock and official_make_layer (groups 1, base_width 64) omit.


class OfficialBasicBlock(nn.Module):  # resnet.py L27-64
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError('BasicBlock only supports groups=1 and base_width=64')
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class OfficialBottleneck(nn.Module):  # resnet.py L67-107
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class OfficialResNet(nn.Module):  # resnet.py L109-196; resnet32, resnet110, wide_resnet20_8 (L198-238)
    def __init__(self, block, layers, num_classes=10, groups=1, width_per_group=64):
        super().__init__()
        self.inplanes = 16
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, layers[0])
        self.layer2 = self._make_layer(block, 32, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 64, layers[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64 * block.expansion, num_classes)
        official_init_resnet(self)  # resnet.py L141-146

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.avgpool(x)
        x_f = x.view(x.size(0), -1)
        return self.fc(x_f)


class OfficialVGG(nn.Module):  # vgg.py L19-92; vgg16 = VGG(depth=16) (L94-104)
    def __init__(self, num_classes=10, depth=16, dropout=0.0):
        super().__init__()
        self.inplances = 64
        self.conv1 = nn.Conv2d(3, self.inplances, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplances)
        self.conv2 = nn.Conv2d(self.inplances, self.inplances, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(self.inplances)
        self.relu = nn.ReLU(True)
        self.layer1 = self._make_layers(128, 2)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        num_layer = 3 if depth == 16 else 4
        self.layer2 = self._make_layers(256, num_layer)
        self.layer3 = self._make_layers(512, num_layer)
        self.layer4 = self._make_layers(512, num_layer)
        self.classifier = nn.Sequential(
            nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(512, num_classes),
        )
        official_init_vgg(self)  # vgg.py L50-60

    _make_layers = official_make_layers  # vgg.py L62-69

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.conv2(x)
        x = self.bn2(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x_f = x.view(x.size(0), -1)
        return self.classifier(x_f)


class OfficialDenseNet(nn.Module):  # densenet.py L86-168 (small_inputs=True, drop_rate=0); densenetd40k12 L170-181
    def __init__(self, growth_rate=12, block_config=[16, 16, 16], compression=0.5, num_init_features=24, bn_size=4,
                 num_classes=10):
        super().__init__()
        self.avgpool_size = 8
        self.features = nn.Sequential(OrderedDict([
            ('conv0', nn.Conv2d(3, num_init_features, kernel_size=3, stride=1, padding=1, bias=False)),
        ]))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = OfficialDenseBlock(num_layers=num_layers, num_input_features=num_features, bn_size=bn_size,
                                       growth_rate=growth_rate)
            self.features.add_module('denseblock%d' % (i + 1), block)
            num_features = num_features + num_layers * growth_rate
            if i != len(block_config) - 1:
                trans = OfficialTransition(num_input_features=num_features,
                                           num_output_features=int(num_features * compression))
                self.features.add_module('transition%d' % (i + 1), trans)
                num_features = int(num_features * compression)
        self.features.add_module('norm_final', nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        official_init_densenet(self)  # densenet.py L148-155

    def forward(self, x):
        features = self.features(x)
        x = F.relu(features, inplace=True)
        x_f = F.avg_pool2d(x, kernel_size=self.avgpool_size).view(features.size(0), -1)
        return self.classifier(x_f)


OFFICIAL = {  # models/__init__.py model_dict: 'resnet32', 'vgg16', 'densenet-40-12', 'resnet110', 'wrn_20_8'
    "okdph_resnet32": (okdph_resnet32, lambda classes: OfficialResNet(OfficialBasicBlock, [5, 5, 5], num_classes=classes)),
    "okdph_vgg16": (okdph_vgg16, lambda classes: OfficialVGG(num_classes=classes, depth=16)),
    "okdph_densenet40_12": (okdph_densenet40_12,
                            lambda classes: OfficialDenseNet(growth_rate=12, block_config=[6, 6, 6], num_classes=classes)),
    "okdph_resnet110": (okdph_resnet110,  # resnet.py L211-222
                        lambda classes: OfficialResNet(OfficialBottleneck, [12, 12, 12], num_classes=classes)),
    "okdph_wrn20_8": (okdph_wrn20_8,  # resnet.py L224-238
                      lambda classes: OfficialResNet(OfficialBottleneck, [2, 2, 2], width_per_group=64 * 8,
                                                     num_classes=classes)),
}
NAMES = list(OFFICIAL)


# ---- parameter counts ---------------------------------------------------------------------------------

def _conv(cin, cout, k, bias=False):
    return k * k * cin * cout + (cout if bias else 0)


def _hand_count(name, classes):
    """Layer by layer: conv k×k cin→cout k²·cin·cout (+cout bias), BatchNorm 2·c, linear cin·cout + cout."""
    if name == "okdph_resnet32":
        total, cin = _conv(3, 16, 3) + 32, 16
        for cout in (16, 32, 64):
            for i in range(5):
                total += _conv(cin, cout, 3) + _conv(cout, cout, 3) + 4 * cout
                if cin != cout:  # the first block of stages 2 and 3: 1×1 conv + BN shortcut
                    total += _conv(cin, cout, 1) + 2 * cout
                cin = cout
        return total + 64 * classes + classes
    if name == "okdph_vgg16":
        widths, total, cin = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512), 0, 3
        for cout in widths:
            total += _conv(cin, cout, 3, bias=True) + 2 * cout
            cin = cout
        return total + 2 * (512 * 512 + 512) + 512 * classes + classes
    if name in ("okdph_resnet110", "okdph_wrn20_8"):  # Bottleneck cin→w (1×1), w→w (3×3), w→4p (1×1)
        per_stage, widen = (12, 1) if name == "okdph_resnet110" else (2, 8)
        total, cin = _conv(3, 16, 3) + 32, 16
        for planes in (16, 32, 64):
            w, cout = planes * widen, 4 * planes
            for i in range(per_stage):
                total += _conv(cin, w, 1) + _conv(w, w, 3) + _conv(w, cout, 1) + 2 * (w + w + cout)
                if i == 0:  # every stage's first block, layer1's too (16 → 64): 1×1 conv + BN shortcut
                    total += _conv(cin, cout, 1) + 2 * cout
                cin = cout
        return total + 256 * classes + classes
    total, channels = _conv(3, 24, 3), 24
    for block in range(3):
        for _ in range(6):
            total += 2 * channels + _conv(channels, 48, 1) + 2 * 48 + _conv(48, 12, 3)
            channels += 12
        if block < 2:
            total += 2 * channels + _conv(channels, channels // 2, 1)
            channels //= 2
    return total + 2 * channels + channels * classes + classes


COUNTS = {  # exact, at 10 and 100 classes
    "okdph_resnet32": (466_906, 472_756),
    "okdph_vgg16": (15_253_578, 15_299_748),
    "okdph_densenet40_12": (176_122, 188_092),
    "okdph_resnet110": (1_147_738, 1_170_868),
    "okdph_wrn20_8": (6_848_090, 6_871_220),
}


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts(name):
    ours, theirs = OFFICIAL[name]
    for classes, expected in zip((10, 100), COUNTS[name]):
        assert count(ours((3, 32, 32), classes)) == count(theirs(classes)) == _hand_count(name, classes) == expected


@pytest.mark.parametrize("name,millions,digits", [("okdph_resnet32", (0.467, 0.473), 3), ("okdph_vgg16", (15.25, 15.30), 2),
                                                 ("okdph_densenet40_12", (0.176, 0.188), 3),
                                                 ("okdph_resnet110", (1.148, 1.171), 3), ("okdph_wrn20_8", (6.848, 6.871), 3)])
def test_counts_in_millions(name, millions, digits):
    for classes, m in zip((10, 100), millions):
        assert round(count(build_model(name, DataSpec("images", classes, (3, 32, 32)))) / 1e6, digits) == m


def test_registered_as_image_architectures():
    for name in NAMES:
        arch = ARCHITECTURES[name]
        assert arch.builder == f"zoo.okdph:{name}" and arch.kinds == ("images",) and arch.weights is None


# ---- structure, initialisation and computation --------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("classes", [10, 100])
def test_state_dict_keys_and_shapes_are_the_official_ones(name, classes):
    ours, theirs = OFFICIAL[name]
    mine, official = ours((3, 32, 32), classes).state_dict(), theirs(classes).state_dict()
    assert [(k, t.shape) for k, t in mine.items()] == [(k, t.shape) for k, t in official.items()]


@pytest.mark.parametrize("name", NAMES)
def test_initial_weights_are_the_official_ones_from_the_same_seed(name):
    """Same modules created in the same order, same init calls: every tensor equal, bit for bit."""
    ours, theirs = OFFICIAL[name]
    torch.manual_seed(3)
    mine = ours((3, 32, 32), 100).state_dict()
    torch.manual_seed(3)
    official = theirs(100).state_dict()
    assert all(torch.equal(mine[k], official[k]) for k in official)
    torch.manual_seed(4)
    assert not torch.equal(ours((3, 32, 32), 100).state_dict()[next(iter(official))], next(iter(official.values())))


def test_initialisation_follows_the_official_rules():
    """ResNet: conv Kaiming-normal fan_out; VGG: conv bias 0, linear N(0, 0.01) and bias 0; DenseNet:
    conv Kaiming-normal fan_in, linear bias 0 (weight PyTorch's default); BN 1 and 0 everywhere."""
    torch.manual_seed(0)
    resnet, vgg, dense = (build((3, 32, 32), 100) for build in (okdph_resnet32, okdph_vgg16, okdph_densenet40_12))
    for model in (resnet, vgg, dense):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert (m.weight == 1).all() and (m.bias == 0).all()
    w = resnet.layer3[1].conv1.weight  # 64→64 3×3, fan_out 576: std sqrt(2/576)
    assert w.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)
    assert resnet.fc.weight.abs().max().item() <= 1 / 64 ** 0.5  # PyTorch default: U(±1/sqrt(fan_in))
    linears = [m for m in vgg.modules() if isinstance(m, nn.Linear)]
    assert all((m.bias == 0).all() for m in linears)
    assert linears[0].weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert all((m.bias == 0).all() for m in vgg.modules() if isinstance(m, nn.Conv2d))
    conv = dense.features.denseblock3.denselayer6.conv1  # 120→48 1×1 (60 + 5·12 in), fan_in 120: std sqrt(2/120)
    assert conv.weight.std().item() == pytest.approx((2 / 120) ** 0.5, rel=0.1)
    assert (dense.classifier.bias == 0).all() and dense.classifier.weight.abs().max().item() <= 1 / 132 ** 0.5


def test_bottleneck_initialisation_follows_the_official_rules():
    """ResNet-110 and WRN-20-8 (resnet.py L141-146): conv Kaiming-normal fan_out, BN 1 and 0, the 256→classes
    linear PyTorch's default."""
    torch.manual_seed(0)
    for model, width in ((okdph_resnet110((3, 32, 32), 100), 64), (okdph_wrn20_8((3, 32, 32), 100), 512)):
        assert all((m.weight == 1).all() and (m.bias == 0).all() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
        w = model.layer3[1].conv2.weight  # width→width 3×3, fan_out 9·width
        assert w.shape == (width, width, 3, 3) and w.std().item() == pytest.approx((2 / (9 * width)) ** 0.5, rel=0.05)
        bound = 1 / 256 ** 0.5  # U(±1/sqrt(fan_in)) for weight and bias
        assert model.fc.weight.abs().max().item() <= bound and 0.9 * bound < model.fc.bias.abs().max().item() <= bound


@pytest.mark.parametrize("name", NAMES)
def test_layers_run_in_the_official_order(name):
    """Layer by layer: kind, kernel, stride, padding, bias, dropout p, and output shape."""
    ours, theirs = OFFICIAL[name]
    x = torch.randn(2, 3, 32, 32)
    assert trace(ours((3, 32, 32), 10), x, ()) == trace(theirs(10), x, ())


def test_the_shapes_the_paper_names():
    """DenseNet-40-12 ends in 132 channels at 8×8; VGG's head flattens a 512×1×1 map; ResNet-32 ends at 64×8×8."""
    x = torch.randn(1, 3, 32, 32)
    dense = dict(_trace_named(okdph_densenet40_12((3, 32, 32), 10), x))
    assert dense["features.norm_final"] == (1, 132, 8, 8) and dense["features.transition1.conv"][1] == 48
    assert dict(_trace_named(okdph_vgg16((3, 32, 32), 10), x))["layer4.9"] == (1, 512, 1, 1)
    assert dict(_trace_named(okdph_resnet32((3, 32, 32), 10), x))["layer3.4.bn2"] == (1, 64, 8, 8)


def test_the_bottleneck_networks_depths_and_widths():
    """ResNet-110: 3·12 Bottlenecks of three convolutions + stem + classifier = 110 weighted layers on the main
    path (the three 1×1 shortcuts aside), ending at 256×8×8. WRN-20-8: 3·2·3 + 2 = 20, inner widths 8× ResNet's
    (128, 256, 512), outer ones 64, 128, 256; the 3×3 convolution carries the stride (torchvision v1.5)."""
    x = torch.randn(1, 3, 32, 32)
    for build, depth, widen in ((okdph_resnet110, 110, 1), (okdph_wrn20_8, 20, 8)):
        model = build((3, 32, 32), 10)
        names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert len([n for n in names if "downsample" not in n]) == depth and len(names) == depth + 3
        shapes = dict(_trace_named(model, x))
        last = len(model.layer3) - 1
        assert shapes[f"layer3.{last}.bn3"] == (1, 256, 8, 8) and model.fc.in_features == 256
        for stage, (planes, size) in enumerate(((16, 32), (32, 16), (64, 8)), start=1):
            before = size if stage == 1 else 2 * size  # the 1×1 convolution keeps the stage's input size
            assert shapes[f"layer{stage}.0.conv1"] == (1, planes * widen, before, before)
            assert shapes[f"layer{stage}.0.conv2"] == (1, planes * widen, size, size)
            assert shapes[f"layer{stage}.0.downsample.1"] == (1, 4 * planes, size, size)


def _trace_named(model, x):
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: calls.append((n, tuple(o.shape))))
             for n, m in model.named_modules() if n and not list(m.children())]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return calls


@pytest.mark.parametrize("name", NAMES)
def test_outputs_equal_the_official_ones_with_the_same_weights(name):
    ours, theirs = OFFICIAL[name]
    official = theirs(100)
    randomise_batch_norm(official)
    mine = ours((3, 32, 32), 100)
    mine.load_state_dict(official.state_dict())  # strict: the official keys
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(mine.eval()(x), official.eval()(x), atol=1e-5)
        assert torch.allclose(mine.train()(x), official.train()(x), atol=1e-5)  # batch statistics; no dropout
    assert all(torch.allclose(mine.state_dict()[k], v) for k, v in official.state_dict().items())  # running stats alike


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_through_build_model(name):
    model = build_model(name, DataSpec("images", 10, (3, 32, 32)))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_other_inputs():
    """The ResNets pool adaptively (grey 28×28 works); VGG and DenseNet heads fit 32×32 maps alone."""
    for name in ("okdph_resnet32", "okdph_resnet110", "okdph_wrn20_8"):
        assert build_model(name, DataSpec("images", 10, (1, 28, 28)))(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    for name in ("okdph_vgg16", "okdph_densenet40_12"):
        with pytest.raises(ConfigError, match=f"arch={name} takes 32×32 inputs"):
            build_model(name, DataSpec("images", 10, (1, 28, 28)))
        assert build_model(name, DataSpec("images", 10, (1, 32, 32)))(torch.randn(2, 1, 32, 32)).shape == (2, 10)
