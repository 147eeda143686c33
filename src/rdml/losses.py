"""Public import path of the losses (`from rdml.losses import kd_loss, mutual_loss`); see rdml.core.losses,
rdml.core.distillation and rdml.core.mutual."""

from rdml.core.distillation import kd_loss, kd_terms
from rdml.core.losses import UNLABELLED, kl_distillation, supervised_cross_entropy
from rdml.core.mutual import mutual_loss, mutual_terms

__all__ = ["UNLABELLED", "supervised_cross_entropy", "kl_distillation", "kd_terms", "kd_loss", "mutual_terms", "mutual_loss"]
