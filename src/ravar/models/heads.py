"""Prediction heads: actions (80 logits) and the keyframe box (always a valid box)."""

from __future__ import annotations

import torch
from torch import nn

from ravar.labels import NUM_CLASSES
from ravar.models.layers import FeedForward
from ravar.util.box_ops import valid_boxes_from_unbounded


class MLP(nn.Module):
    """A `FeedForward` (Linear layers with GELU and dropout between them) held as `net`, the
    parameter names of the heads' checkpoints."""

    def __init__(
        self, dim_in: int, dim_hidden: int, dim_out: int, layers: int = 2, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.net = FeedForward(dim_in, dim_hidden, dim_out, layers, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ActionHead(nn.Module):
    """`[B, C]` -> `[B, 80]` action logits."""

    def __init__(self, dim: int, hidden: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.mlp = MLP(dim, hidden or dim, NUM_CLASSES, layers=2, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class BoxHead(nn.Module):
    """`[B, C]` -> `[B, 4]` normalised xyxy boxes that are always valid (inside [0, 1],
    x1 < x2, y1 < y2): the MLP predicts unbounded (cx, cy, w, h), mapped through a sigmoid."""

    def __init__(self, dim: int, hidden: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.mlp = MLP(dim, hidden or dim, 4, layers=2, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return valid_boxes_from_unbounded(self.mlp(x))  # [B, 4]
