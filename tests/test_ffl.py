"""FFL (rdml.methods.ffl, rdml.models.zoo.ffl) against a transcription of the official OKDPH code that ran the
supplement's FFL column (tianlizhang/OKDPH at a562089: src/05_FFL.py, src/models/resnet_ffl.py, vgg_ffl.py,
densenet_ffl.py): the networks' parameters and initial weights from the same seed, the loss and the ramp-up,
three whole training steps bit for bit, and a run's outputs and learning rates."""

import copy
import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import Variable

from conftest import count, resumes_to_the_uninterrupted_run, run
from official_okdph import (OfficialDenseBlock, OfficialTransition, SGD, get_current_consistency_weight,
                            official_init_densenet, official_init_vgg, official_make_layers)
from rdml.config import load_config, resolve
from rdml.data.catalog import DataSpec
from rdml.keys import ConfigError
from rdml.methods import METHODS
from rdml.methods import ffl as ffl_method  # noqa: F401  (registers "ffl")
from rdml.methods.ffl import FeatureFusion, consistency_weight, ffl_kl, ffl_loss, ffl_terms
from rdml.models.zoo.ffl import FFLDenseNet40, FFLResNet32, FFLVGG16, ffl_backbone, fusion_module
from rdml.train.cohort import Student
from rdml.train.optim import make_optimizer, make_scheduler

# ---- The official code, transcribed (only what the FFL runs use; the blocks, the ramp-up and the optimiser
# shared with the other baselines: tests/official_okdph.py) ------------------------------------------------


class OfficialBasicBlock(nn.Module):  # resnet_ffl.py L43-72
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, base_width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class OfficialFFLResNet(nn.Module):  # resnet_ffl.py L172-248; resnet32_ffl = FFL_ResNet(BasicBlock, [5,5,5]) (L300-304)
    def __init__(self, block, layers, num_classes=1000, num_branches=2, width_per_group=64, kim_init=False):
        super().__init__()
        self.num_branches = num_branches
        self.inplanes = 16
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, layers[0])
        self.layer2 = self._make_layer(block, 32, layers[1], stride=2)
        fix_inplanes = self.inplanes
        for bid in range(1, self.num_branches + 1):
            setattr(self, f'layer3_{bid}', self._make_layer(block, 64, layers[2], stride=2))
            self.inplanes = fix_inplanes
        self.avgpool = nn.AvgPool2d(8)
        for bid in range(1, self.num_branches + 1):
            setattr(self, f'classfier3_{bid}', nn.Linear(64 * block.expansion, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                # L208; kim_init: Kim et al.'s line instead (Jangho-Kim/FFL-pytorch our_network.py L204)
                m.weight.data.normal_(0, math.sqrt(2. / n) if kim_init else math.sqrt(2. / layers[0]))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride,
                                                 bias=False), nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, base_width=self.base_width)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, base_width=self.base_width))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        fmap, out_list = [], []
        for bid in range(1, self.num_branches + 1):
            x_3 = getattr(self, f'layer3_{bid}')(x)
            fmap.append(x_3)
            x_3 = self.avgpool(x_3)
            x_3 = x_3.view(x_3.size(0), -1)
            out_list.append(getattr(self, f'classfier3_{bid}')(x_3))
        return out_list, fmap


class OfficialFusionModule(nn.Module):
    """resnet_Fusion_module (resnet_ffl.py L251-282); vgg_Fusion_module (vgg_ffl.py L100-128) and
    densenet_Fusion_module (densenet_ffl.py L183-210) are the same lines with `sptial` 1 and 8 by default."""

    def __init__(self, num_classes=10, channel=64, sptial=8, num_branches=2):
        super().__init__()
        self.fc2 = nn.Linear(channel, num_classes)
        self.conv1 = nn.Conv2d(channel * num_branches, channel * num_branches, kernel_size=3, stride=1, padding=1,
                               groups=channel * num_branches, bias=False)
        self.bn1 = nn.BatchNorm2d(channel * num_branches)
        self.conv1_1 = nn.Conv2d(channel * num_branches, channel, kernel_size=1, groups=1, bias=False)
        self.bn1_1 = nn.BatchNorm2d(channel)
        self.sptial = sptial
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / n))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
        self.num_branches = num_branches

    def forward(self, fmap):
        input = torch.cat(fmap, 1)
        x = F.relu(self.bn1((self.conv1(input))))
        x = F.relu(self.bn1_1(self.conv1_1(x)))
        x = F.avg_pool2d(x, self.sptial)
        x = x.view(x.size(0), -1)
        return self.fc2(x)


class OfficialVGG(nn.Module):  # vgg_ffl.py L20-97 (vgg16_ffl: depth=16, L131-141)
    def __init__(self, num_classes=10, depth=16, dropout=0.0, KD=False, num_branches=2):
        super().__init__()
        self.inplances = 64
        self.conv1 = nn.Conv2d(3, self.inplances, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplances)
        self.conv2 = nn.Conv2d(self.inplances, self.inplances, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(self.inplances)
        self.relu = nn.ReLU(True)
        self.layer1 = self._make_layers(128, 2)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.num_branches = num_branches
        num_layer = 3
        self.layer2 = self._make_layers(256, num_layer)
        self.layer3 = self._make_layers(512, num_layer)
        for bid in range(1, self.num_branches + 1):
            setattr(self, f'layer4_{bid}', self._make_layers(512, num_layer))
        self.classifier = nn.Sequential(nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(p=dropout), nn.Linear(512, 512),
                                        nn.ReLU(True), nn.Dropout(p=dropout), nn.Linear(512, num_classes))
        official_init_vgg(self)  # vgg_ffl.py L54-64

    _make_layers = official_make_layers  # L66-73

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))))
        x = self.layer3(self.layer2(self.layer1(x)))
        fmap, out_list = [], []
        for bid in range(1, self.num_branches + 1):
            x4 = getattr(self, f'layer4_{bid}')(x)
            fmap.append(x4)
            x4 = x4.view(x.size(0), -1)
            out_list.append(self.classifier(x4))
        return out_list, fmap


class OfficialFFLDenseNet(nn.Module):  # L87-180 (small_inputs); densenetd40k12_ffl: growth 12, [6, 6, 6] (L213-224)
    def __init__(self, growth_rate=12, block_config=(6, 6, 6), compression=0.5, num_init_features=24, bn_size=4,
                 num_classes=10, num_branches=2):
        super().__init__()
        self.avgpool_size = 8
        self.features = nn.Sequential()
        self.features.add_module('conv0', nn.Conv2d(3, num_init_features, kernel_size=3, stride=1, padding=1, bias=False))
        self.num_branches = num_branches
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = OfficialDenseBlock(num_layers, num_features, bn_size, growth_rate)
            self.features.add_module('denseblock%d_0' % (i + 1), block)
            num_features = num_features + num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module('transition%d' % (i + 1), OfficialTransition(num_features,
                                                                                       int(num_features * compression)))
                num_features = int(num_features * compression)
            else:
                for bid in range(1, self.num_branches):
                    self.features.add_module(f'denseblock{i+1}_{bid}', block)
        for bid in range(self.num_branches):
            self.features.add_module(f'norm_final_{bid}', nn.BatchNorm2d(num_features))
        for bid in range(self.num_branches):
            setattr(self, f'classifier_{bid}', nn.Linear(num_features, num_classes))
        official_init_densenet(self)  # densenet_ffl.py L153-160

    def forward(self, x):
        x1 = getattr(self.features, 'conv0')(x)
        x1 = getattr(self.features, 'denseblock1_0')(x1)
        x1 = getattr(self.features, 'transition1')(x1)
        x2 = getattr(self.features, 'denseblock2_0')(x1)
        x2 = getattr(self.features, 'transition2')(x2)
        out_list, fmap = [], []
        for bid in range(self.num_branches):
            x3 = getattr(self.features, f'denseblock3_{bid}')(x2)
            x3 = getattr(self.features, f'norm_final_{bid}')(x3)
            fmap.append(x3)
            x3 = F.relu(x3, inplace=True)
            x3 = F.avg_pool2d(x3, kernel_size=self.avgpool_size).view(x3.size(0), -1)
            out_list.append(getattr(self, f'classifier_{bid}')(x3))
        return out_list, fmap


CHANNELS = {'resnet32_ffl': 64, 'vgg16_ffl': 512, 'densenet-40-12_ffl': 132}  # 05_FFL.py L110
SPTIAL = {'resnet32_ffl': 8, 'vgg16_ffl': 1, 'densenet-40-12_ffl': 8}  # each fusion module's default
OFFICIAL_BACKBONES = {
    "okdph_resnet32": ('resnet32_ffl', lambda classes, b: OfficialFFLResNet(OfficialBasicBlock, [5, 5, 5], classes, b)),
    "okdph_vgg16": ('vgg16_ffl', lambda classes, b: OfficialVGG(classes, 16, num_branches=b)),
    "okdph_densenet40_12": ('densenet-40-12_ffl', lambda classes, b: OfficialFFLDenseNet(num_classes=classes,
                                                                                          num_branches=b)),
}
OFFICIAL_KEYS = ["conv_init=okdph", "branch_sharing=okdph", "fusion_lr=constant"]


def official_networks(arch, classes, branches=2):
    """05_FFL.py L111-119: the backbone, then its fusion module."""
    name, backbone = OFFICIAL_BACKBONES[arch]
    return [backbone(classes, branches), OfficialFusionModule(classes, CHANNELS[name], SPTIAL[name], branches)]


class KLLoss(nn.Module):  # 05_FFL.py L18-32 (the device move left out: CPU)
    def forward(self, pred, label):
        T = 3
        predict = F.log_softmax(pred / T, dim=1)
        target_data = F.softmax(label / T, dim=1)
        target_data = target_data + 10 ** (-7)
        target = Variable(target_data.data, requires_grad=False)
        loss = T * T * ((target * (target.log() - predict)).sum(1).sum() / target.size()[0])
        return loss


def official_loss(out_list, fused_logit, labels, consistency_weight):
    """05_FFL.py L78-92, the loss of one batch."""
    criterion_CE, criterion_kl = nn.CrossEntropyLoss(), KLLoss()
    for bid, out in enumerate(out_list):
        ensemble_logit = out if bid == 0 else ensemble_logit + out
        loss_ce = criterion_CE(out, labels) if bid == 0 else loss_ce + criterion_CE(out, labels)
        loss_kl = criterion_kl(out, fused_logit) if bid == 0 else loss_kl + criterion_kl(out, fused_logit)
    ensemble_logit /= len(out_list)
    loss_ce += criterion_CE(fused_logit, labels)
    loss_kl += criterion_kl(fused_logit, ensemble_logit)
    loss_kl *= consistency_weight
    return loss_ce + loss_kl


def official_batch(nets, opts, imgs, labels, consistency_weight):
    """05_FFL.py L71-97, one pass of the loop body."""
    for net in nets:
        net.train()
    out_list, fmap = nets[0](imgs)
    fused_logit = nets[1](fmap)
    loss = official_loss(out_list, fused_logit, labels, consistency_weight)
    opts[0].zero_grad()
    opts[1].zero_grad()
    loss.backward()
    opts[0].step()
    opts[1].step()


# ---- Networks ---------------------------------------------------------------------------------------------

def ours(arch, classes=10, branches=2, *keys):
    cfg = resolve(load_config(None, ["method=ffl", "dataset=tiny_cifar10", f"arch={arch}", f"branches={branches}",
                                     *keys]))
    build = types.SimpleNamespace(spec=DataSpec("images", classes, (3, 32, 32)), outputs=classes)
    return FeatureFusion(cfg), FeatureFusion(cfg).networks(build)


ARCHS = list(OFFICIAL_BACKBONES)


def _conv(cin, cout, k, bias=False, groups=1):
    return k * k * cin * cout // groups + (cout if bias else 0)


def test_resnet32_counts_by_hand():
    """Trunk (stem, stages 1-2) once, stage 3 and the 64→classes linear per branch; the fusion module: depthwise
    3×3 over 64·B channels, BN, 1×1 64·B→64, BN, 64→classes linear."""
    for classes, branches in ((10, 2), (100, 2), (100, 3)):
        trunk, cin = _conv(3, 16, 3) + 32, 16
        stage3 = 0
        for cout in (16, 32, 64):
            part = 0
            for _ in range(5):
                part += _conv(cin, cout, 3) + _conv(cout, cout, 3) + 4 * cout
                if cin != cout:  # the first block of stages 2 and 3: 1×1 conv + BN shortcut
                    part += _conv(cin, cout, 1) + 2 * cout
                cin = cout
            if cout == 64:
                stage3 = part
            else:
                trunk += part
        wide = 64 * branches
        fusion = _conv(wide, wide, 3, groups=wide) + 2 * wide + _conv(wide, 64, 1) + 2 * 64 + 64 * classes + classes
        _, (net, fm) = ours("okdph_resnet32", classes, branches)
        assert count(net) == trunk + branches * (stage3 + 64 * classes + classes)
        assert count(fm) == fusion
    assert (count(net), count(fm)) == (1_193_084, 21_028)  # ResNet-32, three branches, 100 classes
    _, (net, fm) = ours("okdph_resnet32", 100, 2)
    assert (count(net), count(fm)) == (832_920, 16_228)  # two branches: 0.85M in all, as 05_FFL.py L126 sums them


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts_and_keys_are_the_official_ones(arch):
    for classes in (10, 100):
        _, mine = ours(arch, classes, 2, *OFFICIAL_KEYS)
        official = official_networks(arch, classes)
        for a, b in zip(mine, official):
            assert count(a) == count(b)
            assert [(k, t.shape) for k, t in a.state_dict().items()] == [(k, t.shape) for k, t in b.state_dict().items()]


@pytest.mark.slow  # ~4-8 s each on 2 cores
@pytest.mark.parametrize("arch", ARCHS)
def test_initial_weights_and_outputs_are_the_official_ones_from_the_same_seed(arch):
    """Backbone, then fusion module, from one seed (05_FFL.py L111-119): every tensor equal, and the same logits
    and fused logits, in train and eval mode."""
    torch.manual_seed(5)
    _, mine = ours(arch, 100, 2, *OFFICIAL_KEYS)
    torch.manual_seed(5)
    official = official_networks(arch, 100)
    for a, b in zip(mine, official):
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    x = torch.randn(3, 3, 32, 32)
    for mode in ("train", "eval"):
        with torch.no_grad():
            got_logits, got_maps = getattr(mine[0], mode)()(x)
            want_logits, want_maps = getattr(official[0], mode)()(x)
            got, want = getattr(mine[1], mode)()(got_maps), getattr(official[1], mode)()(want_maps)
        assert all(torch.equal(a, b) for a, b in zip(got_logits, want_logits))
        assert all(torch.equal(a, b) for a, b in zip(got_maps, want_maps))  # DenseNet: after the in-place ReLU
        assert torch.equal(got, want)


def test_the_paper_defaults_differ_from_the_okdph_models_where_they_should():
    """conv_init=he is Kim et al.'s N(0, 2/(k²·c_out)) (our_network.py L204), drawn in the official order;
    conv_init=okdph draws every convolution with std √(2/5); branch_sharing=none gives each branch its own
    VGG classifier and DenseNet last block."""
    torch.manual_seed(2)
    _, (he, _) = ours("okdph_resnet32")
    torch.manual_seed(2)
    kim = OfficialFFLResNet(OfficialBasicBlock, [5, 5, 5], 10, 2, kim_init=True)
    assert all(torch.equal(v, kim.state_dict()[k]) for k, v in he.state_dict().items())
    _, (okdph, _) = ours("okdph_resnet32", 10, 2, "conv_init=okdph")
    assert okdph.layer3_2[4].conv2.weight.std().item() == pytest.approx(math.sqrt(2 / 5), rel=0.02)
    assert okdph.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / 5), rel=0.15)  # 432 draws
    assert he.layer3_2[4].conv2.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.02)
    shared, own = FFLVGG16((3, 32, 32), 10, 2, True), FFLVGG16((3, 32, 32), 10, 2, False)
    assert count(own) - count(shared) == count(shared.classifier) and not hasattr(own, "classifier")
    dense_shared, dense_own = FFLDenseNet40((3, 32, 32), 10, 2, True), FFLDenseNet40((3, 32, 32), 10, 2, False)
    assert dense_shared.features.denseblock3_1 is dense_shared.features.denseblock3_0
    assert count(dense_own) - count(dense_shared) == count(dense_shared.features.denseblock3_0)


@pytest.mark.bad_input
def test_backbones_refuse_what_they_cannot_build():
    with pytest.raises(ConfigError, match="arch=okdph_resnet32 takes 32×32 inputs"):
        ffl_backbone("okdph_resnet32", (1, 28, 28), 10)
    with pytest.raises(ConfigError, match="arch=cnn: ffl branches one of okdph_resnet32"):
        fusion_module("cnn", 10)
    with pytest.raises(ConfigError, match="conv_init='kaiming' is not allowed; allowed: he, okdph"):
        FFLResNet32((3, 32, 32), 10, 2, "kaiming")


# ---- Loss and ramp-up --------------------------------------------------------------------------------------

@pytest.mark.parametrize("branches", [2, 3, 4])
@pytest.mark.parametrize("weight", [1.0, 0.25, float(np.exp(-5.0))])
def test_loss_is_the_official_loss_in_value_and_gradient(branches, weight):
    gen = torch.Generator().manual_seed(branches)
    logits = [(torch.randn(12, 7, generator=gen, dtype=torch.float64) * 3).requires_grad_() for _ in range(branches + 1)]
    labels = torch.randint(0, 7, (12,), generator=gen)
    *branch_logits, fused = logits
    loss, terms = ffl_loss(branch_logits, fused, labels, temperature=3.0, weight=weight)
    want = official_loss(branch_logits, fused, labels, weight)
    assert loss.item() == want.item()
    assert sum(sum(t.values()) for t in terms.values()).item() == pytest.approx(want.item(), rel=1e-12)
    assert list(terms) == [f"branch_{k}" for k in range(branches)] + ["fusion"]
    for mine, theirs in zip(torch.autograd.grad(loss, logits), torch.autograd.grad(want, logits)):
        assert torch.equal(mine, theirs)
    # each term: branch b distils from the fused logits, the fusion module from the branches' mean, both detached
    ensemble = sum(branch_logits) / branches
    assert terms["fusion"]["kd"].item() == pytest.approx(weight * KLLoss()(fused, ensemble).item(), rel=1e-12)
    assert terms["branch_1"]["kd"].item() == pytest.approx(weight * KLLoss()(branch_logits[1], fused).item(), rel=1e-12)
    (grad_fused,) = torch.autograd.grad(terms["branch_0"]["kd"], [fused], allow_unused=True)
    assert grad_fused is None
    assert ffl_terms(branch_logits, fused, labels, temperature=3.0, weight=weight).keys() == terms.keys()


def test_kl_adds_1e7_to_the_target_as_the_official_klloss():
    """The official KL is not F.kl_div: q + 1e-7 enters both the log and the weight (L29-31)."""
    z, t = torch.zeros(2, 5, dtype=torch.float64), torch.tensor([[50.0, 0, 0, 0, 0]] * 2, dtype=torch.float64)
    q = F.softmax(t / 3, dim=1) + 1e-7
    assert ffl_kl(z, t, 3.0).item() == pytest.approx(9 * (q * (q.log() - math.log(1 / 5))).sum(1).mean().item(), rel=1e-12)
    assert ffl_kl(z, t, 3.0).item() != pytest.approx(9 * F.kl_div(F.log_softmax(z / 3, 1), F.softmax(t / 3, 1),
                                                                  reduction="batchmean").item(), rel=1e-9)


def test_rampup_is_the_official_one_at_every_epoch():
    assert all(consistency_weight(e, 80) == get_current_consistency_weight(e, 80.0) for e in range(301))
    assert consistency_weight(0, 80) == float(np.exp(-5.0)) and consistency_weight(80, 80) == 1.0
    assert consistency_weight(7, 0) == 1.0


# ---- Whole training steps against the official loop ---------------------------------------------------------


@pytest.mark.slow  # ~6-15 s each on 2 cores
@pytest.mark.parametrize("arch,branches", [("okdph_resnet32", 2), ("okdph_resnet32", 3), ("okdph_densenet40_12", 2),
                                           ("okdph_vgg16", 2)])
def test_train_steps_are_the_official_loop(arch, branches):
    """Three batches at the official keys against 05_FFL.py L71-97 with its SGD (L121): every weight, batch-norm
    statistic and momentum buffer of both networks equal, bit for bit, after every batch; the ramp-up weight of
    official epoch 0."""
    method, _ = ours(arch, 10, branches, *OFFICIAL_KEYS, *SGD)
    torch.manual_seed(11)
    nets = method.networks(types.SimpleNamespace(spec=DataSpec("images", 10, (3, 32, 32)), outputs=10))
    cohort = [Student(n, opt, make_scheduler(method.cfg, opt, 1)) for n in nets
              for opt in [make_optimizer(method.cfg, n.parameters())]]
    official = [copy.deepcopy(n) for n in nets]
    opts = [torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4) for n in official]
    gen = torch.Generator().manual_seed(0)
    w = get_current_consistency_weight(0, 80.0)
    for _ in range(3):
        x, y = torch.randn(6, 3, 32, 32, generator=gen), torch.randint(0, 10, (6,), generator=gen)
        for net in nets:
            net.train()
        terms = method.train_step(x, y, cohort)
        official_batch(official, opts, x, y, w)
        for mine, theirs in zip(nets, official):
            for key, value in theirs.state_dict().items():
                assert torch.equal(mine.state_dict()[key], value), key
        for student, opt in zip(cohort, opts):
            for p, q in zip(student.optimizer.param_groups[0]["params"], opt.param_groups[0]["params"]):
                assert torch.equal(student.optimizer.state[p]["momentum_buffer"], opt.state[q]["momentum_buffer"])
        assert list(terms) == [f"branch_{k}" for k in range(branches)] + ["fusion"]
        assert all(set(t) == {"ce", "kd"} for t in terms.values())


# ---- Keys, outputs and a run --------------------------------------------------------------------------------

def test_defaults_keys_outputs_and_label():
    cfg = resolve(load_config(None, ["method=ffl", "dataset=tiny_cifar10"]))
    assert (cfg.arch, cfg.students, cfg.temperature, cfg.branches, cfg.rampup_epochs, cfg.fusion_lr, cfg.conv_init,
            cfg.branch_sharing) == (["okdph_resnet32"], 1, 3.0, 2, 80.0, "scheduled", "he", "none")
    assert METHODS["ffl"] is FeatureFusion and FeatureFusion.label({}) == "FFL"
    assert FeatureFusion.outputs(cfg) == ("branch_0", "branch_1", "fusion")
    assert FeatureFusion.members(cfg) == ("branch_0", "branch_1")
    assert FeatureFusion.caption_notes(cfg) == []
    official = resolve(load_config(None, ["method=ffl", "dataset=tiny_cifar10", "branches=3", *OFFICIAL_KEYS]))
    notes = FeatureFusion.caption_notes(official)
    assert len(notes) == 2 and "05_FFL.py L140" in notes[0] and "N(0, 2/5)" in notes[1]
    dense = resolve(load_config(None, ["method=ffl", "dataset=tiny_cifar10", "arch=okdph_densenet40_12", *OFFICIAL_KEYS]))
    assert "last dense block" in FeatureFusion.caption_notes(dense)[-1]
    assert FeatureFusion.outputs(official)[-2:] == ("branch_2", "fusion")


@pytest.mark.parametrize("overrides,match", [
    (["arch=cnn"], "arch=cnn: ffl branches one of okdph_resnet32, okdph_vgg16, okdph_densenet40_12"),
    (["students=2"], "ffl trains one branched network"),
    (["arch=okdph_resnet32,okdph_vgg16"], "ffl trains one branched network"),
    (["branches=1"], "branches=1 is not allowed; allowed: an integer >= 2"),
    (["rampup_epochs=-1"], "rampup_epochs=-1.0 is not allowed; it must be a finite number >= 0"),
    (["fusion_lr=frozen"], "fusion_lr='frozen' is not allowed; allowed: constant, scheduled"),
    (["branch_sharing=all"], "branch_sharing='all' is not allowed; allowed: none, okdph"),
])
@pytest.mark.bad_input
def test_bad_configs_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve(load_config(None, ["method=ffl", "dataset=tiny_cifar10", *overrides]))


@pytest.mark.parametrize("fusion_lr", ["scheduled", "constant"])
def test_the_fusion_modules_rate_follows_the_schedule_or_stays(fusion_lr):
    """After each epoch's schedule step (rdml.train.loop), end_epoch puts the fusion module back at lr where it
    stays constant (05_FFL.py L140 steps only schs[0]); the backbone always follows the schedule."""
    method, nets = ours("okdph_densenet40_12", 10, 2, "schedule=multistep", "milestones=1,2", "gamma=0.1",
                        f"fusion_lr={fusion_lr}")
    cohort = [Student(n, opt, make_scheduler(method.cfg, opt, 1)) for n in nets
              for opt in [make_optimizer(method.cfg, n.parameters())]]
    rates = []
    for epoch in (1, 2, 3):
        for student in cohort:
            student.optimizer.step()  # no gradients: changes nothing, but a schedule steps after its optimiser
            student.scheduler.step()
        method.end_epoch(epoch, cohort)
        rates.append([s.optimizer.param_groups[0]["lr"] for s in cohort])
    lr = method.cfg.lr
    assert [r[0] for r in rates] == pytest.approx([lr * 0.1, lr * 0.01, lr * 0.01])
    assert [r[1] for r in rates] == pytest.approx([lr] * 3 if fusion_lr == "constant" else [lr * 0.1, lr * 0.01, lr * 0.01])
    assert method.state_dict() == {"epoch": 3}


@pytest.mark.slow  # a run of 2 epochs
def test_a_run_records_every_output_and_the_fusion_modules_rate(tmp_path, monkeypatch):
    """Branches and fused classifier recorded every epoch; with fusion_lr=constant the fusion module trains every
    epoch at lr while the backbone's schedule decays (05_FFL.py L140); the ramp-up counts official epochs from 0."""
    ramps = []
    monkeypatch.setattr(ffl_method, "consistency_weight", lambda e, r: ramps.append((e, r)) or consistency_weight(e, r))
    record = run(tmp_path / "ffl", "dataset=tiny_cifar10", "method=ffl", "epochs=2", "batch_size=32", "schedule=multistep",
                 "milestones=1", "gamma=0.1", "lr=0.1", "fusion_lr=constant", "rampup_epochs=2", "compile=false",
                 "memory_format=contiguous")
    assert [list(e["test"]) for e in record["epochs"]] == [["branch_0", "branch_1", "fusion"]] * 2
    assert [e["lr"][0] for e in record["epochs"]] == pytest.approx([0.1, 0.01])
    assert [e["lr"][1] for e in record["epochs"]] + [e["lr_last_batch"][1] for e in record["epochs"]] == [0.1] * 4
    assert set(record["epochs"][0]["train"]) >= {"branch_0/ce", "branch_0/kd", "fusion/ce", "fusion/kd", "fusion/total"}
    assert sorted(set(ramps)) == [(0, 2), (1, 2)] and ramps == sorted(ramps)  # rdml epoch e is official e-1
    assert record["status"] == "ok" and record["label"] == "FFL"


@pytest.mark.slow  # three runs of up to 3 epochs
def test_a_killed_run_resumes_to_the_same_numbers(tmp_path):
    """Killed after epoch 1's checkpoint, which holds the ramp-up's epoch and the fusion module's constant rate, the
    run resumes to the uninterrupted one's every number and weight."""
    args = ["dataset=tiny_cifar10", "method=ffl", "arch=okdph_densenet40_12", "epochs=3", "batch_size=32",
            "schedule=multistep", "milestones=1", "fusion_lr=constant", "rampup_epochs=2", "compile=false",
            "memory_format=contiguous"]
    assert len(resumes_to_the_uninterrupted_run(tmp_path, *args)) == 2
