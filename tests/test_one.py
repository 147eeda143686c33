"""ONE (rdml.methods.one, rdml.models.zoo.one) against a transcription of the official OKDPH code
(tianlizhang/OKDPH at a562089): src/models/{resnet,vgg,densenet}_one.py (parameter counts, state_dict keys,
initial weights from the same seed, outputs), the loss of src/02_ONE.py L89-99 in value and gradient, and
three whole training batches (L89-103) bit for bit; then the keys, their defaults and their refusals."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from official_okdph import (OfficialBasicBlock, OfficialDenseBlock, OfficialKLLoss, OfficialTransition, SGD,
                            get_current_consistency_weight, official_init_densenet, official_init_resnet,
                            official_init_vgg, official_make_layer, official_make_layers)
from rdml.config import load_config, resolve
from rdml.data.catalog import DataSpec
from rdml.keys import ConfigError
from rdml.methods import one as one_module  # registers "one"
from rdml.methods.one import KEYS, NativeEnsemble, consistency_weight, one_loss
from rdml.models.zoo.one import one_network
from rdml.train.cohort import Cohort, Student
from rdml.train.optim import make_optimizer, make_scheduler

# ---- the official modules, transcribed (their blocks, KL_Loss and ramp-up: tests/official_okdph.py) ----------
# The ONE path alone (avg=False, ind=False, bpscale=False: the defaults, which src/02_ONE.py L116-117 keeps);
# the branches the OKDPH runs never take (Bottleneck, dilation, groups, zero_init_residual, large inputs,
# checkpointing, ILR) are left out; the rest is line for line.


class OfficialResNetOne(nn.Module):  # resnet_one.py L123-259; resnet32_one = ResNet(BasicBlock, [5, 5, 5]) (L262-273)
    def __init__(self, block, layers, num_classes=10, num_branches=3):
        super().__init__()
        self.num_branches = num_branches
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, layers[0])
        self.layer2 = self._make_layer(block, 32, layers[1], stride=2)
        fix_inplanes = self.inplanes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        for i in range(num_branches):
            setattr(self, 'layer3_' + str(i), self._make_layer(block, 64, layers[2], stride=2))
            self.inplanes = fix_inplanes
            setattr(self, 'classifier3_' + str(i), nn.Linear(64 * block.expansion, num_classes))
        self.avgpool_c = nn.AvgPool2d(16)
        self.control_v1 = nn.Linear(fix_inplanes, self.num_branches)
        self.bn_v1 = nn.BatchNorm1d(self.num_branches)
        official_init_resnet(self)  # resnet_one.py L167-172

    _make_layer = official_make_layer  # resnet_one.py L185-207

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x_3 = getattr(self, 'layer3_0')(x)
        x_3 = self.avgpool(x_3)
        x_3 = x_3.view(x_3.size(0), -1)
        x_3_1 = getattr(self, 'classifier3_0')(x_3)
        pro = x_3_1.unsqueeze(-1)
        for i in range(1, self.num_branches):
            temp = getattr(self, 'layer3_' + str(i))(x)
            temp = self.avgpool(temp)
            temp = temp.view(temp.size(0), -1)
            temp_1 = getattr(self, 'classifier3_' + str(i))(temp)
            temp_1 = temp_1.unsqueeze(-1)
            pro = torch.cat([pro, temp_1], -1)
        x_c = self.avgpool_c(x)
        x_c = x_c.view(x_c.size(0), -1)
        x_c = self.control_v1(x_c)
        x_c = self.bn_v1(x_c)
        x_c = F.relu(x_c)
        x_c = F.softmax(x_c, dim=1)
        x_m = x_c[:, 0].view(-1, 1).repeat(1, pro[:, :, 0].size(1)) * pro[:, :, 0]
        for i in range(1, self.num_branches):
            x_m += x_c[:, i].view(-1, 1).repeat(1, pro[:, :, i].size(1)) * pro[:, :, i]
        return pro, x_m


class OfficialVGGOne(nn.Module):  # vgg_one.py L35-160; vgg16_one = VGG(depth=16) (L162-172)
    def __init__(self, num_classes=10, num_branches=3, depth=16):
        super().__init__()
        self.inplances = 64
        self.num_branches = num_branches
        self.conv1 = nn.Conv2d(3, self.inplances, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplances)
        self.conv2 = nn.Conv2d(self.inplances, self.inplances, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(self.inplances)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.layer1 = self._make_layers(128, 2)
        num_layer = 3 if depth == 16 else 4
        self.layer2 = self._make_layers(256, num_layer)
        self.layer3 = self._make_layers(512, num_layer)
        for i in range(num_branches):
            setattr(self, 'layer3_' + str(i), self._make_layers(512, num_layer))
            setattr(self, 'classifier3_' + str(i), nn.Sequential(
                nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(),
                nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(),
                nn.Linear(512, num_classes),))
        self.avgpool_c = nn.AdaptiveAvgPool2d((1, 1))
        self.control_v1 = nn.Linear(self.inplances, self.num_branches)
        self.bn_v1 = nn.BatchNorm1d(self.num_branches)
        official_init_vgg(self)  # vgg_one.py L75-85

    _make_layers = official_make_layers  # vgg_one.py L87-94

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
        x_3 = getattr(self, 'layer3_0')(x)
        x_3 = x_3.view(x_3.size(0), -1)
        x_3_1 = getattr(self, 'classifier3_0')(x_3)
        pro = x_3_1.unsqueeze(-1)
        for i in range(1, self.num_branches):
            temp = getattr(self, 'layer3_' + str(i))(x)
            temp = temp.view(temp.size(0), -1)
            temp_1 = getattr(self, 'classifier3_' + str(i))(temp)
            temp_1 = temp_1.unsqueeze(-1)
            pro = torch.cat([pro, temp_1], -1)
        x_c = self.avgpool_c(x)
        x_c = x_c.view(x_c.size(0), -1)
        x_c = self.control_v1(x_c)
        x_c = self.bn_v1(x_c)
        x_c = F.relu(x_c)
        x_c = F.softmax(x_c, dim=1)
        x_3 = getattr(self, 'layer3_0')(x)
        x_3 = x_3.view(x_3.size(0), -1)
        x_3_1 = getattr(self, 'classifier3_0')(x_3)
        x_m = x_c[:, 0].view(-1, 1).repeat(1, x_3_1.size(1)) * x_3_1
        pro = x_3_1.unsqueeze(-1)
        for i in range(1, self.num_branches):
            temp = getattr(self, 'layer3_' + str(i))(x)
            temp = temp.view(temp.size(0), -1)
            temp_1 = getattr(self, 'classifier3_' + str(i))(temp)
            x_m += x_c[:, i].view(-1, 1).repeat(1, temp_1.size(1)) * temp_1
            temp_1 = temp_1.unsqueeze(-1)
            pro = torch.cat([pro, temp_1], -1)
        return pro, x_m


class OfficialDenseNetOne(nn.Module):  # densenet_one.py L101-248; densenetd40k12_one (L256-267)
    def __init__(self, growth_rate=12, block_config=(6, 6, 6), num_branches=3, compression=0.5, num_init_features=24,
                 bn_size=4, num_classes=10):
        super().__init__()
        self.num_branches = num_branches
        self.features = nn.Sequential(OrderedDict([
            ('conv0', nn.Conv2d(3, num_init_features, kernel_size=3, stride=1, padding=1, bias=False))]))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            if i != len(block_config) - 1:
                block = OfficialDenseBlock(num_layers, num_features, bn_size, growth_rate)
                self.features.add_module('denseblock%d' % (i + 1), block)
                num_features = num_features + num_layers * growth_rate
                trans = OfficialTransition(num_input_features=num_features, num_output_features=int(num_features * compression))
                self.features.add_module('transition%d' % (i + 1), trans)
                num_features = int(num_features * compression)
            else:
                block = OfficialDenseBlock(num_layers, num_features, bn_size, growth_rate)
                for i in range(self.num_branches):
                    setattr(self, 'layer3_' + str(i), block)
        self.avgpool_c = nn.AvgPool2d(8)
        self.control_v1 = nn.Linear(num_features, self.num_branches)
        self.bn_v1 = nn.BatchNorm1d(num_branches)
        num_features = num_features + num_layers * growth_rate
        for i in range(self.num_branches):
            setattr(self, 'norm_final_' + str(i), nn.BatchNorm2d(num_features))
            setattr(self, 'relu_final_' + str(i), nn.ReLU(inplace=True))
        for i in range(self.num_branches):
            setattr(self, 'classifier3_' + str(i), nn.Linear(num_features, num_classes))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        official_init_densenet(self)  # densenet_one.py L190-197

    def forward(self, x):
        x = self.features(x)
        x_3 = getattr(self, 'layer3_0')(x)
        x_3 = getattr(self, 'norm_final_0')(x_3)
        x_3 = getattr(self, 'relu_final_0')(x_3)
        x_3 = self.avgpool(x_3).view(x_3.size(0), -1)
        x_3_1 = getattr(self, 'classifier3_0')(x_3)
        pro = x_3_1.unsqueeze(-1)
        for i in range(1, self.num_branches):
            temp = getattr(self, 'layer3_' + str(i))(x)
            temp = getattr(self, 'norm_final_' + str(i))(temp)
            temp = getattr(self, 'relu_final_' + str(i))(temp)
            temp = self.avgpool(temp).view(temp.size(0), -1)
            temp_1 = getattr(self, 'classifier3_' + str(i))(temp)
            temp_1 = temp_1.unsqueeze(-1)
            pro = torch.cat([pro, temp_1], -1)
        x_c = self.avgpool_c(x)
        x_c = x_c.view(x_c.size(0), -1)
        x_c = self.control_v1(x_c)
        x_c = self.bn_v1(x_c)
        x_c = F.relu(x_c)
        x_c = F.softmax(x_c, dim=1)
        x_m = x_c[:, 0].view(-1, 1).repeat(1, pro[:, :, 0].size(1)) * pro[:, :, 0]
        for i in range(1, self.num_branches):
            x_m += x_c[:, i].view(-1, 1).repeat(1, pro[:, :, i].size(1)) * pro[:, :, i]
        return pro, x_m


# src/models/__init__.py L41-45: model_dict[name](num_classes=..., num_branches=...)
OFFICIAL = {
    "okdph_resnet32": lambda classes, k: OfficialResNetOne(OfficialBasicBlock, [5, 5, 5], classes, k),
    "okdph_vgg16": lambda classes, k: OfficialVGGOne(classes, k, depth=16),
    "okdph_densenet40_12": lambda classes, k: OfficialDenseNetOne(12, [6, 6, 6], k, num_classes=classes),
}
# the official models' own quirks, as rdml builds them
QUIRKS = {"okdph_resnet32": {}, "okdph_vgg16": {"repeat_branch_forward": True},
          "okdph_densenet40_12": {"shared_stage": True}}
BACKBONES = list(OFFICIAL)


def ours(backbone, classes, k, **quirks):
    return one_network(backbone, (3, 32, 32), classes, k, **{**QUIRKS[backbone], **quirks})


# ---- the official loss and loop, transcribed (src/02_ONE.py) ----

def official_loss(output_batch, x_m, labels, num_branches, alpha, consistency_weight, T=3.0):  # L91-99
    criterion, criterion_T = nn.CrossEntropyLoss(), OfficialKLLoss(T)
    loss_true = 0
    loss_group = 0
    for i in range(num_branches):
        loss_true += criterion(output_batch[:, :, i], labels)
        loss_group += criterion_T(output_batch[:, :, i], x_m)
    loss_true += criterion(x_m, labels)
    return loss_true + alpha * consistency_weight * loss_group


def official_batch(net, opt, imgs, labels, num_branches, consistency_weight):  # L89-103 (alpha 1.0, L181)
    output_batch, x_m = net(imgs)
    loss = official_loss(output_batch, x_m, labels, num_branches, 1.0, consistency_weight)
    opt.zero_grad()
    loss.backward()
    opt.step()


# ---- the networks ----

@pytest.mark.parametrize("backbone,k", [("okdph_resnet32", 2), ("okdph_resnet32", 3), ("okdph_vgg16", 2),
                                       ("okdph_densenet40_12", 2), ("okdph_densenet40_12", 3)])
def test_parameter_counts_and_keys_are_the_official_ones(backbone, k):
    """The same state_dict keys and shapes (official checkpoints load as they are) and parameter count."""
    torch.manual_seed(0)
    mine, official = ours(backbone, 10, k), OFFICIAL[backbone](10, k)
    assert {n: v.shape for n, v in mine.state_dict().items()} == {n: v.shape for n, v in official.state_dict().items()}
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(mine) == count(official)
    mine.load_state_dict(official.state_dict())  # strict


def test_parameter_counts_by_hand():
    """K = 2, 10 classes, counted from the layers' shapes: each branch adds a last stage and a classifier to
    the trunk, and the gate adds FC (in → K) and BN1d(K); the official DenseNet's branches share one block."""
    gate = lambda features, k: features * k + k + 2 * k  # noqa: E731
    trunk = lambda m, prefixes: sum(p.numel() for n, p in m.named_parameters() if n.startswith(prefixes))  # noqa: E731
    resnet = ours("okdph_resnet32", 10, 2)
    stage = sum(p.numel() for p in resnet.layer3_0.parameters())
    assert stage == (32 * 64 * 9 + 64 * 64 * 9 + 4 * 64 + 32 * 64 + 2 * 64) + 4 * (2 * 64 * 64 * 9 + 4 * 64)
    assert sum(p.numel() for p in resnet.parameters()) == (trunk(resnet, ("conv1", "bn1", "layer1", "layer2"))
                                                           + 2 * (stage + 64 * 10 + 10) + gate(32, 2))
    dense = ours("okdph_densenet40_12", 10, 2)
    assert dense.layer3_0 is dense.layer3_1
    assert sum(p.numel() for p in dense.parameters()) == (trunk(dense, ("features",))
                                                          + sum(p.numel() for p in dense.layer3_0.parameters())
                                                          + 2 * (2 * 132 + 132 * 10 + 10) + gate(60, 2))
    apart = ours("okdph_densenet40_12", 10, 2, shared_stage=False)
    assert apart.layer3_0 is not apart.layer3_1
    assert sum(p.numel() for p in apart.parameters()) - sum(p.numel() for p in dense.parameters()) == sum(
        p.numel() for p in dense.layer3_0.parameters())
    vgg = ours("okdph_vgg16", 10, 2)
    assert vgg.control_v1.in_features == 512 and vgg.classifier3_1[2].p == 0.5 == vgg.classifier3_1[5].p


@pytest.mark.parametrize("backbone", BACKBONES)
def test_initial_weights_are_the_official_ones_from_the_same_seed(backbone):
    torch.manual_seed(3)
    mine = ours(backbone, 10, 2).state_dict()
    torch.manual_seed(3)
    official = OFFICIAL[backbone](10, 2).state_dict()
    assert list(mine) == list(official)  # and in the official order
    assert all(torch.equal(mine[n], official[n]) for n in official)
    torch.manual_seed(4)
    assert not torch.equal(ours(backbone, 10, 2).state_dict()["control_v1.weight"], official["control_v1.weight"])


def _randomise(model, seed=1):
    """Non-trivial batch-norm statistics and affine parameters, so that eval-mode outputs test them too."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_outputs_are_the_official_ones_bit_for_bit(backbone):
    """Eval and train mode (dropout drawn from the same seed); the batch-norm statistics after a training forward."""
    official = OFFICIAL[backbone](10, 2)
    _randomise(official)
    mine = ours(backbone, 10, 2)
    mine.load_state_dict(official.state_dict())
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for train in (False, True):
            torch.manual_seed(9)
            got = mine.train(train)(x)
            torch.manual_seed(9)
            want = official.train(train)(x)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), train
    assert all(torch.equal(v, official.state_dict()[n]) for n, v in mine.state_dict().items())


def test_the_official_vgg_runs_its_branches_twice_in_training():
    """vgg_one.py L110-119 then L146-157: each training forward updates the branches' BN statistics twice (the
    trunk's once); without `repeat_branch_forward` once, which the official module does not match."""
    torch.manual_seed(0)
    official = OFFICIAL["okdph_vgg16"](10, 2)
    once = ours("okdph_vgg16", 10, 2, repeat_branch_forward=False)
    once.load_state_dict(official.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        official.train()(x)
        once.train()(x)
    assert official.layer3[1].num_batches_tracked.item() == 1 == once.layer3_0[1].num_batches_tracked.item()
    assert official.layer3_0[1].num_batches_tracked.item() == 2
    assert not torch.equal(official.layer3_0[1].running_mean, once.layer3_0[1].running_mean)


def test_resnet_pools_the_whole_layer2_map_at_other_sizes():
    """The gate's AvgPool2d(16) at 32×32 is layer2's whole 16×16 map; other sizes pool their whole map too."""
    model = one_network("okdph_resnet32", (1, 28, 28), 10, 2)
    assert model.avgpool_c.kernel_size == (14, 14)
    pro, gated = model(torch.randn(2, 1, 28, 28))
    assert pro.shape == (2, 10, 2) and gated.shape == (2, 10)
    with pytest.raises(ConfigError, match="arch=okdph_vgg16 takes 32×32 inputs"):
        one_network("okdph_vgg16", (1, 28, 28), 10, 2)


# ---- the loss ----

@pytest.mark.parametrize("k,weight,detach", [(2, 1.0, False), (3, consistency_weight(7, 80.0), False), (3, 0.3, True)])
def test_loss_is_the_official_loss_in_value_and_gradient(k, weight, detach):
    """src/02_ONE.py L91-99 (the teacher not detached); detached, Lan et al.'s KLLoss (loss/kl_loss.py L15-21:
    the teacher's probabilities as a constant), the rest unchanged."""
    g = torch.Generator().manual_seed(k)
    pro0, gated0 = torch.randn(6, 10, k, generator=g) * 3, torch.randn(6, 10, generator=g) * 3
    labels = torch.randint(0, 10, (6,), generator=g)
    pro, gated = pro0.clone().requires_grad_(), gated0.clone().requires_grad_()
    total, terms = one_loss(pro, gated, labels, weight=weight, temperature=3.0, detach_teacher=detach)
    total.backward()
    opro, ogated = pro0.clone().requires_grad_(), gated0.clone().requires_grad_()
    want = official_loss(opro, ogated.detach() if detach else ogated, labels, k, 1.0, weight)
    if detach:  # the gate's own cross-entropy still reaches it
        want = want + F.cross_entropy(ogated, labels) - F.cross_entropy(ogated.detach(), labels)
    want.backward()
    assert total.item() == pytest.approx(want.item(), rel=1e-6)
    assert torch.allclose(pro.grad, opro.grad, rtol=1e-6, atol=1e-8)
    assert torch.allclose(gated.grad, ogated.grad, rtol=1e-6, atol=1e-8)
    assert set(terms) == {*(f"branch_{i}" for i in range(k)), "gated"}
    parts = sum(v for t in terms.values() for v in t.values())
    assert parts.item() == pytest.approx(total.item(), rel=1e-6)  # the recorded terms are the loss
    kd0 = OfficialKLLoss(3.0)(pro0[:, :, 0], gated0)
    assert terms["branch_0"]["kd"].item() == pytest.approx(weight * kd0.item(), rel=1e-6)


def test_the_teacher_is_trained_by_the_distillation_only_when_not_detached():
    """The gated teacher's gradient beyond its own cross-entropy comes from the KL of every branch."""
    g = torch.Generator().manual_seed(0)
    pro, labels = torch.randn(5, 10, 2, generator=g), torch.randint(0, 10, (5,), generator=g)
    grads = {}
    for detach in (True, False):
        gated = torch.randn(5, 10, generator=torch.Generator().manual_seed(1)).requires_grad_()
        one_loss(pro, gated, labels, weight=1.0, temperature=3.0, detach_teacher=detach)[0].backward()
        grads[detach] = gated.grad
    ce_only = torch.randn(5, 10, generator=torch.Generator().manual_seed(1)).requires_grad_()
    F.cross_entropy(ce_only, labels).backward()
    assert torch.allclose(grads[True], ce_only.grad, atol=1e-7)
    assert not torch.allclose(grads[False], ce_only.grad, atol=1e-3)


@pytest.mark.parametrize("epoch,rampup", [(0, 80.0), (1, 80.0), (40, 80.0), (79, 80.0), (80, 80.0), (200, 80.0), (3, 0.0),
                                          (5, 7.5)])
def test_consistency_weight_is_the_official_ramp_up(epoch, rampup):
    assert consistency_weight(epoch, rampup) == get_current_consistency_weight(epoch, rampup)
    if rampup:
        assert consistency_weight(epoch, rampup) == pytest.approx(math.exp(-5 * (1 - min(epoch, rampup) / rampup) ** 2))


# ---- training steps against the official loop ----



def one_config(*overrides: str):
    """A resolved config of method one. rdml.config knows a method's keys once rdml.methods imports it; until
    then the shared keys are resolved for `independent` and one's own keys added as their Key parses them."""
    own = {key.name: key.default for key in KEYS}
    shared = [o for o in overrides if o.split("=")[0] not in own]
    for o in overrides:
        name, value = o.split("=", 1)
        if name in own:
            own[name] = next(key for key in KEYS if key.name == name).parse(value)
    arch = [] if any(o.startswith("arch=") for o in shared) else ["arch=okdph_resnet32"]
    base = resolve(load_config(None, ["method=independent", "dataset=tiny_cifar10", "temperature=3", *shared, *arch]))
    cfg = SimpleNamespace(**{**dataclasses.asdict(base), **own, "method": "one"})
    NativeEnsemble.check(cfg)
    return cfg


def built(cfg, seed=7):
    torch.manual_seed(seed)
    method = NativeEnsemble(cfg)
    (network,) = method.networks(SimpleNamespace(spec=DataSpec("images", 10, (3, 32, 32)), outputs=10))
    optimizer = make_optimizer(cfg, network.parameters())
    return method, Cohort([Student(network, optimizer, make_scheduler(cfg, optimizer, 1))], built_by="one")


@pytest.mark.slow  # ~3 s (ResNet-32) to ~8 s (VGG-16) on 2 cores
@pytest.mark.parametrize("backbone", BACKBONES)
def test_three_batches_are_the_official_loop_bit_for_bit(backbone):
    """Three batches of 2 rows through the method's train_step and through src/02_ONE.py L89-103 from the same
    initial weights (the official module built from the same seed), plain SGD (L119), at official epoch 3 of the
    ramp-up: every weight, batch-norm statistic and momentum buffer equal after every batch. With the official
    keys (teacher not detached; the official DenseNet's shared block; the official VGG's double pass, whose
    dropout draws both sides take from the same seed)."""
    quirks = [f"{k}=true" for k in QUIRKS[backbone]]
    cfg = one_config(f"arch={backbone}", "branches=2", "detach_teacher=false", "test_ensemble=mean", *quirks, *SGD)
    method, cohort = built(cfg)
    torch.manual_seed(7)
    official = OFFICIAL[backbone](10, 2)
    assert all(torch.equal(v, official.state_dict()[n]) for n, v in cohort[0].model.state_dict().items())
    opt = torch.optim.SGD(official.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    gate_before = cohort[0].model.control_v1.weight.detach().clone()
    for epoch in (1, 2, 3):
        method.end_epoch(epoch, cohort)
    g = torch.Generator().manual_seed(11)
    for step in range(3):
        x, y = torch.randn(2, 3, 32, 32, generator=g), torch.randint(0, 10, (2,), generator=g)
        torch.manual_seed(100 + step)
        terms = method.train_step(x, y, cohort)
        torch.manual_seed(100 + step)
        official_batch(official, opt, x, y, 2, get_current_consistency_weight(3, 80))
        assert all(torch.equal(v, official.state_dict()[n]) for n, v in cohort[0].model.state_dict().items()), step
        momentum = [cohort[0].optimizer.state[p]["momentum_buffer"] for p in cohort[0].model.parameters()]
        assert all(torch.equal(a, opt.state[p]["momentum_buffer"]) for a, p in zip(momentum, official.parameters()))
        assert set(terms) == {"branch_0", "branch_1", "gated"}
    assert not torch.equal(cohort[0].model.control_v1.weight, gate_before)  # the gate trained


class StandIn(nn.Module):
    """A network with ONE's outputs (branch logits B × classes × K, and a gated ensemble), small and quick."""

    def __init__(self, k=2):
        super().__init__()
        self.k = k
        self.heads = nn.Linear(3 * 32 * 32, 10 * k)
        self.gate = nn.Linear(3 * 32 * 32, k)

    def forward(self, x):
        pro = self.heads(x.flatten(1)).view(len(x), 10, self.k)
        gate = self.gate(x.flatten(1)).softmax(dim=1)
        return pro, (gate.unsqueeze(1) * pro).sum(-1)


def test_the_ramp_up_counts_official_epochs_from_0_and_resumes(monkeypatch):
    """rdml's epoch 1 is official epoch 0 (weight e^-5), epoch 2 official epoch 1, and the method's state carries
    the epoch into a resumed run."""
    cfg = one_config("branches=2")
    seen = []
    monkeypatch.setattr(one_module, "one_loss", lambda *a, **kw: (seen.append(kw["weight"]), one_loss(*a, **kw))[1])
    network = StandIn()
    optimizer = make_optimizer(cfg, network.parameters())
    cohort = Cohort([Student(network, optimizer, make_scheduler(cfg, optimizer, 1))], built_by="one")
    method = NativeEnsemble(cfg)
    assert method.state_dict() == {"epoch": 0}
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    method.train_step(x, y, cohort)
    method.end_epoch(1, cohort)
    method.train_step(x, y, cohort)
    resumed = NativeEnsemble(cfg)
    resumed.load_state_dict(method.state_dict())
    resumed.train_step(x, y, cohort)
    assert seen == [math.exp(-5.0), get_current_consistency_weight(1, 80), get_current_consistency_weight(1, 80)]
    assert method.state_dict() == {"epoch": 1}


# ---- outputs ----

@pytest.mark.parametrize("ensemble", ["gated", "mean"])
def test_outputs_are_the_branches_and_the_ensemble_the_key_names(ensemble):
    """src/02_ONE.py L70-76 tests each branch and the mean of their logits; Lan et al. test the gated teacher."""
    cfg = one_config("branches=3", f"test_ensemble={ensemble}")
    method, cohort = NativeEnsemble(cfg), Cohort([Student(StandIn(3), None, None)])
    assert NativeEnsemble.members(cfg) == ("branch_0", "branch_1", "branch_2")
    assert NativeEnsemble.outputs(cfg) == ("branch_0", "branch_1", "branch_2", "ensemble")
    x = torch.randn(3, 3, 32, 32)
    cohort[0].model.eval()
    with torch.no_grad():
        logits = method.predict(x, cohort)
        pro, gated = cohort[0].model(x)
    assert list(logits) == list(NativeEnsemble.outputs(cfg))
    assert all(torch.equal(logits[f"branch_{k}"], pro[:, :, k]) for k in range(3))
    assert torch.equal(logits["ensemble"], pro.mean(dim=2) if ensemble == "mean" else gated)
    assert torch.equal(method.predict([x], cohort)["ensemble"], logits["ensemble"])  # one input per network
    assert method.combine({"a": 1}) == {"a": 1}


# ---- keys ----

def test_defaults_and_labels_are_lan_et_al():
    cfg = one_config()
    assert (cfg.branches, cfg.detach_teacher, cfg.test_ensemble, cfg.shared_stage, cfg.repeat_branch_forward,
            cfg.rampup_epochs) == (3, True, "gated", False, False, 80.0)
    assert NativeEnsemble.defaults["temperature"] == 3.0 and NativeEnsemble.defaults["arch"] == ["okdph_resnet32"]
    assert NativeEnsemble.label({}) == "ONE" and NativeEnsemble.caption_notes(cfg) == []
    official = one_config("arch=okdph_vgg16", "detach_teacher=false", "test_ensemble=mean", "repeat_branch_forward=true",
                          "shared_stage=true")
    notes = NativeEnsemble.caption_notes(official)
    assert len(notes) == 4 and all(n.startswith("ONE: ") for n in notes)


@pytest.mark.bad_input
@pytest.mark.parametrize("key,value,match", [
    ("branches", 1, r"branches=1 is not allowed; allowed: an integer >= 2"),
    ("branches", True, r"branches=True is not allowed"),
    ("test_ensemble", "median", r"test_ensemble='median' is not allowed; allowed: gated, mean"),
    ("rampup_epochs", -1.0, r"rampup_epochs=-1.0 is not allowed; it must be a finite number >= 0"),
    ("rampup_epochs", float("inf"), r"rampup_epochs=inf is not allowed"),
])
def test_bad_key_values_are_refused(key, value, match):
    check = next(k for k in KEYS if k.name == key).check
    with pytest.raises(ConfigError, match=match):
        check(value)


@pytest.mark.bad_input
@pytest.mark.parametrize("overrides,match", [
    (["arch=cnn"], r"arch=cnn has no ONE network; allowed: okdph_resnet32, okdph_vgg16, okdph_densenet40_12"),
    (["arch=okdph_resnet32,okdph_vgg16"], r"one trains one branched network; give one backbone and set branches"),
    (["students=2"], r"students=2, .*one trains one branched network"),
    (["repeat_branch_forward=true"], r"repeat_branch_forward=true is the official VGG-16 ONE's double pass; "
                                     r"arch=okdph_resnet32 has none"),
])
def test_configs_the_method_cannot_train_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        one_config(*overrides)


@pytest.mark.bad_input
def test_the_network_builder_refuses_what_it_cannot_build():
    with pytest.raises(ConfigError, match=r"branches=1 is not allowed; allowed: an integer >= 2"):
        one_network("okdph_resnet32", (3, 32, 32), 10, 1)
    with pytest.raises(ConfigError, match=r"arch=resnet32 has no ONE network"):
        one_network("resnet32", (3, 32, 32), 10, 2)
    with pytest.raises(ConfigError, match=r"repeat_branch_forward=true .* okdph_vgg16 only"):
        one_network("okdph_densenet40_12", (3, 32, 32), 10, 2, repeat_branch_forward=True)


RESOLVE = r'''
import json
import rdml.methods.one  # registered before rdml.config reads the methods' keys
from rdml.config import load_config, resolve
from rdml.keys import ConfigError
out = {}
cfg = resolve(load_config(None, ["method=one", "dataset=tiny_cifar10"]))
out["defaults"] = [cfg.arch, cfg.students, cfg.temperature, cfg.branches, cfg.detach_teacher, cfg.test_ensemble]
for bad in (["branches=1"], ["test_ensemble=median"], ["arch=cnn"], ["student_augment=crop_flip"], ["rampup_epochs=-2"]):
    try:
        resolve(load_config(None, ["method=one", "dataset=tiny_cifar10", *bad]))
        out[bad[0]] = None
    except ConfigError as error:
        out[bad[0]] = str(error)
print(json.dumps(out))
'''


@pytest.mark.bad_input
def test_rdml_config_resolves_and_refuses_one_keys():
    """Through rdml.config, in a process where the method is registered first (as rdml.methods will import it)."""
    done = subprocess.run([sys.executable, "-c", RESOLVE], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    assert out["defaults"] == [["okdph_resnet32"], 1, 3.0, 3, True, "gated"]
    assert "branches=1 is not allowed" in out["branches=1"]
    assert "test_ensemble='median' is not allowed" in out["test_ensemble=median"]
    assert "arch=cnn has no ONE network" in out["arch=cnn"]
    assert "student_augment is for a method that trains each student on its own view" in out["student_augment=crop_flip"]
    assert "rampup_epochs=-2.0 is not allowed" in out["rampup_epochs=-2"]


TRAIN = r'''
import json, sys
import torch
import rdml.methods.one  # registered before rdml.config reads the methods' keys
from rdml.config import load_config
from rdml.data.base import load_dataset
from rdml.train.cohort import rebuild
from rdml.train.evaluate import evaluate
from rdml.train.loop import train

out = sys.argv[1]
record = train(load_config(None, ["dataset=tiny_cifar10", "method=one", "arch=okdph_resnet32", "branches=2", "epochs=2",
                                  "batch_size=16", "detach_teacher=false", "test_ensemble=mean",
                                  "memory_format=contiguous", f"out={out}"]), argv=["test"], progress=False)
cfg = record["config"]
data = load_dataset(cfg["dataset"], split_seed=cfg["split_seed"], test_fraction=cfg["test_fraction"])
cohort, method = rebuild(torch.load(f"{out}/model.pt", weights_only=True), cfg, data, torch.device("cpu"))
print(json.dumps({"record": record, "rebuilt": evaluate(cohort, data, method=method), "networks": len(cohort)}))
'''


@pytest.mark.slow  # ~7 s on 2 cores
def test_the_trainer_trains_records_and_rebuilds_a_one_run(tmp_path):
    """Through rdml.train.loop.train (in a process where the method is registered first): one network, every
    branch and the ensemble recorded per epoch, each branch's terms and the teacher's recorded, and model.pt
    rebuilt through the method to the scores of the last epoch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", TRAIN, str(tmp_path / "run")], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    record = result["record"]
    assert record["label"] == "ONE" and result["networks"] == 1 and len(record["epochs"]) == 2
    assert all(list(epoch["test"]) == ["branch_0", "branch_1", "ensemble"] for epoch in record["epochs"])
    assert set(record["epochs"][0]["train"]) == {f"branch_{k}/{t}" for k in (0, 1) for t in ("ce", "kd", "total")} | {
        "gated/ce", "gated/total"}
    assert len(record["epochs"][0]["lr"]) == 1  # one network, one optimiser
    assert result["rebuilt"] == record["epochs"][-1]["test"]
