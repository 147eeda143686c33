"""Optimisers and learning-rate schedules from the config's keys."""

from __future__ import annotations

import torch

__all__ = ["make_optimizer", "make_scheduler"]


def make_optimizer(cfg, params) -> torch.optim.Optimizer:
    """`decay_1d=false` puts every parameter of at most one dimension (biases, norm scales and shifts) in a
    group without weight decay, as timm's `create_optimizer_v2(filter_bias_and_bn=True)` does."""
    if not cfg.decay_1d:
        params = list(params)
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _constant(epoch: int) -> float:
    return 1.0


def make_scheduler(cfg, optimizer, steps_per_epoch: int):
    """Learning-rate schedule; only onecycle steps per batch, the others per epoch."""
    sched = torch.optim.lr_scheduler
    if cfg.schedule == "step":
        return sched.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "multistep":
        return sched.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)
    if cfg.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.schedule == "onecycle":
        # Momentum is not cycled: it stays what the config says, so no second schedule hides here.
        return sched.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=cfg.pct_start, cycle_momentum=False
        )
    return sched.LambdaLR(optimizer, _constant)
