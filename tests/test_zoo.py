"""The CIFAR model zoo: parameter counts against the papers, and a forward/backward pass of each."""

import pytest
import torch

from rdml.data.catalog import DataSpec
from rdml.models import build_model

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
    heads, 1024→100 classifier) has 6.1M; rdml keeps the original network and pins its count here."""
    assert millions("inception_v1") == pytest.approx(6.11, rel=0.01)
    assert millions("googlenet") == pytest.approx(6.40, rel=0.01)


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
