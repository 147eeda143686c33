"""Architectures: a torch-free catalogue (`rdml.models.catalog`), the small networks of the embedded
default (`small`) and the papers' CIFAR-sized zoo (`zoo`). `build_model(name, spec)` builds one for a
data set's spec (rdml.data.catalog.DataSpec)."""

from __future__ import annotations

import importlib

from rdml.data.catalog import DataSpec
from rdml.keys import ConfigError
from rdml.models.catalog import ARCHITECTURES

__all__ = ["ARCHITECTURES", "build_model"]


def build_model(name: str, spec: DataSpec):
    """An untrained `name` for inputs of `spec`; refuses an architecture that does not take its kind."""
    arch = ARCHITECTURES[name]
    if spec.kind not in arch.kinds:
        raise ConfigError(f"arch={name} takes {', '.join(arch.kinds)}, not {spec.kind}")
    module, function = arch.builder.split(":")
    return getattr(importlib.import_module(f"rdml.models.{module}"), function)(tuple(spec.input_shape), spec.num_classes)
