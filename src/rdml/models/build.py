"""Building an architecture of the catalogue (rdml.models.catalog) for a data set's spec. Its builder's module
is imported only when a model is built, so importing the catalogue, or this, never imports torch."""

from __future__ import annotations

import importlib
from pathlib import Path

from rdml.data.catalog import DataSpec
from rdml.keys import ConfigError
from rdml.models.catalog import ARCHITECTURES

__all__ = ["build_model"]


def build_model(name: str, spec: DataSpec, *, outputs: int | None = None, weights: str | Path | None = None,
                embeddings=None):
    """`name` for inputs of `spec` with `outputs` outputs (default: the data set's classes), randomly
    initialised, or from the published weights in file `weights`; a word model on the data set's word
    vectors `embeddings`. Refuses an architecture that does not take the data's kind."""
    arch = ARCHITECTURES[name]
    if spec.kind not in arch.kinds:
        raise ConfigError(f"arch={name} takes {', '.join(arch.kinds)}, not {spec.kind}")
    if weights is not None and arch.weights is None:
        raise ConfigError(f"arch={name} has no published weights to start from")
    module, function = arch.builder.split(":")
    build = getattr(importlib.import_module(f"rdml.models.{module}"), function)
    extra = {} if weights is None else {"weights": weights}
    if arch.words:
        if embeddings is None:
            raise ConfigError(f"arch={name} is built from a text data set's word vectors, and none were given")
        extra["embeddings"] = embeddings
    return build(tuple(spec.input_shape), outputs or spec.num_classes, **extra)
