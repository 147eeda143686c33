"""Public import path of the divergences (`from rdml.divergences import renyi_divergence`); see rdml.core.divergences."""

from rdml.core.divergences import *  # noqa: F401,F403
from rdml.core.divergences import __all__  # noqa: F401
