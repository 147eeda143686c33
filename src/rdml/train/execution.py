"""How the students run on the device: precision, memory layout, compilation, fused cohorts.

The defaults follow the device. On CUDA: bf16 autocast (where the GPU has it) and channels_last, the
fast path of its tensor cores. On the CPU: float32 in the default layout, so a CPU run gives the
reference numerics. A user may still ask for bf16 or channels_last on a CPU with native bf16
(AVX512-BF16 / AMX), where they measured faster (benchmarks/README.md); `compile` and
`fuse_students` are asked for, never chosen. The run record says what ran.

A model may return one tensor, or a tuple, list or dict of them (logits and features, several heads):
every path returns the structure the model gave, its floating tensors in float32 wherever the path
casts, its integer tensors untouched, so a model that passes the CPU reference runs unchanged on the GPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_flatten, tree_map_only, tree_unflatten

from rdml.keys import ConfigError

__all__ = ["Execution", "choose_execution", "ExecutionError"]

Output = Tensor | tuple | list | dict  # what a model returns: one tensor, or a tuple, list or dict of tensors


class ExecutionError(ConfigError):
    """A precision, layout or fusion this device or cohort cannot run; the message names it."""


@dataclass(frozen=True)
class Execution:
    device: torch.device
    precision: str  # fp32 | bf16
    memory_format: str  # contiguous | channels_last
    compile: bool
    fuse_students: bool

    def runner(self, model: nn.Module) -> Callable[[Tensor], Output]:
        """`model` as it runs here: input in the chosen layout, forward in the chosen precision, float32 outputs."""
        forward = torch.compile(self._placed(model)) if self.compile else self._placed(model)
        if self.precision == "fp32" and self.memory_format == "contiguous":
            return forward  # the reference path, untouched
        return lambda x: self._in_precision(forward, self._laid_out(x))

    def fused_runner(self, models: list[nn.Module]) -> Callable[[Tensor], list[Output]]:
        """One vmapped forward of K same-architecture students, each on its own weights and statistics.

        The weights are stacked from the students' own parameters on every call, so gradients, optimisers
        and checkpoints stay per student; batch-norm statistics updated in the stack are copied back.
        Every tensor the students return comes back stacked on a new first axis (vmap's out_dims=0, one per
        leaf of the output's structure) and is split into one output of the model's structure per student.
        """
        template = copy.deepcopy(self._placed(models[0])).to("meta")
        named = [dict(self._placed(m).named_parameters()) for m in models]  # the same tensors for the whole run
        owned = [dict(m.named_buffers()) for m in models]

        def one(params, buffers, x):
            return functional_call(template, (params, buffers), (x,))

        batched = vmap(one, in_dims=(0, 0, None), randomness="different")

        def forward(x: Tensor) -> list[Output]:
            template.train(models[0].training)
            params = {name: torch.stack([n[name] for n in named]) for name in named[0]}
            buffers = {name: torch.stack([b[name] for b in owned]) for name in owned[0]}
            stacked_out = self._in_precision(lambda inputs: batched(params, buffers, inputs), self._laid_out(x))
            if template.training:
                with torch.no_grad():
                    for name, stacked in buffers.items():
                        for k, b in enumerate(owned):
                            b[name].copy_(stacked[k])
            leaves, structure = tree_flatten(stacked_out)
            per_leaf = [leaf.unbind(0) for leaf in leaves]
            return [tree_unflatten([split[k] for split in per_leaf], structure) for k in range(len(models))]

        return forward

    def describe(self) -> dict:
        return {"precision": self.precision, "memory_format": self.memory_format, "compile": self.compile,
                "fuse_students": self.fuse_students}

    def _placed(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.memory_format == "channels_last" else model

    def _laid_out(self, x: Tensor) -> Tensor:
        if self.memory_format == "channels_last" and isinstance(x, Tensor) and x.dim() == 4:  # images, not text rows
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _in_precision(self, forward: Callable, x: Tensor) -> Output:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = forward(x)
        return tree_map_only(Tensor, _as_float32, out)


def _as_float32(t: Tensor) -> Tensor:
    """A floating output in float32, what the losses and the record read; an integer one (class indices,
    counts) as the model gave it, which `.float()` would turn into floats."""
    return t.float() if t.is_floating_point() else t


def choose_execution(device: torch.device, precision: str, memory_format: str, compile: bool, fuse_students: bool,
                     archs: list[str]) -> Execution:
    """Resolve `auto` for this device and refuse what it cannot run, before any work starts."""
    cuda = device.type == "cuda"
    bf16_native = torch.cuda.is_bf16_supported() if cuda else bf16_cpu()
    if precision == "auto":
        precision = "bf16" if cuda and bf16_native else "fp32"
    elif precision == "bf16" and not bf16_native:
        where = torch.cuda.get_device_name(device) if cuda else "this CPU (no AVX512-BF16 or AMX)"
        raise ExecutionError(f"precision=bf16: {where} has no native bf16; allowed here: fp32, auto")
    if memory_format == "auto":
        memory_format = "channels_last" if cuda else "contiguous"
    if fuse_students and len(set(archs)) != 1:
        raise ExecutionError(f"fuse_students=true needs one architecture for every student, got {','.join(archs)}")
    if fuse_students and compile:
        raise ExecutionError("compile=true with fuse_students=true is not supported; choose one")
    return Execution(device, precision, memory_format, compile, fuse_students)


def bf16_cpu() -> bool:
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
