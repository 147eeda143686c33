"""Training methods, one module per family, each registered in `METHODS` where it is defined.

Adding a method: a module here with a `Method` subclass registered under its name, imported below.
"""

from rdml.methods import independent, kd, dml, kdcl, okdph, one, okddip, ffl, pcl  # noqa: F401, I001  (registers them, in the order --help lists them)
from rdml.methods.base import METHODS, Method

__all__ = ["METHODS", "Method"]
