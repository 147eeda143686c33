"""A moving average of every network's weights, evaluated in their place (`weight_ema`), as the official DML
re-ID code keeps and evaluates one.

YingZhangDUT/Deep-Mutual-Learning train_models.py L264-273 builds `tf.train.ExponentialMovingAverage(
moving_average_decay, global_step)` over `slim.get_model_variables()` of each network (its weights and its
batch-norm moving statistics) and runs its update with that network's training op (L272, L282); eval_models.py
L152-161 restores the averages, not the trained weights, for every evaluation. TensorFlow's average, with
`num_updates` given, decays by min(decay, (1 + n)/(10 + n)) and moves each shadow by
shadow −= (1 − d)·(shadow − value), starting from the variable's initial value. Its n is the global step, which
both networks' `apply_gradients` advance (L278-279): it counts every network's steps, here `steps`. The group
of L282 orders neither the average after the step nor the step after the average; rdml averages after each
step, the step counted. Integer buffers (batch norm's counter) are copied.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """The shadows of `models`' state (weights and buffers), one per network, and the steps counted so far."""

    def __init__(self, models: list[nn.Module], decay: float):
        self.decay, self.steps = decay, 0
        self.shadows = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in models]

    def rate(self) -> float:
        """TF's decay at the current count: min(decay, (1 + n)/(10 + n))."""
        return min(self.decay, (1 + self.steps) / (10 + self.steps))

    @torch.no_grad()
    def update(self, index: int, model: nn.Module) -> None:
        """Count one step and move network `index`'s shadows towards its state after that step."""
        self.steps += 1
        keep = self.rate()
        for name, value in model.state_dict().items():
            shadow = self.shadows[index][name]
            if shadow.is_floating_point():
                shadow.sub_((1 - keep) * (shadow - value))
            else:
                shadow.copy_(value)

    @contextmanager
    def swapped(self, models: list[nn.Module]):
        """The networks hold their averages inside the block (evaluated, saved), their trained state again after it."""
        trained = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in models]
        try:
            for model, shadow in zip(models, self.shadows):
                model.load_state_dict(shadow)
            yield
        finally:
            for model, state in zip(models, trained):
                model.load_state_dict(state)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "shadows": self.shadows}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        for shadow, saved in zip(self.shadows, state["shadows"]):
            for name, value in saved.items():
                shadow[name].copy_(value)
