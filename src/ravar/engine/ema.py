"""Exponential moving average of a model's weights (evaluated and saved instead of the raw
weights when EMA is on), kept by `torch.optim.swa_utils.AveragedModel`.

The averaging function is ours, not `get_ema_multi_avg_fn(decay)`: that one uses a constant
decay from the first step, so after a short run (a few hundred steps at decay 0.999) the average
is still mostly the first step's weights, and it averages integer buffers (counters) in integer
arithmetic, which truncates them (a count stays stuck). Ours ramps the decay up and copies
integer buffers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ramped_ema_multi_avg_fn(
    decay: float,
) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """An `AveragedModel` `multi_avg_fn`: `ema = d * ema + (1 - d) * weights` with
    d = min(decay, (1 + n) / (10 + n)) at the n-th update (n from 0), so early weights fade
    quickly; integer tensors are copied. `AveragedModel` passes its count of averaged models,
    which counts the model it was built from, so n = that count - 1."""

    @torch.no_grad()
    def update(
        averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor
    ) -> None:
        n = int(num_averaged) - 1
        d = min(decay, (1 + n) / (10 + n))
        if averaged[0].dtype.is_floating_point:  # one dtype per call
            torch._foreach_lerp_(averaged, [c.to(averaged[0].dtype) for c in current], 1.0 - d)
        else:
            for target, value in zip(averaged, current, strict=True):
                target.copy_(value)

    return update


class ModelEMA:
    """A frozen copy `module` of `model` whose weights and buffers follow the ramped EMA of
    `ramped_ema_multi_avg_fn` after every `update` (one per optimizer step)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.averaged = AveragedModel(
            model, multi_avg_fn=ramped_ema_multi_avg_fn(decay), use_buffers=True
        )
        self.averaged.n_averaged.fill_(1)  # the copy already holds the model's weights
        self.module: nn.Module = self.averaged.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @property
    def updates(self) -> int:
        """How many updates the average has had."""
        return int(self.averaged.n_averaged) - 1

    def update(self, model: nn.Module) -> None:
        """Move the average towards the current weights of `model` (same architecture, not
        wrapped in DistributedDataParallel)."""
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, object]:
        """Counters for resuming (the averaged weights are saved as the checkpoint's weights)."""
        return {"decay": self.decay, "updates": self.updates}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.averaged.n_averaged.fill_(int(state["updates"]) + 1)  # type: ignore[call-overload]
