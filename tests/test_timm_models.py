"""timm's networks (the Rényi-KD thesis: "Training utilizes the Timm library", §3.2) and timm's
optimiser defaults, against torchvision's ImageNet ResNets and torch.optim as independent references."""

import pytest
import torch
import torchvision

from rdml.config import load_config, resolve
from rdml.data.catalog import DataSpec
from rdml.models import build_model
from rdml.train.optim import make_optimizer

CIFAR100 = DataSpec("images", 100, (3, 32, 32))


@pytest.mark.parametrize("arch,reference", [("timm_resnet18", torchvision.models.resnet18),
                                            pytest.param("timm_resnet152", torchvision.models.resnet152,
                                                         marks=pytest.mark.slow)])  # ~7 s
def test_timm_resnets_are_the_imagenet_resnets_with_a_100_class_head(arch, reference):
    """The thesis describes ResNet's 7×7 stem (§2.2): timm's ResNet is torchvision's ImageNet ResNet,
    tensor for tensor, so torchvision's weights load into it and both give the same outputs."""
    torch.manual_seed(0)
    ours, theirs = build_model(arch, CIFAR100).eval(), reference(num_classes=100).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert ours.conv1.kernel_size == (7, 7) and ours.conv1.stride == (2, 2)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_timm_builds_grey_inputs_and_is_seeded_by_torch():
    torch.manual_seed(3)
    a = build_model("timm_resnet18", DataSpec("images", 10, (1, 28, 28)))
    torch.manual_seed(3)
    b = build_model("timm_resnet18", DataSpec("images", 10, (1, 28, 28)))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert a(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_decay_1d_false_is_timm_s_filter_bias_and_bn():
    """timm's create_optimizer_v2(model, "sgd", ...) is Nesterov SGD with no weight decay on 1-d
    parameters; rdml's optimiser with nesterov=true, decay_1d=false takes the same steps."""
    from timm.optim import create_optimizer_v2
    torch.manual_seed(0)
    model = build_model("timm_resnet18", DataSpec("images", 10, (3, 32, 32)))
    twin = build_model("timm_resnet18", DataSpec("images", 10, (3, 32, 32)))
    twin.load_state_dict(model.state_dict())
    cfg = resolve(load_config(None, ["lr=0.08", "momentum=0.9", "nesterov=true", "weight_decay=0.05", "decay_1d=false"]))
    ours = make_optimizer(cfg, model.parameters())
    reference = create_optimizer_v2(twin, "sgd", lr=0.08, momentum=0.9, weight_decay=0.05)
    assert all(g["nesterov"] for g in reference.param_groups)
    x = torch.randn(4, 3, 32, 32)
    for net, opt in ((model, ours), (twin, reference)):
        for _ in range(3):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name
    decayed = make_optimizer(resolve(load_config(None, ["weight_decay=0.05"])), model.parameters())
    assert [g["weight_decay"] for g in decayed.param_groups] == [0.05]
