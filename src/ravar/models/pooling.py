"""Pooling over tokens with a padding mask."""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the valid tokens: x [B, N, C], mask [B, N] bool -> [B, C] (zeros where none
    is valid; all tokens when mask is None)."""
    if mask is None:
        return x.mean(1)
    m = mask.to(x.dtype)[..., None]  # [B, N, 1]
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)  # [B, C]
