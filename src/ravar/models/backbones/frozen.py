"""A backbone part that can be frozen: no gradients, always in eval mode, run under no_grad. The
only way `ravar` freezes weights: a model holding such a backbone needs nothing more."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn


class FrozenPartMixin(nn.Module):
    """Adds `frozen_part` (the submodule kept frozen, or None) to a backbone. The part is not
    registered a second time, so state dicts hold each weight once."""

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_frozen_part", None)

    @property
    def frozen_part(self) -> nn.Module | None:
        """The frozen submodule (no gradients, always eval), or None."""
        return self._frozen_part

    def _freeze(self, part: nn.Module) -> None:
        object.__setattr__(self, "_frozen_part", part)
        for p in part.parameters():
            p.requires_grad_(False)
        nn.Module.train(part, False)

    def train(self, mode: bool = True) -> FrozenPartMixin:
        super().train(mode)
        if self._frozen_part is not None:
            nn.Module.train(self._frozen_part, False)
        return self

    def _grad_context(self) -> Any:
        """`torch.no_grad()` when a part is frozen, else a context that does nothing."""
        return torch.no_grad() if self._frozen_part is not None else nullcontext()
