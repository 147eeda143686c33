"""Optimisers and learning-rate schedules from the config's keys."""

from __future__ import annotations

import torch

__all__ = ["make_optimizer", "make_scheduler"]


def make_optimizer(cfg, params) -> torch.optim.Optimizer:
    """`decay_1d=false` puts every parameter of at most one dimension (biases, norm scales and shifts) in a
    group without weight decay, as timm's `create_optimizer_v2(filter_bias_and_bn=True)` does.

    `rmsprop_tf` is TensorFlow's RMSProp as TF-slim ran it (tensorflow/models at 451906e, the last change of
    these files, research/slim/train_image_classifier.py L334-339: `tf.train.RMSPropOptimizer(lr, decay=rmsprop_decay,
    momentum=rmsprop_momentum, epsilon=opt_epsilon)`, flags 0.9, 0.9 and 1.0 at L130, L128, L109), through
    timm's `RMSpropTF`: the mean square starts at ones (TF's `RMSPropOptimizer._create_slots`, "rms" slot),
    ms <- ms + (1 - rho)(g² - ms), mom <- momentum·mom + lr·g/sqrt(ms + eps), w <- w - mom (TF's
    `ApplyRMSProp` kernel, tensorflow/core/kernels/training_ops.cc), lr inside the momentum buffer as TF keeps it.
    Weight decay is added to the gradient before all of this (timm's coupled form, `decoupled_decay=False`):
    the gradient of TF-slim's `slim.l2_regularizer(weight_decay)` loss, weight_decay·tf.nn.l2_loss(w) =
    weight_decay·sum(w²)/2, so `weight_decay=4e-5` is TF-slim's `--weight_decay=0.00004` (L86). TF-slim's arg
    scopes put that loss on conv and fully connected weights only (research/slim/nets/inception_utils.py L73-75;
    mobilenet_v1.py L465-478 leaves depthwise kernels out by default): `decay_1d=false` leaves biases and
    norm parameters out too, but decays depthwise kernels.

    `adam` is torch's Adam, whose epsilon is added to the bias-corrected root mean square, where TF's AdamOptimizer
    (the official DML code's, train_models.py L161-164, epsilon 1e-8) adds it to the uncorrected one: the two differ by
    a factor sqrt(1 - β2^t) on epsilon, which matters only while sqrt(v) is near 1e-8."""
    if not cfg.decay_1d:
        params = list(params)
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop_tf":
        from timm.optim import RMSpropTF

        return RMSpropTF(params, lr=cfg.lr, alpha=cfg.rmsprop_decay, eps=cfg.rmsprop_epsilon, momentum=cfg.momentum,
                         weight_decay=cfg.weight_decay, centered=False, decoupled_decay=False, lr_in_momentum=True)
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)


def _constant(epoch: int) -> float:
    return 1.0


def make_scheduler(cfg, optimizer, steps_per_epoch: int):
    """Learning-rate schedule; only onecycle steps per batch, the others per epoch.

    `step` is TF's staircase exponential decay, lr·gamma^floor(global_step / decay_steps) (as TF-slim's
    `_configure_learning_rate` calls `tf.train.exponential_decay(..., staircase=True)`, research/slim/
    train_image_classifier.py L262-271), wherever decay_steps = step_size × the steps of an epoch: both give
    lr·gamma^floor(epoch / step_size) at every step of an epoch. TF-slim's own decay_steps is
    int(rows / batch_size × epochs per decay) (L258, L262), which falls on an epoch's end only when batch_size
    divides the rows; otherwise TF's k-th decay comes k·d steps before rdml's, d = step_size × the steps of an
    epoch − decay_steps (ImageNet's 1,281,167 rows in batches of 64, every 20 epochs: TF at step k·400,364,
    rdml at k·400,380)."""
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
