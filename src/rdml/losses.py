"""Public import path of the losses (`from rdml.losses import kd_loss, mutual_loss`); see rdml.core.losses."""

from rdml.core.losses import *  # noqa: F401,F403
from rdml.core.losses import __all__  # noqa: F401
