"""Exponential moving average of a model's weights (evaluated and saved instead of the raw
weights when EMA is on)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of `model` whose floating-point weights follow
    `ema = d * ema + (1 - d) * weights` after every optimizer step, with the decay ramped up as
    d = min(decay, (1 + n) / (10 + n)) over the first updates n so early weights fade quickly.
    Integer buffers (counters) are copied."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """Decay the next update uses."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the current weights of `model` (same architecture)."""
        d = self.current_decay()
        pairs = list(zip(self.module.parameters(), model.parameters(), strict=True))
        pairs += list(zip(self.module.buffers(), model.buffers(), strict=True))
        for target, value in pairs:  # parameters() and buffers() list tied tensors once
            if target.dtype.is_floating_point:
                target.mul_(d).add_(value.detach().to(target.dtype), alpha=1.0 - d)
            else:
                target.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, object]:
        """Counters for resuming (the averaged weights are saved as the checkpoint's weights)."""
        return {"decay": self.decay, "updates": self.updates}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.updates = int(state["updates"])  # type: ignore[arg-type]
