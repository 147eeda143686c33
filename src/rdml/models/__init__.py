"""Architectures: a torch-free catalogue (`rdml.models.catalog`), the small networks of the embedded
default (`small`), the papers' CIFAR-sized zoo (`zoo`) and timm's networks (`timm_zoo`, with their
published weights: `pretrained`). `build_model(name, spec)` (`build`) builds one for a data set's spec
(rdml.data.catalog.DataSpec)."""

from rdml.models.build import build_model
from rdml.models.catalog import ARCHITECTURES

__all__ = ["ARCHITECTURES", "build_model"]
