"""The CIFAR model zoo: parameter counts against the papers, and a forward/backward pass of each."""

import pytest
import torch
from torch import nn

from conftest import count, randomise_batch_norm, trace
from rdml.data.catalog import DataSpec
from rdml.models import build_model
from rdml.models.zoo.googlenet import googlenet, googlenet_as_released

ZOO = ["resnet20", "resnet32", "resnet110", "resnet18", "resnet34", "resnet50", "resnet152", "vgg16_bn",
       "googlenet", "inception_v1", "mobilenet", "wrn_28_10", "wrn_20_8", "densenet40_12"]


def millions(arch, input_shape=(3, 32, 32), classes=100):
    return sum(p.numel() for p in build_model(arch, DataSpec("images", classes, input_shape)).parameters()) / 1e6


@pytest.mark.parametrize("arch,paper", [("resnet32", 0.5), ("mobilenet", 3.3), ("wrn_28_10", 36.5)])
def test_parameter_counts_of_dml_table_1(arch, paper):
    """DML paper Table 1, CIFAR-100."""
    assert millions(arch) == pytest.approx(paper, rel=0.10)


def test_inception_v1_is_the_original_network_not_the_papers_count():
    """DML Table 1 gives InceptionV1 7.8M on CIFAR-100, but the network of Szegedy et al. (no auxiliary
    heads, 1024→100 classifier) has 6.1M; rdml keeps the original network and pins its count here.
    `googlenet` is pytorch-cifar100's network: 6,402,564 parameters for 100 classes (see below)."""
    assert millions("inception_v1") == pytest.approx(6.11, rel=0.01)
    assert millions("googlenet") * 1e6 == pytest.approx(GOOGLENET_CIFAR100_PARAMETERS, abs=0.5)


@pytest.mark.parametrize("arch,published", [("resnet110", 1.7), ("densenet40_12", 1.0), ("resnet18", 11.2), ("wrn_20_8", 11.0)])
def test_other_published_counts(arch, published):
    assert millions(arch, classes=100 if arch != "densenet40_12" else 10) == pytest.approx(published, rel=0.10)


@pytest.mark.parametrize("arch", ZOO)
def test_forward_backward(arch):
    model = build_model(arch, DataSpec("images", 10, (3, 32, 32)))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_grey_28x28_for_fashion_mnist(arch):
    model = build_model(arch, DataSpec("images", 10, (1, 28, 28)))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_no_batch_norm_takes_a_channel_count_as_eps():
    """The pytorch-cifar100 GoogLeNet bug (BatchNorm2d(n, n3x3) sets eps to a channel count)."""
    for arch in ("googlenet", "inception_v1"):
        norms = [m for m in build_model(arch, DataSpec("images", 10, (3, 32, 32))).modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and all(m.eps == 1e-5 for m in norms)


# ---- GoogLeNet against pytorch-cifar100 ------------------------------------------------------------
# A compact transcription of weiaicunzai/pytorch-cifar100 models/googlenet.py (commit 49ddb26, unchanged
# through 11d8418; copied verbatim, but for `googlenet(num_class)`, by parklize/rdml
# torchversion/nets/googlenet.py at 57f381f), written out independently of rdml's builder.
# `released=True` keeps the file's `nn.BatchNorm2d(n5x5, n5x5)` (line 45), i.e. eps = n5x5.

def _upstream_inception(cin, n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj, released):
    class Inception(nn.Module):
        def __init__(self):
            super().__init__()
            self.b1 = nn.Sequential(nn.Conv2d(cin, n1x1, kernel_size=1), nn.BatchNorm2d(n1x1), nn.ReLU(inplace=True))
            self.b2 = nn.Sequential(
                nn.Conv2d(cin, n3x3_reduce, kernel_size=1), nn.BatchNorm2d(n3x3_reduce), nn.ReLU(inplace=True),
                nn.Conv2d(n3x3_reduce, n3x3, kernel_size=3, padding=1), nn.BatchNorm2d(n3x3), nn.ReLU(inplace=True))
            self.b3 = nn.Sequential(
                nn.Conv2d(cin, n5x5_reduce, kernel_size=1), nn.BatchNorm2d(n5x5_reduce), nn.ReLU(inplace=True),
                nn.Conv2d(n5x5_reduce, n5x5, kernel_size=3, padding=1),
                nn.BatchNorm2d(n5x5, n5x5) if released else nn.BatchNorm2d(n5x5), nn.ReLU(inplace=True),
                nn.Conv2d(n5x5, n5x5, kernel_size=3, padding=1), nn.BatchNorm2d(n5x5), nn.ReLU(inplace=True))
            self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(cin, pool_proj, kernel_size=1),
                                    nn.BatchNorm2d(pool_proj), nn.ReLU(inplace=True))

        def forward(self, x):
            return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)
    return Inception()


class UpstreamGoogleNet(nn.Module):
    def __init__(self, num_class=100, released=False):
        super().__init__()
        self.prelayer = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 192, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(192), nn.ReLU(inplace=True))
        inc = lambda *spec: _upstream_inception(*spec, released=released)  # noqa: E731
        self.a3, self.b3 = inc(192, 64, 96, 128, 16, 32, 32), inc(256, 128, 128, 192, 32, 96, 64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.a4, self.b4 = inc(480, 192, 96, 208, 16, 48, 64), inc(512, 160, 112, 224, 24, 64, 64)
        self.c4, self.d4 = inc(512, 128, 128, 256, 24, 64, 64), inc(512, 112, 144, 288, 32, 64, 64)
        self.e4 = inc(528, 256, 160, 320, 32, 128, 128)
        self.a5, self.b5 = inc(832, 256, 160, 320, 32, 128, 128), inc(832, 384, 192, 384, 48, 128, 128)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout2d(p=0.4)
        self.linear = nn.Linear(1024, num_class)

    def forward(self, x):
        x = self.maxpool(self.prelayer(x))
        x = self.maxpool(self.b3(self.a3(x)))
        x = self.maxpool(self.e4(self.d4(self.c4(self.b4(self.a4(x))))))
        x = self.dropout(self.avgpool(self.b5(self.a5(x))))
        return self.linear(x.view(x.size()[0], -1))


INCEPTIONS = [  # (in, 1×1, 3×3 reduce, 3×3, 5×5 reduce, 5×5, pool proj), 3a … 5b
    (192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), (480, 192, 96, 208, 16, 48, 64),
    (512, 160, 112, 224, 24, 64, 64), (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128), (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]


def _hand_count(classes):
    """Parameters summed layer by layer: conv k×k cin→cout has k²·cin·cout (+cout bias), BN 2·cout."""
    conv = lambda cin, cout, k, bias=True: k * k * cin * cout + (cout if bias else 0) + 2 * cout  # noqa: E731
    total = conv(3, 64, 3, False) + conv(64, 64, 3, False) + conv(64, 192, 3, False)
    for cin, n1, r3, n3, r5, n5, pool in INCEPTIONS:
        total += conv(cin, n1, 1) + conv(cin, r3, 1) + conv(r3, n3, 3)
        total += conv(cin, r5, 1) + conv(r5, n5, 3) + conv(n5, n5, 3) + conv(cin, pool, 1)
    return total + 1024 * classes + classes


GOOGLENET_CIFAR100_PARAMETERS = 6_402_564


@pytest.mark.parametrize("released", [False, True])
def test_googlenet_has_the_parameters_and_state_shapes_of_pytorch_cifar100(released):
    ours = (googlenet_as_released if released else googlenet)((3, 32, 32), 100)
    theirs = UpstreamGoogleNet(100, released=released)
    assert count(ours) == count(theirs) == _hand_count(100) == GOOGLENET_CIFAR100_PARAMETERS
    assert [t.shape for t in ours.state_dict().values()] == [t.shape for t in theirs.state_dict().values()]
    assert count(googlenet((3, 32, 32), 10)) == _hand_count(10)


@pytest.mark.parametrize("released", [False, True])
def test_googlenet_runs_the_layers_of_pytorch_cifar100_in_order(released):
    """Layer by layer: kind, kernel, stride, padding, bias, eps, dropout kind and p, and output shape."""
    x = torch.randn(2, 3, 32, 32)
    ours = trace((googlenet_as_released if released else googlenet)((3, 32, 32), 100), x)
    assert ours == trace(UpstreamGoogleNet(100, released=released), x)
    assert ("Dropout2d(p=0.4, inplace=False)", (2, 1024, 1, 1)) in ours


def test_googlenet_inception_3a_runs_at_16x16_on_32x32_input():
    """Upstream max-pools (3, stride 2, padding 1) after the prelayer, and again before 4a and 5a."""
    model = googlenet((3, 32, 32), 100).eval()
    seen = []
    for m in model.modules():
        if type(m).__name__ == "Inception":
            m.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[1:])))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert seen[0] == (192, 16, 16)  # 3a
    assert [s[1:] for s in seen] == [(16, 16)] * 2 + [(8, 8)] * 5 + [(4, 4)] * 2


def test_googlenet_as_released_has_eps_n5x5_exactly_where_the_released_code_does():
    """`nn.BatchNorm2d(n5x5, n5x5)`: the BN after the first 3×3 conv of each 5×5 branch, nowhere else."""
    released = googlenet_as_released((3, 32, 32), 100)
    bugged = {}
    for inception in (m for m in released.modules() if type(m).__name__ == "Inception"):
        bn = inception.b3[4]
        assert isinstance(bn, nn.BatchNorm2d) and bn.eps == bn.num_features
        bugged[id(bn)] = bn.num_features
    assert sorted(bugged.values()) == sorted(spec[5] for spec in INCEPTIONS)
    norms = [m for m in released.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.eps == 1e-5 for m in norms if id(m) not in bugged)
    upstream = [m.eps for m in UpstreamGoogleNet(100, released=True).modules() if isinstance(m, nn.BatchNorm2d)]
    assert [m.eps for m in norms] == upstream
    assert all(m.eps == 1e-5 for m in googlenet((3, 32, 32), 100).modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("released", [False, True])
def test_googlenet_computes_what_pytorch_cifar100_computes_with_the_same_weights(released):
    theirs = UpstreamGoogleNet(100, released=released)
    randomise_batch_norm(theirs)
    ours = (googlenet_as_released if released else googlenet)((3, 32, 32), 100)
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs.state_dict().values())))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), theirs.eval()(x), atol=1e-5)
        torch.manual_seed(7)
        train_ours = ours.train()(x)
        torch.manual_seed(7)  # the same channels dropped: Dropout2d in both, at the same point
        assert torch.allclose(train_ours, theirs.train()(x), atol=1e-5)


def test_the_eps_bug_changes_the_eval_output():
    """So the forward test above tells `googlenet` from `googlenet_as_released`."""
    fixed, bugged = googlenet((3, 32, 32), 10), googlenet_as_released((3, 32, 32), 10)
    bugged.load_state_dict(fixed.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(fixed.eval()(x), bugged.eval()(x), atol=1e-3)
