"""How the students run on the device: precision, determinism, memory layout, compilation, fused cohorts.

The precision default follows the device: bf16 autocast on a CUDA device that has it, float32 on the
CPU (the reference numerics); a user may ask for bf16 on a CPU with native bf16 (AVX512-BF16 / AMX).
The memory layout and compilation default to `auto`, timed on the run's own step (rdml.train.autotune);
`fuse_students` is asked for, never chosen. The run record says what ran and why.

Precision and determinism are process-global switches of torch (TF32 for float32 matmuls and
convolutions, deterministic kernels, cuDNN autotuning), which torch leaves at values that would make
`fp32` a lie on Ampere and later GPUs (cuDNN convolutions in TF32). `Execution.apply` sets every one
of them for each run, whatever an earlier run of the same process set, and `numerics` reads them back
for the record and the resume key.

A model may return one tensor, or a tuple, list or dict of them (logits and features, several heads):
every path returns the structure the model gave, its floating tensors in float32 wherever the path
casts, its integer tensors untouched, so a model that passes the CPU reference runs unchanged on the GPU.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_flatten, tree_map_only, tree_unflatten

from rdml.keys import ConfigError

__all__ = ["Execution", "choose_execution", "ExecutionError", "numerics", "CUBLAS_DETERMINISTIC"]

Output = Tensor | tuple | list | dict  # what a model returns: one tensor, or a tuple, list or dict of tensors

# The cuBLAS workspace configurations NVIDIA documents as deterministic; rdml sets the first where none is set.
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")
CUBLAS = "CUBLAS_WORKSPACE_CONFIG"


class ExecutionError(ConfigError):
    """A precision, layout or fusion this device or cohort cannot run; the message names it."""


@dataclass(frozen=True)
class Execution:
    device: torch.device
    precision: str  # fp32 | tf32 | bf16
    memory_format: str  # contiguous | channels_last; auto until rdml.train.autotune times the run's step
    compile: bool | str  # True | False; "auto" until rdml.train.autotune times it
    fuse_students: bool
    deterministic: bool = True

    def apply(self) -> dict:
        """Set every process-global switch this execution depends on, and return what torch now says (`numerics`).

        All of them, every time: torch's flags outlive a run, so a process that trains several runs (the
        tests, a pipeline job of many runs) would otherwise run one under the previous one's switches.
        Called once per run, before its models are built or run. CUBLAS_WORKSPACE_CONFIG is read when cuBLAS
        first runs in the process, so it is set here, before any of the run's work, where it is unset."""
        tf32 = "tf32" if self.precision == "tf32" else "ieee"  # bf16: what is not autocast stays float32
        # torch keeps two sets of TF32 switches and raises where a reader of one finds the other disagreeing
        # (torch.compile and older code read the first): both are set, the per-backend ones last
        torch.set_float32_matmul_precision("high" if tf32 == "tf32" else "highest")
        torch.backends.cudnn.allow_tf32 = tf32 == "tf32"
        for switch in (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn):
            switch.fp32_precision = tf32
        for switch in (torch.backends.mkldnn.matmul, torch.backends.mkldnn.conv, torch.backends.mkldnn.rnn):
            switch.fp32_precision = "ieee"  # the CPU's float32 is float32, whatever else the process asked of oneDNN
        torch.use_deterministic_algorithms(self.deterministic)
        torch.backends.cudnn.deterministic = self.deterministic
        torch.backends.cudnn.benchmark = not self.deterministic and self.device.type == "cuda"
        if self.deterministic and self.device.type == "cuda":
            os.environ.setdefault(CUBLAS, CUBLAS_DETERMINISTIC[0])
        return numerics(self.device)

    def runner(self, model: nn.Module) -> Callable[[Tensor], Output]:
        """`model` as it runs here: input in the chosen layout, forward in the chosen precision, float32 outputs."""
        self._resolved()
        forward = torch.compile(self._placed(model)) if self.compile else self._placed(model)
        if self.precision != "bf16" and self.memory_format == "contiguous":
            return forward  # the reference path, untouched (tf32 is a switch of the kernels, not of the forward)
        return lambda x: self._in_precision(forward, self._laid_out(x))

    def fused_runner(self, models: list[nn.Module]) -> Callable[[Tensor], list[Output]]:
        """One vmapped forward of K same-architecture students, each on its own weights and statistics.

        The weights are stacked from the students' own parameters on every call, so gradients, optimisers
        and checkpoints stay per student; batch-norm statistics updated in the stack are copied back.
        Every tensor the students return comes back stacked on a new first axis (vmap's out_dims=0, one per
        leaf of the output's structure) and is split into one output of the model's structure per student.
        """
        self._resolved()
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
                "fuse_students": self.fuse_students, "deterministic": self.deterministic}

    def _resolved(self) -> None:
        if "auto" in (self.memory_format, self.compile):
            raise ValueError(f"{self.describe()}: resolve auto first (rdml.train.autotune.resolve_auto)")

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


def choose_execution(device: torch.device, precision: str, memory_format: str, compile: bool | str, fuse_students: bool,
                     archs: list[str], deterministic: bool = True) -> Execution:
    """Resolve `precision: auto` for this device and refuse what it cannot run, before any work starts.
    `memory_format` and `compile` stay `auto` where asked: they are timed on the run's own step once its data
    is loaded (rdml.train.autotune)."""
    cuda = device.type == "cuda"
    bf16_native = torch.cuda.is_bf16_supported() if cuda else bf16_cpu()
    allowed = ", ".join(["fp32", *(["tf32"] if cuda else []), *(["bf16"] if bf16_native else []), "auto"])
    if precision == "auto":
        precision = "bf16" if cuda and bf16_native else "fp32"
    elif precision == "bf16" and not bf16_native:
        where = torch.cuda.get_device_name(device) if cuda else "this CPU (no AVX512-BF16 or AMX)"
        raise ExecutionError(f"precision=bf16: {where} has no native bf16; allowed here: {allowed}")
    elif precision == "tf32" and not cuda:
        raise ExecutionError(f"precision=tf32: TF32 is a mode of NVIDIA tensor cores, and device={device} is a CPU; "
                             f"allowed here: {allowed}")
    workspace = os.environ.get(CUBLAS)
    if cuda and deterministic and workspace not in (None, *CUBLAS_DETERMINISTIC):
        raise ExecutionError(f"deterministic=true: {CUBLAS}={workspace!r} makes cuBLAS nondeterministic; allowed: "
                             f"{' or '.join(CUBLAS_DETERMINISTIC)}, or unset (rdml sets {CUBLAS_DETERMINISTIC[0]}), "
                             "or deterministic=false")
    if fuse_students and len(set(archs)) != 1:
        raise ExecutionError(f"fuse_students=true needs one architecture for every student, got {','.join(archs)}")
    if fuse_students and compile is True:
        raise ExecutionError("compile=true with fuse_students=true is not supported; choose one")
    return Execution(device, precision, memory_format, compile, fuse_students, deterministic)


def numerics(device: torch.device) -> dict:
    """What the device's kernels run as, read back from torch's switches (not from the keys), for the record:
    the float32 mode of matmuls and convolutions (ieee, tf32; cuBLAS and cuDNN on CUDA, oneDNN on the CPU)
    and whether kernels are deterministic."""
    cuda = device.type == "cuda"
    matmul = torch.backends.cuda.matmul if cuda else torch.backends.mkldnn.matmul
    conv = torch.backends.cudnn.conv if cuda else torch.backends.mkldnn.conv
    return {"float32_matmul": matmul.fp32_precision, "float32_conv": conv.fp32_precision,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic, "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": os.environ.get(CUBLAS) if cuda else None}


def bf16_cpu() -> bool:
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
