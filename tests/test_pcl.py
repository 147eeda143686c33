"""PCL (rdml.methods.pcl, rdml.models.zoo.pcl) against a transcription of the official OKDPH code for its
PCL baseline (tianlizhang/OKDPH at a562089): src/models/resnet_pcl.py, vgg_pcl.py, densenet_pcl.py and
src/06_PCL.py. Parameter counts, state_dict keys, initial weights and outputs from the same seed; the
loss in value and gradient; the ramp-up and the temporal-mean update; three whole training batches bit
for bit; the keys and what a run evaluates."""

import copy
import math
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import count, randomise_batch_norm
from official_okdph import (OfficialBasicBlock, OfficialDenseBlock, OfficialTransition, assert_same_state,
                            official_init_densenet, official_init_resnet, official_init_vgg, official_make_layer,
                            official_make_layers)
from rdml.keys import ConfigError
from rdml.methods import METHODS
from rdml.methods import pcl as pcl_module  # noqa: F401  (registers "pcl")
from rdml.methods.pcl import (KEYS, PeerCollaborative, pcl_loss, peer_mean_distillation, rampup_weight,
                              update_temporal_mean)
from rdml.models.zoo.pcl import PCL_NETWORKS
from rdml.train.cohort import Cohort, Student

# ---- the official modules, transcribed (the parts the PCL runs take; the blocks: tests/official_okdph.py) -----


class OfficialResNetBranch(nn.Module):  # L108-121
    def __init__(self, layer, fc):
        super().__init__()
        self.layer = layer
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = fc

    def forward(self, x):
        out = self.layer(x)
        out = self.avgpool(out)
        out = out.view(x.size(0), -1)
        f = out
        out = self.fc(out)
        return out, f


class OfficialPCLResNet(nn.Module):  # L124-230; resnet32_pcl = ResNet(BasicBlock, [5, 5, 5]) (L232-234)
    def __init__(self, block, layers, num_branches, num_classes=10, ema=False):
        super().__init__()
        self.ema = ema
        self.num_branches = num_branches
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, layers[0])
        self.layer2 = self._make_layer(block, 32, layers[1], stride=2)
        layer = self._make_layer(block, 64, layers[2], stride=2)
        fc = nn.Linear(64 * block.expansion, num_classes)
        self.branch0 = OfficialResNetBranch(layer, fc)
        for bid in range(1, self.num_branches):
            setattr(self, 'branch' + str(bid), copy.deepcopy(self.branch0))
        self.en_fc = nn.Linear(fc.in_features * self.num_branches, num_classes)
        if self.ema:
            for param in self.parameters():
                param.detach_()
        official_init_resnet(self)  # resnet_pcl.py L168-173

    _make_layer = official_make_layer  # L184-206

    def forward(self, imgs):
        out_list, feat_list = [], []
        for bid in range(self.num_branches):
            ff = self.extract(imgs[:, bid, ...].contiguous())
            out, feat = getattr(self, f'branch{bid}')(ff)
            out_list.append(out)
            feat_list.append(feat)
        if self.ema:
            return out_list
        en_feat = torch.cat(feat_list, dim=1)
        en_out = self.en_fc(en_feat)
        return out_list, en_out

    def extract(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        return x


class OfficialVGGBranch(nn.Module):  # vgg_pcl.py L21-32
    def __init__(self, layer, fc):
        super().__init__()
        self.layer = layer
        self.fc = fc

    def forward(self, x):
        out = self.layer(x)
        out = out.view(out.size(0), -1)
        f = out
        out = self.fc(out)
        return out, f


class OfficialPCLVGG(nn.Module):  # vgg_pcl.py L35-129; vgg16_pcl = VGG(depth=16) (L131-139)
    def __init__(self, num_classes=10, depth=16, dropout=0.0, ema=False, num_branches=2):
        super().__init__()
        self.inplances = 64
        self.conv1 = nn.Conv2d(3, self.inplances, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplances)
        self.conv2 = nn.Conv2d(self.inplances, self.inplances, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(self.inplances)
        self.relu = nn.ReLU(True)
        self.layer1 = self._make_layers(128, 2)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.ema = ema
        self.num_branches = num_branches
        num_layer = 3 if depth == 16 else 4
        self.layer2 = self._make_layers(256, num_layer)
        self.layer3 = self._make_layers(512, num_layer)
        layer = self._make_layers(512, num_layer)
        fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(p=dropout),
                           nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(p=dropout),
                           nn.Linear(512, num_classes))
        self.branch0 = OfficialVGGBranch(layer, fc)
        for bid in range(1, self.num_branches):
            setattr(self, 'branch' + str(bid), copy.deepcopy(self.branch0))
        self.en_fc = nn.Linear(512 * self.num_branches, num_classes)
        if self.ema:
            for param in self.parameters():
                param.detach_()
        official_init_vgg(self)  # vgg_pcl.py L79-89

    _make_layers = official_make_layers  # L91-98

    forward = OfficialPCLResNet.forward  # L101-114, word for word the ResNet's

    def extract(self, x):
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
        return x


class OfficialDenseNetBranch(nn.Module):  # L87-101
    def __init__(self, layer, fc, avgpool_size):
        super().__init__()
        self.layer = layer
        self.avgpool = nn.AvgPool2d(kernel_size=avgpool_size)
        self.fc = fc

    def forward(self, x):
        out = self.layer(x)
        out = F.relu(out, inplace=True)
        out = self.avgpool(out)
        out = out.view(x.size(0), -1)
        f = out
        out = self.fc(out)
        return out, f


class OfficialPCLDenseNet(nn.Module):  # L104-226 (small_inputs); densenetd40k12_pcl L229-240
    def __init__(self, num_branches, growth_rate=12, block_config=[16, 16, 16], compression=0.5,
                 num_init_features=24, bn_size=4, num_classes=10, ema=False):
        super().__init__()
        self.avgpool_size = 8
        self.ema = ema
        self.num_branches = num_branches
        self.features = nn.Sequential(OrderedDict([
            ('conv0', nn.Conv2d(3, num_init_features, kernel_size=3, stride=1, padding=1, bias=False)),
        ]))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            if i != len(block_config) - 1:
                block = OfficialDenseBlock(num_layers, num_features, bn_size, growth_rate)
                self.features.add_module('denseblock%d' % (i + 1), block)
                num_features = num_features + num_layers * growth_rate
                trans = OfficialTransition(num_features, int(num_features * compression))
                self.features.add_module('transition%d' % (i + 1), trans)
                num_features = int(num_features * compression)
        block = OfficialDenseBlock(num_layers, num_features, bn_size, growth_rate)
        num_features = num_features + num_layers * growth_rate
        fc = nn.Linear(num_features, num_classes)
        self.branch0 = OfficialDenseNetBranch(block, fc, self.avgpool_size)
        for bid in range(1, self.num_branches):
            setattr(self, 'branch' + str(bid), copy.deepcopy(self.branch0))
        self.en_fc = nn.Linear(fc.in_features * 3, num_classes)
        if self.ema:
            for param in self.parameters():
                param.detach_()
        official_init_densenet(self)  # densenet_pcl.py L185-192

    forward = OfficialPCLResNet.forward  # L195-208, word for word the ResNet's

    def extract(self, x):
        return self.features(x)


OFFICIAL = {  # models/__init__.py L54-60: 'resnet32_pcl', 'vgg16_pcl', 'densenet-40-12_pcl'
    "okdph_resnet32": lambda classes, b, ema=False: OfficialPCLResNet(OfficialBasicBlock, [5, 5, 5], num_branches=b,
                                                                      num_classes=classes, ema=ema),
    "okdph_vgg16": lambda classes, b, ema=False: OfficialPCLVGG(num_classes=classes, depth=16, ema=ema, num_branches=b),
    "okdph_densenet40_12": lambda classes, b, ema=False: OfficialPCLDenseNet(num_branches=b, growth_rate=12,
                                                                             block_config=[6, 6, 6],
                                                                             num_classes=classes, ema=ema),
}
# The OKDPH tables' runs (src/baseline.sh L61-63): 2 branches, DenseNet the default 3 (its en_fc takes 3 only)
RUNS = [("okdph_resnet32", 2), ("okdph_resnet32", 3), ("okdph_vgg16", 2), ("okdph_densenet40_12", 3)]


# ---- the official training code, transcribed (src/06_PCL.py) ------------------------------------------------

class OfficialKDLoss(nn.Module):  # L30-48
    def __init__(self, temperature=3.0):
        super().__init__()
        self.temperature = temperature
        self.func = nn.KLDivLoss(reduction='batchmean')

    def forward(self, pred, target):
        return self.func(F.log_softmax(pred / self.temperature, dim=1),
                         F.softmax(target / self.temperature, dim=1)) * self.temperature * self.temperature


class OfficialPMLoss(nn.Module):  # L51-63
    def __init__(self, temperature=3.0):
        super().__init__()
        self.temperature = temperature
        self.kd = OfficialKDLoss(temperature=self.temperature)

    def forward(self, pred, targets):
        loss = 0
        for i in range(len(targets)):
            target = targets[i].detach()
            pmloss = self.kd(pred, target)
            loss += pmloss
        return loss / len(targets)


class OfficialLossWrapper(nn.Module):  # L66-103, the ema=False branch; loss_funcs of L186
    def __init__(self, num_branches, temperature=3.0, rampup=None):
        super().__init__()
        self.ce, self.kd, self.pm = nn.CrossEntropyLoss(), OfficialKDLoss(temperature), OfficialPMLoss(temperature)
        self.num_branches = num_branches
        self.rampup = rampup or self.compute_rampup_weight  # `rampup`: another ramp in its place (the published one)

    def compute_rampup_weight(self, epoch, lambd=1.0, alpha=80):  # L79-83
        if epoch > alpha:
            return lambd
        else:
            return lambd * math.exp(-5 * (1 - epoch / lambd) ** 2)

    def forward(self, preds, pred_en, mean_preds, label, epoch):
        loss = self.ce(pred_en, label)
        rampup_weight = self.rampup(epoch)
        for bid in range(self.num_branches):
            loss_ce = self.ce(preds[bid], label)
            loss_pe = self.kd(preds[bid], pred_en.detach()) * rampup_weight
            loss_pm = self.pm(preds[bid], [mean_preds[jj] for jj in range(len(mean_preds)) if jj != bid])
            loss += loss_ce + loss_pe + loss_pm * rampup_weight
        return loss


def published_rampup(epoch):
    """exp(−5(1 − e/80)²) up to epoch 80, then 1: compute_rampup_weight had it divided by alpha = 80."""
    return 1.0 if epoch > 80 else math.exp(-5 * (1 - epoch / 80) ** 2)


def official_update_ema_variables(model, ema_model, alpha=0.999, global_step=-1):  # L107-111
    alpha = min(1 - 1 / (global_step + 1), alpha)
    for ema_param, param in zip(ema_model.parameters(), model.parameters()):
        ema_param.data.mul_(alpha).add_(param.data, alpha=1 - alpha)  # add_(1 - alpha, param.data), torch 1.x


def official_batch(nets, opt, imgs, labels, epoch, loss_wrapper, global_step=0):
    """One pass of the loop body of src/06_PCL.py L145-164 (`train`); imgs[:, k] is branch k's view."""
    for net in nets:
        net.train()
    out_list, en_out = nets[0](imgs)
    mean_outs = nets[1](imgs)
    loss = loss_wrapper(out_list, en_out, mean_outs, labels, epoch=epoch)
    opt.zero_grad()
    loss.backward()
    opt.step()
    official_update_ema_variables(nets[0], nets[1], alpha=0.999, global_step=global_step)


# ---- networks ----------------------------------------------------------------------------------------------

def ours(name, classes, branches, input_shape=(3, 32, 32)):
    return PCL_NETWORKS[name](input_shape, classes, branches)


@pytest.mark.parametrize("name,branches", RUNS)
def test_state_dict_keys_shapes_and_parameter_counts_are_the_official_ones(name, branches):
    mine, theirs = ours(name, 100, branches), OFFICIAL[name](100, branches)
    assert {k: v.shape for k, v in mine.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert list(mine.state_dict()) == list(theirs.state_dict())  # the same order too
    assert count(mine) == count(theirs)


def test_parameter_counts_by_hand():
    """The branches' share, counted from the plain backbones' layers: trunk + B·(branch) + ensemble classifier."""
    from rdml.models.zoo.okdph import okdph_densenet40_12, okdph_resnet32, okdph_vgg16

    def per(model, prefixes):
        return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefixes))

    for b in (2, 3):
        plain = okdph_resnet32((3, 32, 32), 100)
        branch = per(plain, ("layer3", "fc"))
        assert count(ours("okdph_resnet32", 100, b)) == count(plain) + (b - 1) * branch + 64 * b * 100 + 100
        plain = okdph_vgg16((3, 32, 32), 100)
        branch = per(plain, ("layer4", "classifier"))
        assert count(ours("okdph_vgg16", 100, b)) == count(plain) + (b - 1) * branch + 512 * b * 100 + 100
        plain = okdph_densenet40_12((3, 32, 32), 100)  # less its final BN (2·132), which PCL's DenseNet lacks
        branch = per(plain, ("features.denseblock3", "classifier"))
        assert count(ours("okdph_densenet40_12", 100, b)) == count(plain) - 2 * 132 + (b - 1) * branch + 132 * b * 100 + 100


@pytest.mark.parametrize("name,branches", RUNS)
def test_initial_weights_and_outputs_are_the_official_ones_from_the_same_seed(name, branches):
    """The network and then its temporal mean drawn in turn from one seed (src/06_PCL.py L174-176), as the official
    modules draw them; then, batch-norm statistics randomised, the same logits in train and eval mode."""
    torch.manual_seed(3)
    theirs = [OFFICIAL[name](10, branches), OFFICIAL[name](10, branches, ema=True)]
    torch.manual_seed(3)
    method = PeerCollaborative(config(arch=name, branches=branches))
    mine = method.networks(SimpleNamespace(spec=SimpleNamespace(input_shape=(3, 32, 32)), outputs=10))
    assert_same_states(mine, theirs)
    assert [p.requires_grad for p in mine[1].parameters()] == [p.requires_grad for p in theirs[1].parameters()]
    assert not any(p.requires_grad for p in mine[1].parameters()) and all(p.requires_grad for p in mine[0].parameters())
    gen = torch.Generator().manual_seed(0)
    views = [torch.randn(2, 3, 32, 32, generator=gen) for _ in range(branches)]
    for a, b in zip(mine, theirs):
        randomise_batch_norm(a)
        randomise_batch_norm(b)
    for mode in ("train", "eval"):
        for a, b in zip(mine, theirs):
            getattr(a, mode)()
            getattr(b, mode)()
        logits, ensemble = mine[0](views)
        their_logits, their_ensemble = theirs[0](torch.stack(views, dim=1))
        assert all(torch.equal(x, y) for x, y in zip(logits, their_logits)) and torch.equal(ensemble, their_ensemble)
        mean_logits, _ = mine[1](views)
        assert all(torch.equal(x, y) for x, y in zip(mean_logits, theirs[1](torch.stack(views, dim=1))))


def test_what_the_initialisation_leaves_identical_across_branches():
    """Branches 1.. are deepcopies of branch 0 made before the initialisation loop: the convolutions are drawn
    again per branch, the ResNet's and DenseNet's linear weights are not, VGG's linear layers are."""
    torch.manual_seed(0)
    resnet, vgg, dense = ours("okdph_resnet32", 10, 2), ours("okdph_vgg16", 10, 2), ours("okdph_densenet40_12", 10, 3)
    assert torch.equal(resnet.branch0.fc.weight, resnet.branch1.fc.weight)
    assert not torch.equal(resnet.branch0.layer[0].conv1.weight, resnet.branch1.layer[0].conv1.weight)
    assert torch.equal(dense.branch0.fc.weight, dense.branch2.fc.weight)
    assert not torch.equal(vgg.branch0.fc[0].weight, vgg.branch1.fc[0].weight)
    assert not hasattr(dense.features, "norm_final")


def test_one_tensor_feeds_every_branch_and_a_wrong_view_count_is_refused():
    torch.manual_seed(0)
    net = ours("okdph_resnet32", 10, 3, input_shape=(3, 8, 8)).eval()
    x = torch.randn(2, 3, 8, 8)
    one, _ = net(x)
    each, _ = net([x, x, x])
    assert all(torch.equal(a, b) for a, b in zip(one, each))
    with pytest.raises(ValueError, match="2 views for a network of 3 branches"):
        net([x, x])
    with pytest.raises(ConfigError, match="branches=1 is not allowed"):
        ours("okdph_resnet32", 10, 1)
    with pytest.raises(ConfigError, match="takes 32×32 inputs"):
        ours("okdph_vgg16", 10, 2, input_shape=(3, 16, 16))


# ---- losses -----------------------------------------------------------------------------------------------

def logits_batch(seed, k, rows=12, classes=7, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    draw = lambda: (torch.randn(rows, classes, generator=gen, dtype=torch.float64) * scale).requires_grad_()  # noqa: E731
    return [draw() for _ in range(k)], draw(), [draw() for _ in range(k)], torch.randint(0, classes, (rows,), generator=gen)


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("epoch,divisor", [(0, 1.0), (1, 1.0), (2, 1.0), (81, 1.0), (40, 80.0), (80, 80.0)])
def test_loss_is_the_official_loss_in_value_and_gradient(k, epoch, divisor):
    logits, ensemble, mean_logits, labels = logits_batch(k + epoch, k)
    weight = rampup_weight(epoch, divisor)
    total, terms = pcl_loss(logits, ensemble, mean_logits, labels, weight=weight, temperature=3.0)
    wrapper = OfficialLossWrapper(k, rampup=published_rampup if divisor == 80 else None)
    official = wrapper(logits, ensemble, mean_logits, labels, epoch=epoch)
    assert total.item() == pytest.approx(official.item(), rel=1e-12)
    assert sum(sum(t.values()) for t in terms.values()).item() == pytest.approx(official.item(), rel=1e-12)
    assert set(terms) == {"ensemble", *(f"branch_{i}" for i in range(k))}
    assert all(set(terms[f"branch_{i}"]) == {"ce", "pe", "pm"} for i in range(k))
    mine = torch.autograd.grad(total, [*logits, ensemble, *mean_logits], allow_unused=True)
    theirs = torch.autograd.grad(official, [*logits, ensemble, *mean_logits], allow_unused=True)
    for a, b in zip(mine[: k + 1], theirs[: k + 1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert all(a is None and b is None for a, b in zip(mine[k + 1:], theirs[k + 1:]))  # the teachers are detached


def test_each_term_is_what_it_names():
    """Against an independent computation: KL from the definition, Σ p_t (log p_t − log p_z)·T², mean over rows."""
    logits, ensemble, mean_logits, labels = logits_batch(5, 3)
    T, w = 3.0, 0.25

    def kl(z, teacher):
        p = F.softmax(teacher / T, dim=1)
        return (p * (p.log() - F.log_softmax(z / T, dim=1))).sum(1).mean() * T * T

    _, terms = pcl_loss(logits, ensemble, mean_logits, labels, weight=w, temperature=T)
    assert terms["ensemble"]["ce"].item() == pytest.approx(F.cross_entropy(ensemble, labels).item(), rel=1e-12)
    for k, z in enumerate(logits):
        term = terms[f"branch_{k}"]
        assert term["pe"].item() == pytest.approx(w * kl(z, ensemble).item(), rel=1e-10)
        others = [kl(z, m).item() for j, m in enumerate(mean_logits) if j != k]
        assert term["pm"].item() == pytest.approx(w * sum(others) / 2, rel=1e-10)
    assert peer_mean_distillation(logits[0], [mean_logits[1]], T).item() == pytest.approx(kl(logits[0], mean_logits[1]).item(), rel=1e-10)


def test_rampup_weight_is_the_official_function_and_the_published_ramp():
    wrapper = OfficialLossWrapper(2)
    assert [rampup_weight(e, 1.0) for e in range(300)] == [wrapper.compute_rampup_weight(e) for e in range(300)]
    assert rampup_weight(1, 1.0) == 1.0 and rampup_weight(2, 1.0) == math.exp(-5) and rampup_weight(3, 1.0) < 1e-8
    assert all(rampup_weight(e, 1.0) < 1e-8 for e in range(3, 81)) and rampup_weight(81, 1.0) == 1.0
    assert [rampup_weight(e, 80.0) for e in range(300)] == pytest.approx([published_rampup(e) for e in range(300)],
                                                                         rel=1e-15)
    assert rampup_weight(80, 80.0) == 1.0 and rampup_weight(0, 80.0) == math.exp(-5)


@pytest.mark.parametrize("step", [0, 1, 4, 5000])
def test_temporal_mean_update_is_the_official_one(step):
    torch.manual_seed(0)
    model, mean = ours("okdph_resnet32", 10, 2), ours("okdph_resnet32", 10, 2)
    randomise_batch_norm(model, seed=2)
    twin, before = copy.deepcopy(mean), copy.deepcopy(mean)
    update_temporal_mean(mean, model, 0.999, step)
    official_update_ema_variables(model, twin, alpha=0.999, global_step=step)
    assert_same_states([mean], [twin])
    buffers = dict(mean.named_buffers())
    assert torch.equal(buffers["bn1.running_mean"], torch.zeros(16))  # the buffers are its own
    alpha = min(1 - 1 / (step + 1), 0.999)
    expected = alpha * before.conv1.weight.double() + (1 - alpha) * model.conv1.weight.double()
    torch.testing.assert_close(mean.conv1.weight.double(), expected, rtol=1e-6, atol=1e-7)
    if step == 0:  # global_step=0: the weights are the model's
        assert all(torch.equal(a, b) for a, b in zip(mean.parameters(), model.parameters()))


# ---- whole training batches -------------------------------------------------------------------------------

def config(**overrides):
    """A resolved pcl config's fields that the method reads (the keys' defaults, then `overrides`)."""
    values = {"method": "pcl", "arch": ["okdph_resnet32"], "students": 1, "temperature": 3.0, "student_augment": [],
              "label_smoothing": 0.0, **{key.name: key.default for key in KEYS}}
    values.update({k: ([v] if k == "arch" else v) for k, v in overrides.items()})
    return SimpleNamespace(**values)


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)  # src/06_PCL.py L178


def assert_same_states(got, want):
    for a, b in zip(got, want):
        assert_same_state(a, b)


@pytest.mark.parametrize("name,branches,shape,divisor,steps,epoch", [
    ("okdph_resnet32", 2, (3, 8, 8), 1.0, "zero", 1),   # the official settings, at the epoch they distil fully
    ("okdph_resnet32", 3, (3, 8, 8), 80.0, "steps", 60),  # as published
    pytest.param("okdph_vgg16", 2, (3, 32, 32), 1.0, "zero", 1, marks=pytest.mark.slow),  # ~5 s
    pytest.param("okdph_densenet40_12", 3, (3, 32, 32), 1.0, "zero", 1, marks=pytest.mark.slow),  # ~6 s
])
def test_three_batches_are_the_official_loop(name, branches, shape, divisor, steps, epoch):
    """Three batches, each branch on its own view, against src/06_PCL.py L145-164 with SGD (L178): both networks'
    weights and batch-norm statistics equal, bit for bit, after every batch."""
    cfg = config(arch=name, branches=branches, rampup_divisor=divisor, ema_global_step=steps)
    torch.manual_seed(5)
    method = PeerCollaborative(cfg)
    networks = method.networks(SimpleNamespace(spec=SimpleNamespace(input_shape=shape), outputs=10))
    torch.manual_seed(5)
    nets = [OFFICIAL[name](10, branches), OFFICIAL[name](10, branches, ema=True)]  # src/06_PCL.py L174-176
    assert_same_states(networks, nets)
    cohort = Cohort([Student(n, sgd(n), None) for n in networks])
    opt = sgd(nets[0])
    method.end_epoch(epoch, cohort)  # rdml epoch `epoch` over: official epoch `epoch` next
    wrapper = OfficialLossWrapper(branches, rampup=published_rampup if divisor == 80 else None)
    gen = torch.Generator().manual_seed(1)
    x = [torch.randn(4, *shape, generator=gen) for _ in range(branches)]
    y = torch.randint(0, 10, (4,), generator=gen)
    for ii in range(3):
        views = [v.roll(ii, 0) for v in x]
        terms = method.train_step(views, y.roll(ii, 0), cohort)
        official_batch(nets, opt, torch.stack(views, dim=1), y.roll(ii, 0), epoch, wrapper,
                       global_step=ii + 1 if steps == "steps" else 0)
        assert_same_states(networks, nets)
        assert set(terms) == {"ensemble", *(f"branch_{k}" for k in range(branches))}
    assert method.state_dict() == {"epoch": epoch, "steps": 3}
    same = all(torch.equal(a, b) for a, b in zip(networks[0].parameters(), networks[1].parameters()))
    assert same == (steps == "zero")  # global_step=0: the temporal mean's weights are the network's


def test_the_temporal_mean_is_evaluated_on_one_batch_for_every_branch():
    """src/06_PCL.py L124-127, L194: the temporal mean network, in eval mode, every branch on the test batch."""
    torch.manual_seed(0)
    method = PeerCollaborative(config(branches=2))
    network, mean = method.networks(SimpleNamespace(spec=SimpleNamespace(input_shape=(3, 8, 8)), outputs=10))
    randomise_batch_norm(mean, seed=4)
    cohort = Cohort([Student(network, None, None), Student(mean, None, None)])
    x = torch.randn(5, 3, 8, 8)
    for m in (network, mean):
        m.eval()
    got = method.predict(x, cohort)
    want, _ = mean(torch.stack([x, x], dim=1).unbind(1))
    assert list(got) == ["branch_0", "branch_1"] and all(torch.equal(got[f"branch_{k}"], want[k]) for k in range(2))
    assert not torch.equal(got["branch_0"], network(x)[0][0])  # not the trained network
    noisy = method.predict([x + 1, x], cohort)  # per-network noise: the temporal mean's own input, network 1's
    assert torch.equal(noisy["branch_0"], got["branch_0"])
    assert method.combine({"branch_0": got["branch_0"]}) == {"branch_0": got["branch_0"]}


# ---- keys -------------------------------------------------------------------------------------------------

def test_keys_default_to_the_published_method():
    cfg = config()
    assert (cfg.branches, cfg.rampup_divisor, cfg.ema_decay, cfg.ema_global_step) == (3, 80.0, 0.999, "steps")
    assert PeerCollaborative.defaults["temperature"] == 3.0 and METHODS["pcl"] is PeerCollaborative
    assert PeerCollaborative.label({}) == "PCL" and PeerCollaborative.views and not PeerCollaborative.same_init
    assert PeerCollaborative.members(cfg) == PeerCollaborative.outputs(cfg) == ("branch_0", "branch_1", "branch_2")
    assert PeerCollaborative.view_count(config(branches=4)) == 4


def test_captions_name_each_departure_from_the_published_method():
    published = PeerCollaborative.caption_notes(config(student_augment=["crop_flip"] * 3))
    assert published == []
    official = PeerCollaborative.caption_notes(config(rampup_divisor=1.0, ema_global_step="zero"))
    assert len(official) == 3
    assert "same augmented batch" in official[0] and "divides by 1" in official[1] and "copies" in official[2]


@pytest.mark.parametrize("name,value,match", [
    ("branches", 1, "branches=1 is not allowed"),
    ("branches", 2.5, "branches=2.5 is not allowed"),
    ("rampup_divisor", 0.0, "rampup_divisor=0.0 is not allowed"),
    ("rampup_divisor", float("inf"), "rampup_divisor=inf is not allowed"),
    ("ema_decay", 1.5, "ema_decay=1.5 is not allowed"),
    ("ema_global_step", "epoch", "ema_global_step='epoch' is not allowed; allowed: steps, zero"),
])
def test_bad_key_values_are_refused(name, value, match):
    key = {k.name: k for k in KEYS}[name]
    with pytest.raises(ConfigError, match=match):
        key.check(value)


@pytest.mark.parametrize("overrides,match", [
    ({"students": 2}, "students=2: pcl trains one network of several branches"),
    ({"arch": "resnet32"}, "arch='resnet32' is not allowed; allowed: okdph_densenet40_12"),
    ({"student_augment": ["crop_flip"] * 2}, "names 2 augmentations; pcl with branches=3 takes one per branch, 3"),
])
def test_configs_pcl_cannot_train_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        PeerCollaborative.check(config(**overrides))


def test_method_state_resumes():
    method = PeerCollaborative(config())
    method.end_epoch(7, None)
    method.steps = 11
    again = PeerCollaborative(config())
    again.load_state_dict(method.state_dict())
    assert (again.epoch, again.steps) == (7, 11)


# ---- a whole run, through the trainer (rdml train in a copy of the package that registers pcl) -------------

REGISTRY_LINE = "from rdml.methods import pcl  # noqa: F401\n"  # what rdml/methods/__init__.py needs for `method=pcl`
REBUILD = '''
import json, sys
import torch
from rdml.config import data_keys
from rdml.data.base import load_dataset
from rdml.train.cohort import rebuild
from rdml.train.evaluate import evaluate

record = json.load(open(sys.argv[1] + "/record.json"))
saved = torch.load(sys.argv[1] + "/model.pt", weights_only=True)
data = load_dataset(record["config"]["dataset"], **data_keys(record["config"]))
cohort, method = rebuild(saved, record["config"], data, torch.device("cpu"))
network, mean = (dict(s.model.named_parameters()) for s in cohort)
print(json.dumps({"method": saved.get("method"), "networks": len(cohort), "scores": evaluate(cohort, data, method=method),
                  "mean_is_the_network": all(torch.equal(mean[k], v) for k, v in network.items()),
                  "own_statistics": not torch.equal(cohort[0].model.bn1.running_mean, cohort[1].model.bn1.running_mean)}))
'''


@pytest.mark.system  # rdml train and a rebuild, each its own process
def test_a_run_trains_records_each_branch_of_the_temporal_mean_and_rebuilds(tmp_path, monkeypatch):
    import json
    import os
    import shutil
    import subprocess
    import sys

    from conftest import cli
    from rdml.code import PACKAGE

    package = tmp_path / "package" / "rdml"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    init = package / "methods" / "__init__.py"
    if REGISTRY_LINE not in init.read_text():
        init.write_text(init.read_text() + REGISTRY_LINE)
    monkeypatch.setenv("PYTHONPATH", str(package.parent))
    args = ["dataset=tiny_cifar10", "method=pcl", "arch=okdph_resnet32", "branches=2", "rampup_divisor=1",
            "ema_global_step=zero", "epochs=2", "batch_size=16", "lr=0.01", "normalize=okdph", "out=run"]
    process = cli(*args, cwd=tmp_path)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["label"] == "PCL" and list(record["summary"]) == ["branch_0", "branch_1"]
    assert all(list(epoch["test"]) == ["branch_0", "branch_1"] for epoch in record["epochs"])
    assert set(record["epochs"][0]["train"]) == {f"branch_{k}/{t}" for k in (0, 1) for t in ("ce", "pe", "pm", "total")} | {
        "ensemble/ce", "ensemble/total"}
    assert len(record["epochs"][0]["lr"]) == 2  # the network and its temporal mean, each its own optimiser (L178)
    result = subprocess.run([sys.executable, "-c", REBUILD, str(tmp_path / "run")], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    rebuilt = json.loads(result.stdout)
    assert (rebuilt["method"], rebuilt["networks"]) == ("pcl", 2)
    assert rebuilt["mean_is_the_network"] and rebuilt["own_statistics"]  # global_step=0: weights copied, not buffers
    last = record["epochs"][-1]["test"]
    for name, scores in rebuilt["scores"].items():  # model.pt's temporal mean is the one the last epoch tested
        assert scores["acc"] == last[name]["acc"] and math.isclose(scores["loss"], last[name]["loss"], rel_tol=1e-5)
