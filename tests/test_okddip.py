"""OKDDip against the official code (tianlizhang/OKDPH at a562089: src/04_OKDDip.py and src/models/
{resnet,vgg,densenet}_okddip.py): the branched networks (parameters, state_dict keys, initial weights and
outputs from one seed), the loss in value and gradient, the ramp-up, three whole training steps bit for
bit, the evaluated outputs, and the method's keys."""

import json
import os
import subprocess
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from official_okdph import (OfficialBasicBlock, OfficialDenseBlock, OfficialKLLoss, OfficialTransition,
                            assert_same_state, get_current_consistency_weight, official_init_densenet,
                            official_init_resnet, official_make_layer, official_make_layers)
from rdml.methods import okddip as okddip_module  # registers the method
from rdml.methods.okddip import DiversePeers, okddip_loss, rampup_weight
from rdml.models.zoo.okddip import okddip_network
from rdml.train.cohort import Cohort, Student

# ---- The official networks, written out (src/models/*_okddip.py, with en=False; blocks: tests/official_okdph.py) ----


def official_attention(pro, proj_q, proj_k):
    energy = torch.bmm(proj_q, proj_k.permute(0, 2, 1))
    attention = F.softmax(energy, dim=-1)
    return torch.bmm(pro, attention.permute(0, 2, 1))


class OfficialResNet(nn.Module):
    """resnet_okddip.py L109-246: ResNet(BasicBlock, [5, 5, 5], num_branches, input_channel=64, factor=8)."""

    def __init__(self, num_classes, num_branches, input_channel=64, factor=8, layers=(5, 5, 5)):
        super().__init__()
        self.num_branches = num_branches
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(OfficialBasicBlock, 16, layers[0])
        self.layer2 = self._make_layer(OfficialBasicBlock, 32, layers[1], stride=2)
        fix_inplanes = self.inplanes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        for i in range(num_branches):
            setattr(self, 'layer3_' + str(i), self._make_layer(OfficialBasicBlock, 64, layers[2], stride=2))
            self.inplanes = fix_inplanes
            setattr(self, 'classifier3_' + str(i), nn.Linear(64, num_classes))
        self.query_weight = nn.Linear(input_channel, input_channel // factor, bias=False)
        self.key_weight = nn.Linear(input_channel, input_channel // factor, bias=False)
        official_init_resnet(self)  # resnet_okddip.py L147-152

    _make_layer = official_make_layer  # L163-185

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x_3 = getattr(self, 'layer3_0')(x)
        x_3 = self.avgpool(x_3)
        x_3 = x_3.view(x_3.size(0), -1)
        proj_q = self.query_weight(x_3)[:, None, :]
        proj_k = self.key_weight(x_3)[:, None, :]
        pro = getattr(self, 'classifier3_0')(x_3).unsqueeze(-1)
        for i in range(1, self.num_branches - 1):
            temp = self.avgpool(getattr(self, 'layer3_' + str(i))(x))
            temp = temp.view(temp.size(0), -1)
            temp_q = self.query_weight(temp)[:, None, :]
            temp_k = self.key_weight(temp)[:, None, :]
            temp_1 = getattr(self, 'classifier3_' + str(i))(temp).unsqueeze(-1)
            pro = torch.cat([pro, temp_1], -1)
            proj_q = torch.cat([proj_q, temp_q], 1)
            proj_k = torch.cat([proj_k, temp_k], 1)
        x_m = official_attention(pro, proj_q, proj_k)
        temp = self.avgpool(getattr(self, 'layer3_' + str(self.num_branches - 1))(x))
        temp = temp.view(temp.size(0), -1)
        temp_out = getattr(self, 'classifier3_' + str(self.num_branches - 1))(temp)
        return pro, x_m, temp_out


class OfficialVGG(nn.Module):
    """vgg_okddip.py L19-138: VGG(depth=16, num_branches, factor=8, dropout=0.5)."""

    def __init__(self, num_classes, num_branches, factor=8, dropout=0.5):
        super().__init__()
        self.inplances = 64
        self.num_branches = num_branches
        self.conv1 = nn.Conv2d(3, self.inplances, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplances)
        self.conv2 = nn.Conv2d(self.inplances, self.inplances, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(self.inplances)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layers(128, 2)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.layer2 = self._make_layers(256, 3)
        self.layer3 = self._make_layers(512, 3)
        for i in range(num_branches):
            setattr(self, 'layer3_' + str(i), self._make_layers(512, 3))
            setattr(self, 'classifier3_' + str(i), nn.Sequential(
                nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(p=dropout),
                nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(p=dropout),
                nn.Linear(512, num_classes)))
        input_channel = 512
        self.query_weight = nn.Linear(input_channel, input_channel // factor, bias=False)
        self.key_weight = nn.Linear(input_channel, input_channel // factor, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)

    _make_layers = official_make_layers  # L68-75

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.relu(self.bn2(self.conv2(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        x_3 = getattr(self, 'layer3_0')(x)
        x_3 = x_3.view(x_3.size(0), -1)
        proj_q = self.query_weight(x_3)[:, None, :]
        proj_k = self.key_weight(x_3)[:, None, :]
        pro = getattr(self, 'classifier3_0')(x_3).unsqueeze(-1)
        for i in range(1, self.num_branches - 1):
            temp = getattr(self, 'layer3_' + str(i))(x)
            temp = temp.view(temp.size(0), -1)
            temp_q = self.query_weight(temp)[:, None, :]
            temp_k = self.key_weight(temp)[:, None, :]
            temp_1 = getattr(self, 'classifier3_' + str(i))(temp).unsqueeze(-1)
            pro = torch.cat([pro, temp_1], -1)
            proj_q = torch.cat([proj_q, temp_q], 1)
            proj_k = torch.cat([proj_k, temp_k], 1)
        x_m = official_attention(pro, proj_q, proj_k)
        temp = getattr(self, 'layer3_' + str(self.num_branches - 1))(x)
        temp = temp.view(temp.size(0), -1)
        temp_out = getattr(self, 'classifier3_' + str(self.num_branches - 1))(temp)
        return pro, x_m, temp_out


class OfficialDenseNet(nn.Module):
    """densenet_okddip.py L114-249: DenseNet(growth_rate=12, block_config=[6, 6, 6], num_branches)."""

    def __init__(self, num_classes, num_branches, growth_rate=12, block_config=(6, 6, 6), input_channel=132, factor=8,
                 compression=0.5, num_init_features=24, bn_size=4):
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
                trans = OfficialTransition(num_features, int(num_features * compression))
                self.features.add_module('transition%d' % (i + 1), trans)
                num_features = int(num_features * compression)
            else:
                block = OfficialDenseBlock(num_layers, num_features, bn_size, growth_rate)
                for i in range(self.num_branches):
                    setattr(self, 'Branch' + str(i), block)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        num_features = num_features + num_layers * growth_rate
        for i in range(self.num_branches):
            setattr(self, 'norm_final_' + str(i), nn.BatchNorm2d(num_features))
            setattr(self, 'relu_final_' + str(i), nn.ReLU(inplace=True))
        for i in range(self.num_branches):
            setattr(self, 'classifier3_' + str(i), nn.Linear(num_features, num_classes))
        official_init_densenet(self)  # densenet_okddip.py L196-203
        self.query_weight = nn.Linear(input_channel, input_channel // factor, bias=False)
        self.key_weight = nn.Linear(input_channel, input_channel // factor, bias=False)

    def forward(self, x):
        x = self.features(x)
        x_3 = getattr(self, 'Branch0')(x)
        x_3 = getattr(self, 'relu_final_0')(getattr(self, 'norm_final_0')(x_3))
        x_3 = self.avgpool(x_3).view(x_3.size(0), -1)
        proj_q = self.query_weight(x_3)[:, None, :]
        proj_k = self.key_weight(x_3)[:, None, :]
        pro = getattr(self, 'classifier3_0')(x_3).unsqueeze(-1)
        for i in range(1, self.num_branches):
            temp = getattr(self, 'Branch' + str(i))(x)
            temp = getattr(self, 'relu_final_' + str(i))(getattr(self, 'norm_final_' + str(i))(temp))
            temp = self.avgpool(temp).view(temp.size(0), -1)
            temp_q = self.query_weight(temp)[:, None, :]
            temp_k = self.key_weight(temp)[:, None, :]
            temp_1 = getattr(self, 'classifier3_' + str(i))(temp).unsqueeze(-1)
            pro = torch.cat([pro, temp_1], -1)
            proj_q = torch.cat([proj_q, temp_q], 1)
            proj_k = torch.cat([proj_k, temp_k], 1)
        x_m = official_attention(pro, proj_q, proj_k)
        temp = self.avgpool(getattr(self, 'Branch' + str(self.num_branches - 1))(x))
        temp = temp.view(temp.size(0), -1)
        temp_out = getattr(self, 'classifier3_' + str(self.num_branches - 1))(temp)
        return pro, x_m, temp_out


OFFICIAL = {"okdph_resnet32": OfficialResNet, "okdph_vgg16": OfficialVGG, "okdph_densenet40_12": OfficialDenseNet}

# ---- The official loss, loop body and test, written out (src/04_OKDDip.py; KL_Loss and the ramp-up:
# tests/official_okdph.py) ----


def official_epoch_weight(epoch, start_consistency=0.0, epochs=300, length=80):
    """L146-150."""
    consistency_epoch = start_consistency * epochs
    return 1 if epoch < consistency_epoch else get_current_consistency_weight(epoch - consistency_epoch, length)


def official_loss(output_batch, x_m, x_stu, labels, num_branches, alpha, consistency_weight, T):
    """L96-105."""
    criterion, criterion_T = nn.CrossEntropyLoss(), OfficialKLLoss(T)
    loss_true = 0
    loss_group = 0
    for i in range(num_branches - 1):
        loss_true += criterion(output_batch[:, :, i], labels)
        loss_group += criterion_T(output_batch[:, :, i], x_m[:, :, i])
    return loss_true + criterion(x_stu, labels) + \
        alpha * consistency_weight * (loss_group + criterion_T(x_stu, torch.mean(output_batch, dim=2)))


def official_batch(net, opt, imgs, labels, num_branches, consistency_weight, alpha=1.0, T=3.0):
    """The loop body, L94-109 (the net in train mode, L89-90)."""
    net.train()
    output_batch, x_m, x_stu = net(imgs)
    loss = official_loss(output_batch, x_m, x_stu, labels, num_branches, alpha, consistency_weight, T)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def official_correct(net, images, labels, num_branches):
    """test(), L63-84, on one batch: correct counts of the peers, the leader, the peers' mean logits."""
    net.eval()
    correct = torch.zeros(num_branches + 1)
    with torch.no_grad():
        output_batch, x_m, x_stu = net(images)
        for i in range(num_branches - 1):
            correct[i] += (torch.max(output_batch[:, :, i].data, 1)[1] == labels).sum()
        correct[num_branches - 1] += (torch.max(x_stu.data, 1)[1] == labels).sum()
        correct[num_branches] += (torch.max(torch.mean(output_batch, dim=2).data, 1)[1] == labels).sum()
    return correct


# ---- Networks ----

CASES = [("okdph_resnet32", 2), ("okdph_resnet32", 3), ("okdph_vgg16", 2), ("okdph_densenet40_12", 2),
         ("okdph_densenet40_12", 3)]


def both(arch, branches, classes=10, seed=3):
    """rdml's network as released (the DenseNet's too) and the transcribed official one, from one seed."""
    torch.manual_seed(seed)
    ours = okddip_network(arch, (3, 32, 32), classes, branches, densenet_as_released=arch == "okdph_densenet40_12")
    torch.manual_seed(seed)
    official = OFFICIAL[arch](classes, branches)
    return ours, official


def images(rows=4, seed=11, size=32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 3, size, size, generator=gen), torch.randint(0, 10, (rows,), generator=gen)


@pytest.mark.parametrize("arch,branches", CASES)
def test_the_network_is_the_official_one_from_the_same_seed(arch, branches):
    """Same parameter count, state_dict keys and initial weights, and the same (pro, x_m, leader) in train mode
    (dropout drawn from one seed) and in eval mode, bit for bit."""
    ours, official = both(arch, branches)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in official.parameters())
    assert_same_state(ours, official)
    x, _ = images()
    for train in (True, False):
        ours.train(train), official.train(train)
        torch.manual_seed(5)
        got = ours(x)
        torch.manual_seed(5)
        want = official(x)
        assert all(torch.equal(g, w) for g, w in zip(got, want)), (arch, branches, train)
    assert_same_state(ours, official)  # batch-norm statistics too


def test_parameter_counts_at_100_classes():
    """What the official script logs as 'Total params' (src/04_OKDDip.py L136) for the OKDPH runs' two branches,
    counted on the transcriptions; the DenseNet's last dense block is counted once (it is one object)."""
    counts = {}
    for arch in OFFICIAL:
        torch.manual_seed(0)
        released = okddip_network(arch, (3, 32, 32), 100, 2, densenet_as_released=arch == "okdph_densenet40_12")
        counts[arch] = sum(p.numel() for p in released.parameters())
        torch.manual_seed(0)
        assert counts[arch] == sum(p.numel() for p in OFFICIAL[arch](100, 2).parameters())
    # ResNet-32: trunk 112,592 + 2 x (layer3 353,664 + classifier 6,500) + projections 2 x 64 x 8.
    # DenseNet-40-12: the OKDPH backbone's 188,092 less its norm_final (264) and classifier (13,300), plus two
    # norm_finals, two classifiers and projections 2 x 132 x 16.
    assert counts == {"okdph_resnet32": 112592 + 2 * (353664 + 6500) + 1024, "okdph_vgg16": 23024392,
                      "okdph_densenet40_12": 188092 - 264 - 13300 + 2 * 264 + 2 * 13300 + 2 * 132 * 16}


def test_the_densenet_branches_share_one_block_and_the_leader_skips_its_norm():
    ours, _ = both("okdph_densenet40_12", 3)
    assert ours.Branch0 is ours.Branch1 is ours.Branch2
    assert ours.peers == 3 and ours.query_weight.weight.shape == (16, 132)
    ours.eval()
    x, _ = images()
    pro, _, leader = ours(x)
    h = ours.features(x)
    assert torch.equal(leader, ours.classifier3_2(ours.avgpool(ours.Branch2(h)).flatten(1)))
    assert not torch.allclose(leader, pro[:, :, 2])


def test_the_papers_densenet_gives_each_branch_its_block_and_keeps_the_leader_apart():
    """densenet_as_released=false: branches as the ResNet's and VGG's, each its own last dense block (one more block's
    parameters per extra branch than as released), the peers branches 0..n-2, the leader read through its
    norm_final and ReLU as the peers are."""
    torch.manual_seed(3)
    paper = okddip_network("okdph_densenet40_12", (3, 32, 32), 10, 3)
    released, _ = both("okdph_densenet40_12", 3)
    assert len({id(paper.Branch0), id(paper.Branch1), id(paper.Branch2)}) == 3 and paper.peers == 2
    block = sum(p.numel() for p in paper.Branch0.parameters())
    assert sum(p.numel() for p in paper.parameters()) == sum(p.numel() for p in released.parameters()) + 2 * block
    paper.eval()
    x, _ = images()
    pro, x_m, leader = paper(x)
    assert pro.shape == x_m.shape == (4, 10, 2)
    h = paper.features(x)
    assert torch.equal(leader, paper.classifier3_2(paper.avgpool(paper.relu_final_2(paper.norm_final_2(paper.Branch2(h))))
                                                   .flatten(1)))


def test_two_branches_are_one_peer_whose_target_is_its_own_logits():
    ours, _ = both("okdph_resnet32", 2)
    x, _ = images()
    pro, x_m, leader = ours(x)
    assert pro.shape == x_m.shape == (4, 10, 1) and leader.shape == (4, 10)
    assert torch.equal(x_m, pro)  # a 1x1 softmax is 1
    assert ours.query_weight.weight.shape == (8, 64)


@pytest.mark.bad_input
def test_a_network_is_refused_for_another_backbone_or_too_few_branches():
    from rdml.keys import ConfigError

    with pytest.raises(ConfigError, match="arch=cnn: okddip builds its branched network from one of okdph_resnet32"):
        okddip_network("cnn", (3, 32, 32), 10, 2)
    with pytest.raises(ConfigError, match="branches=1 is not allowed"):
        okddip_network("okdph_resnet32", (3, 32, 32), 10, 1)
    with pytest.raises(ConfigError, match="takes 32×32 inputs"):
        okddip_network("okdph_vgg16", (3, 28, 28), 10, 2)
    okddip_network("okdph_densenet40_12", (3, 28, 28), 10, 2)  # pools adaptively (densenet_okddip.py L185)
    with pytest.raises(ConfigError, match="densenet_as_released=true is the released DenseNet-40-12's branches; "
                                          "arch=okdph_vgg16 has no other"):
        okddip_network("okdph_vgg16", (3, 32, 32), 10, 2, densenet_as_released=True)


# ---- Loss and ramp-up ----

@pytest.mark.parametrize("branches,columns", [(2, 1), (3, 2), (4, 3), (3, 3)])  # (3, 3): the DenseNet's n columns
@pytest.mark.parametrize("weight", [1.0, get_current_consistency_weight(7, 80)])
def test_the_loss_is_the_official_loss_in_value_and_gradient(branches, columns, weight):
    gen = torch.Generator().manual_seed(branches * 10 + columns)
    rows, classes = 9, 6
    pro = (3 * torch.randn(rows, classes, columns, generator=gen, dtype=torch.float64)).requires_grad_()
    x_m = (3 * torch.randn(rows, classes, columns, generator=gen, dtype=torch.float64)).requires_grad_()
    leader = (3 * torch.randn(rows, classes, generator=gen, dtype=torch.float64)).requires_grad_()
    labels = torch.randint(0, classes, (rows,), generator=gen)
    loss, terms = okddip_loss(pro, x_m, leader, labels, branches, temperature=3.0, weight=weight)
    want = official_loss(pro, x_m, leader, labels, branches, 1.0, weight, 3.0)
    assert torch.equal(loss, want)
    got_grads = torch.autograd.grad(loss, (pro, x_m, leader))
    want_grads = torch.autograd.grad(want, (pro, x_m, leader))
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, rtol=1e-12, atol=1e-15)
    assert got_grads[1].abs().sum() > 0  # the peers' targets are not detached
    assert list(terms) == [f"branch_{k}" for k in range(branches)]
    total = sum(t["ce"] + t["kd"] for t in terms.values())
    assert torch.allclose(total, loss.detach(), rtol=1e-12)


@pytest.mark.parametrize("epoch", [0, 1, 40, 79, 80, 81, 299])
@pytest.mark.parametrize("length", [80.0, 1.0, 0.0])
def test_the_rampup_is_the_official_one(epoch, length):
    assert rampup_weight(epoch, length) == official_epoch_weight(epoch, length=length)


def test_the_rampup_starts_at_exp_minus_5_and_is_1_from_epoch_80():
    assert rampup_weight(0, 80) == float(np.exp(-5.0)) and rampup_weight(80, 80) == rampup_weight(200, 80) == 1.0
    assert rampup_weight(40, 80) == pytest.approx(np.exp(-1.25), rel=1e-15)


# ---- Training steps against the official loop ----

def method_for(arch, branches, **keys):
    keys = {"densenet_as_released": arch == "okdph_densenet40_12", **keys}  # as released, where it differs
    cfg = types.SimpleNamespace(arch=[arch], branches=branches, temperature=3.0, kd_weight=1.0, rampup_epochs=80.0,
                                students=1, label_smoothing=0.0, **keys)
    return DiversePeers(cfg)


@pytest.mark.parametrize("arch,branches", [("okdph_resnet32", 3), ("okdph_resnet32", 2), ("okdph_vgg16", 2),
                                           ("okdph_densenet40_12", 3)])
def test_three_train_steps_are_the_official_loop(arch, branches):
    """Three batches, one per official epoch 0, 1, 2 (the ramp-up moving), against src/04_OKDDip.py L94-109 with its
    SGD (L130: lr 0.1, momentum 0.9, weight decay 5e-4, no Nesterov): every weight and batch-norm statistic equal,
    bit for bit, after every batch."""
    ours, official = both(arch, branches)
    sgd = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    cohort = Cohort([Student(ours, torch.optim.SGD(ours.parameters(), **sgd), None)])
    opt = torch.optim.SGD(official.parameters(), **sgd)
    method = method_for(arch, branches)
    x, y = images(rows=6, size=32 if arch == "okdph_vgg16" else 8)  # VGG-16 reads a 512x1x1 map; the others pool
    for epoch in range(3):
        xb, yb = x.roll(epoch, 0), y.roll(epoch, 0)
        torch.manual_seed(100 + epoch)  # the VGG's dropout masks
        terms = method.train_step(xb, yb, cohort)
        torch.manual_seed(100 + epoch)
        official_batch(official, opt, xb, yb, branches, official_epoch_weight(epoch))
        assert_same_state(ours, official)
        assert set(terms) == {f"branch_{k}" for k in range(branches)}
        method.end_epoch(epoch + 1, cohort)  # rdml epoch epoch + 1 ends
    assert method.state_dict() == {"epoch": 3}


def test_predict_gives_every_output_the_official_test_scores():
    """The peers, the leader and the peers' mean logits, scored as test() scores them (L63-84)."""
    arch, branches = "okdph_resnet32", 3
    ours, official = both(arch, branches)
    method = method_for(arch, branches)
    x, y = images(rows=16)
    ours.eval()
    with torch.no_grad():
        out = method.predict(x, Cohort([Student(ours, None, None)]))
        again = method.predict([x], Cohort([Student(ours, None, None)]))  # one input per network: one network
    assert list(out) == list(DiversePeers.outputs(method.cfg)) == ["branch_0", "branch_1", "branch_2", "ensemble"]
    assert all(torch.equal(out[k], again[k]) for k in out)
    correct = torch.tensor([float((out[k].argmax(1) == y).sum()) for k in out])
    assert torch.equal(correct, official_correct(official, x, y, branches))
    pro, _, leader = ours(x)
    assert torch.equal(out["ensemble"], pro[:, :, :2].mean(dim=2)) and torch.equal(out["branch_2"], leader)
    log_probs = {k: torch.log_softmax(v, -1) for k, v in out.items()}
    assert method.combine(log_probs) == log_probs  # no other output formed over the split


def test_the_epoch_counter_resumes_from_the_checkpoint():
    method = method_for("okdph_resnet32", 2)
    method.end_epoch(41, None)
    again = method_for("okdph_resnet32", 2)
    again.load_state_dict(method.state_dict())
    assert again.rampup() == rampup_weight(41, 80) == official_epoch_weight(41)


def test_networks_builds_the_branched_network_of_the_run():
    from rdml.data.base import load_dataset
    from rdml.train.cohort import Architectures

    data = load_dataset("tiny_cifar100", split_seed=0, test_fraction=0.25)
    [network] = method_for("okdph_densenet40_12", 3, densenet_as_released=False).networks(Architectures(data))
    assert network.branches == 3 and network.classifier3_0.out_features == 100 and network.Branch0 is not network.Branch1
    [released] = method_for("okdph_densenet40_12", 3).networks(Architectures(data))
    assert released.Branch0 is released.Branch1


# ---- Keys (a fresh interpreter: the config's keys are fixed when rdml.config is first imported) ----

KEYS_SCRIPT = r'''
import json
import rdml.methods.okddip
from rdml.config import load_config, resolve
from rdml.methods import METHODS

def cfg(*extra):
    return resolve(load_config(None, ["method=okddip", "dataset=tiny_cifar10", *extra]))

c = cfg()
kind = METHODS["okddip"]
out = {"defaults": [c.arch, c.students, c.branches, c.temperature, c.kd_weight, c.rampup_epochs, c.densenet_as_released],
       "outputs": list(kind.outputs(c)), "members": list(kind.members(c)), "label": kind.label({}),
       "notes": kind.caption_notes(c), "notes2": kind.caption_notes(cfg("branches=2")),
       "notes3": kind.caption_notes(cfg("arch=okdph_densenet40_12", "branches=2", "densenet_as_released=true")),
       "vgg": cfg("arch=okdph_vgg16", "branches=2", "rampup_epochs=0").arch, "errors": []}
for bad in (["branches=1"], ["students=2"], ["arch=cnn"], ["arch=okdph_resnet32,okdph_vgg16"], ["kd_weight=-1"],
            ["rampup_epochs=-2"], ["alpha=2"], ["densenet_as_released=true"]):
    try:
        cfg(*bad)
        out["errors"].append(None)
    except Exception as e:
        out["errors"].append(f"{type(e).__name__}: {e}")

# one epoch through rdml's trainer, then model.pt rebuilt through the method and scored again
import sys, torch
from rdml.config import data_keys
from rdml.data.base import load_dataset
from rdml.train.cohort import rebuild
from rdml.train.evaluate import evaluate, evaluation_noise
from rdml.train.loop import train
record = train(load_config(None, ["method=okddip", "dataset=tiny_cifar10", "arch=okdph_resnet32", "branches=3",
                                  "epochs=1", "batch_size=16", f"out={sys.argv[1]}"]), argv=["test"], progress=False)
saved = torch.load(f"{sys.argv[1]}/model.pt", weights_only=True)
data = load_dataset("tiny_cifar10", **data_keys(record["config"]))
cohort, method = rebuild(saved, record["config"], data, torch.device("cpu"))
again = evaluate(cohort, data, method=method, noise=evaluation_noise(0.0, record["config"]["seed"], 1))
out["run"] = {"label": record["label"], "status": record["status"], "test": list(record["epochs"][0]["test"]),
              "train": sorted(record["epochs"][0]["train"]), "saved_method": saved["method"], "networks": len(cohort),
              "same_losses": all(abs(again[k]["loss"] - record["epochs"][0]["test"][k]["loss"]) < 1e-5 for k in again)}
print(json.dumps(out))
'''


@pytest.mark.bad_input
def test_keys_defaults_labels_refusals_and_a_run(tmp_path):
    """In a fresh interpreter that imports the method before rdml.config: the keys, and one epoch of a
    three-branch ResNet-32 through rdml's trainer, recorded per branch and per term, its model.pt rebuilt
    through the method (rdml.train.cohort.rebuild) to the losses its record holds."""
    done = subprocess.run([sys.executable, "-c", KEYS_SCRIPT, str(tmp_path / "run")], capture_output=True, text=True,
                          check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["defaults"] == [["okdph_resnet32"], 1, 4, 3.0, 1.0, 80.0, False]
    assert out["outputs"] == ["branch_0", "branch_1", "branch_2", "branch_3", "ensemble"]
    assert out["members"] == out["outputs"][:4] and out["label"] == "OKDDip"
    assert out["notes"] == [] and "2 branches (1 peer and the leader" in out["notes2"][0]
    assert "1×1 softmax" in out["notes2"][0] and "1×1" not in out["notes3"][0]  # the released DenseNet attends to 2
    assert "share one last dense block" in out["notes3"][1]
    assert out["vgg"] == ["okdph_vgg16"]
    errors = out["errors"]
    assert all(e and e.startswith("ConfigError") for e in errors), errors
    for error, words in zip(errors, ["branches=1 is not allowed", "students=2: okddip trains one network",
                                     "arch=cnn: okddip builds one branched network", "arch=okdph_resnet32,okdph_vgg16",
                                     "kd_weight=-1.0 is not allowed", "rampup_epochs=-2.0 is not allowed", "alpha",
                                     "densenet_as_released=true is the released DenseNet-40-12's branches"]):
        assert words in error, (error, words)
    assert out["run"] == {"label": "OKDDip", "status": "ok", "test": ["branch_0", "branch_1", "branch_2", "ensemble"],
                          "train": [f"branch_{k}/{t}" for k in range(3) for t in ("ce", "kd", "total")],
                          "saved_method": "okddip", "networks": 1, "same_losses": True}


def test_the_module_registers_the_method_and_names_the_zoos_backbones():
    from rdml.methods import METHODS
    from rdml.models.zoo.okddip import BRANCHED

    assert METHODS["okddip"] is DiversePeers is okddip_module.DiversePeers
    assert okddip_module.BACKBONES == tuple(BRANCHED)


def test_checking_a_config_imports_no_torch():
    probe = ("import sys; import rdml.methods.okddip as m; from types import SimpleNamespace as N; "
             "m.DiversePeers.check(N(arch=['okdph_vgg16'], students=1, densenet_as_released=False)); "
             "print(sorted(k for k in sys.modules if k == 'torch' or k.startswith('torch.')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
