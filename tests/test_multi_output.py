"""A model with several outputs (a dict of logits and features, a tuple, a list) runs on every execution
path and comes back in the structure it returned, its floating tensors in float32 and its integer ones
untouched: channels_last, fused, compiled and bf16 against the float32 reference, on the CPU and on CUDA."""

import copy

import pytest
import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_structure

from rdml.train import execution
from rdml.train.execution import Execution

DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]
SHAPES = ["dict", "tuple", "list"]
# as tests/test_execution.py compares the fast paths' weights with the reference run's
RTOL, ATOL = 1e-4, 5e-4


class TwoHeads(nn.Module):
    """A small convolutional body with batch norm (statistics the fused path must copy back), a class head,
    the pooled features beside it, and the predicted class as an int64 tensor."""

    def __init__(self, shape: str, classes: int = 5):
        super().__init__()
        self.shape = shape
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        features = self.body(x).mean(dim=(2, 3))
        logits = self.head(features)
        if self.shape == "dict":
            return {"logits": logits, "features": features, "predicted": logits.argmax(dim=1)}
        if self.shape == "tuple":
            return logits, features, logits.argmax(dim=1)
        return [logits, features, logits.argmax(dim=1)]


@pytest.fixture(autouse=True)
def exact_float32():
    """Convolutions and matrix products in true float32 on CUDA (cuDNN defaults to TF32 there), so the
    tolerances of the CPU hold; the settings are restored after the test."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def students(shape: str, device: str, k: int = 2) -> list[nn.Module]:
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(TwoHeads(shape).to(device))
    return models


def batch(device: str) -> torch.Tensor:
    return torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(7)).to(device)


def loss(out) -> torch.Tensor:
    """Something of every floating output, so its gradient reaches both heads."""
    return sum(t.square().mean() for t in tree_flatten(out)[0] if t.is_floating_point())


def reference_run(models: list[nn.Module], x: torch.Tensor) -> list:
    """The float32 reference path: each model on its own, forward and backward."""
    run = Execution(x.device, "fp32", "contiguous", False, False)
    outs = [run.runner(m)(x) for m in models]
    loss(outs).backward()
    return outs


def assert_same_structure(out, reference) -> None:
    assert type(out) is type(reference) and tree_structure(out) == tree_structure(reference)
    for a, b in zip(tree_flatten(out)[0], tree_flatten(reference)[0]):
        assert a.dtype == (torch.float32 if b.is_floating_point() else b.dtype)
        assert a.shape == b.shape and a.device == b.device


def assert_close(out, reference, rtol: float = RTOL, atol: float = ATOL) -> None:
    assert_same_structure(out, reference)
    for a, b in zip(tree_flatten(out)[0], tree_flatten(reference)[0]):
        if b.is_floating_point():
            assert torch.allclose(a, b, rtol=rtol, atol=atol)
        else:
            assert torch.equal(a, b)


def assert_same_models(models: list[nn.Module], reference: list[nn.Module]) -> None:
    """Same gradients and batch-norm statistics as the reference models after one forward and backward."""
    for m, r in zip(models, reference):
        for (name, p), q in zip(m.named_parameters(), r.parameters()):
            assert torch.allclose(p.grad, q.grad, rtol=RTOL, atol=ATOL), name
        for (name, b), c in zip(m.named_buffers(), r.buffers()):
            assert torch.allclose(b.double(), c.double(), rtol=RTOL, atol=ATOL), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
def test_the_reference_path_returns_the_model_output_as_it_is(device, shape):
    model, x = students(shape, device, 1)[0], batch(device)
    out = Execution(torch.device(device), "fp32", "contiguous", False, False).runner(model)(x)
    assert_same_structure(out, model(x))
    assert_close(out, model(x), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_fused_students_give_each_student_its_reference_output(device, shape, memory_format):
    reference, x = students(shape, device), batch(device)
    fused = copy.deepcopy(reference)
    expected = reference_run(reference, x)
    outs = Execution(torch.device(device), "fp32", memory_format, False, True).fused_runner(fused)(x)
    assert isinstance(outs, list) and len(outs) == len(fused)
    for out, ref in zip(outs, expected):
        assert_close(out, ref)
    loss(outs).backward()
    assert_same_models(fused, reference)


def single_model_gives_the_reference_output(device: str, shape: str, memory_format: str, compiled: bool) -> None:
    """One model run through the execution path asked for: its outputs, gradients and batch-norm statistics
    against the float32 reference's."""
    reference, x = students(shape, device, 1), batch(device)
    other = copy.deepcopy(reference)
    expected = reference_run(reference, x)
    out = Execution(torch.device(device), "fp32", memory_format, compiled, False).runner(other[0])(x)
    assert_close(out, expected[0])
    loss(out).backward()
    assert_same_models(other, reference)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
def test_channels_last_gives_the_reference_output(device, shape):
    single_model_gives_the_reference_output(device, shape, "channels_last", False)


@pytest.mark.slow  # torch.compile, ~9 s the first time
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", ["dict", "tuple"])
def test_a_compiled_model_gives_the_reference_output(device, shape):
    single_model_gives_the_reference_output(device, shape, "contiguous", True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fuse", [False, True], ids=["one", "fused"])
def test_bf16_autocast_returns_float32_outputs_close_to_the_reference(device, shape, fuse):
    if device == "cpu" and not execution.bf16_cpu():
        pytest.skip("this CPU has no native bf16")
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no native bf16")
    reference, x = students(shape, device), batch(device)
    other = copy.deepcopy(reference)
    expected = reference_run(reference, x)
    run = Execution(torch.device(device), "bf16", "channels_last", False, fuse)
    outs = run.fused_runner(other)(x) if fuse else [run.runner(m)(x) for m in other]
    for out, ref in zip(outs, expected):
        assert_same_structure(out, ref)  # float32 again, the predicted classes still int64
        floats = [(a, b) for a, b in zip(tree_flatten(out)[0], tree_flatten(ref)[0]) if b.is_floating_point()]
        assert all(torch.allclose(a, b, rtol=0.05, atol=0.05) for a, b in floats)
    assert any(not torch.equal(a, b) for out, ref in zip(outs, expected)
               for a, b in zip(tree_flatten(out)[0], tree_flatten(ref)[0]))  # bf16 really ran
    loss(outs).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for m in other for p in m.parameters())
