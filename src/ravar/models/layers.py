"""Layers every model builds on: multi-head attention, the feed-forward MLP, and the resizing of
learned position embeddings to another number of positions.

    attention   out = concat_h softmax(Q_h K_h^T / sqrt(d) + mask) V_h, projected     [B, N, C]
                Q = x W_q, K = context W_k, V = context W_v (context = x: self-attention), d = C / h
    feed-forward  Linear -> GELU -> Dropout -> ... -> Linear
    positions   a table [N, C] made for one grid of positions, interpolated (or refused) for another

Where a model's maths differ, a flag says how (attention: dropout on the weights or on the output,
the parameter layout of `torch.nn.MultiheadAttention`; resizing: the interpolation `mode`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ravar.config import ConfigError

AttentionLayout = Literal["fused", "torch"]
ResizeMode = Literal["linear", "bicubic", "prefix", "fixed"]
RESIZE_MODES: tuple[str, ...] = ("linear", "bicubic", "prefix", "fixed")


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, N, C] -> [B, h, N, C/h]: head j reads channels j*C/h ... (j+1)*C/h - 1."""
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, h, N, d] -> [B, N, h*d], the inverse of `split_heads`."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class MultiHeadAttention(nn.Module):
    """Multi-head attention of queries x [B, N, C] over a context [B, M, C] (x itself when none is
    given), with a key mask [B, M] (True = valid; a row with no valid key attends to all keys).

    `attn_dropout` drops attention weights, `out_dropout` the projected output (training only).
    `layout` names the parameters and fixes the order of the computation:
      "fused": `qkv` (one Linear C -> 3C, q | k | v) and `proj` (Linear C -> C);
      "torch": `in_proj_weight`, `in_proj_bias`, `out_proj`, initialised and computed (sequence
               first) as `torch.nn.MultiheadAttention(batch_first=True)` does, so its checkpoints
               load and a seeded run gives its numbers bit for bit.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        attn_dropout: float = 0.0,
        out_dropout: float = 0.0,
        layout: AttentionLayout = "fused",
    ) -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise ConfigError(f"attention width {dim} is not a multiple of its heads ({heads})")
        if layout not in ("fused", "torch"):
            raise ConfigError(f"attention layout must be 'fused' or 'torch', got {layout!r}")
        self.dim, self.heads, self.layout = dim, heads, layout
        self.attn_dropout = attn_dropout
        if layout == "fused":
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
        else:  # creation and initialisation in the order of torch.nn.MultiheadAttention
            self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
            self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
            self.out_proj = nn.Linear(dim, dim)
            nn.init.xavier_uniform_(self.in_proj_weight)
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)
        self.drop = nn.Dropout(out_dropout)

    def _mask(self, key_mask: torch.Tensor | None) -> torch.Tensor | None:
        """key_mask [B, M] -> [B, 1, 1, M] for the attention scores (None: every key valid)."""
        if key_mask is None:
            return None
        valid = key_mask.bool()
        valid = valid | ~valid.any(1, keepdim=True)  # no valid key: attend to all of them
        return valid[:, None, None, :]

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """q [B, h, N, d], k and v [B, h, M, d] -> softmax(q k^T / sqrt(d) + mask) v, [B, h, N, d]
        (a valid-key mask, so the scores of masked keys are -inf)."""
        p = self.attn_dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self._mask(key_mask), dropout_p=p)

    def _fused(
        self, x: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        b, n, c = x.shape
        if context is None:
            q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        else:
            w_q, w_kv = self.qkv.weight.split([c, 2 * c])
            b_q, b_kv = self.qkv.bias.split([c, 2 * c])
            q = split_heads(F.linear(x, w_q, b_q), self.heads)  # [B, h, N, d]
            k, v = (
                split_heads(t, self.heads) for t in F.linear(context, w_kv, b_kv).chunk(2, dim=-1)
            )  # [B, h, M, d]
        return self.proj(merge_heads(self._attend(q, k, v, mask)))  # [B, N, C]

    def _torch(
        self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        b, n, c = x.shape
        h, d = self.heads, c // self.heads
        w_q, w_kv = self.in_proj_weight.split([c, 2 * c])
        b_q, b_kv = self.in_proj_bias.split([c, 2 * c])
        q = F.linear(x.transpose(0, 1), w_q, b_q)  # [N, B, C]
        kv = F.linear(context.transpose(0, 1), w_kv, b_kv)  # [M, B, 2C]
        kv = kv.unflatten(-1, (2, c)).permute(2, 0, 1, 3).contiguous()  # [2, M, B, C]
        q, k, v = (
            t.view(t.shape[0], b * h, d).transpose(0, 1).view(b, h, t.shape[0], d)
            for t in (q, kv[0], kv[1])
        )  # [B, h, N or M, d]
        out = self._attend(q, k, v, mask).permute(2, 0, 1, 3).reshape(n * b, c)  # [N*B, C]
        return self.out_proj(out).view(n, b, c).transpose(0, 1)  # [B, N, C]

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, N, C], context [B, M, C] (None: x), key_mask [B, M] -> [B, N, C]."""
        if self.layout == "fused":
            out = self._fused(x, context, key_mask)
        else:
            out = self._torch(x, x if context is None else context, key_mask)
        return self.drop(out)


class FeedForward(nn.Sequential):
    """Linear layers with GELU and dropout between them: `dim_in` -> `hidden` (`layers` - 1
    times) -> `dim_out`. Submodules 0, 3, 6... are the Linear layers."""

    def __init__(
        self, dim_in: int, hidden: int, dim_out: int, layers: int = 2, dropout: float = 0.0
    ) -> None:
        dims = [dim_in] + [hidden] * (layers - 1) + [dim_out]
        mods: list[nn.Module] = []
        for i in range(len(dims) - 1):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                mods += [nn.GELU(), nn.Dropout(dropout)]
        super().__init__(*mods)


def resize_pos_embed(
    pos: torch.Tensor,
    to_grid: int | tuple[int, ...],
    from_grid: tuple[int, ...] | None = None,
    mode: ResizeMode = "linear",
    name: str = "position embeddings",
) -> torch.Tensor:
    """Learned positions `pos` [N, C] (or [1, N, C]), row-major on `from_grid` (default (N,)),
    for `to_grid` -> [prod(to_grid), C] (or [1, ..., C]); `pos` itself when the grids agree.

      linear:  1D, linear interpolation keeping both ends (align_corners=True)
      bicubic: 2D, bicubic interpolation of the grid (align_corners=False)
      prefix:  1D, the first positions of a table made for up to N (more raise)
      fixed:   no resizing: another grid raises
    Errors name `name`, the setting the table was made for (e.g. "clip.num_frames").
    """
    if pos.dim() == 3 and pos.shape[0] == 1:
        return resize_pos_embed(pos[0], to_grid, from_grid, mode, name)[None]
    if pos.dim() != 2:
        raise ValueError(f"{name}: position embeddings must be [N, C], got {tuple(pos.shape)}")
    to_grid = (to_grid,) if isinstance(to_grid, int) else tuple(to_grid)
    from_grid = (pos.shape[0],) if from_grid is None else tuple(from_grid)
    if mode not in RESIZE_MODES:
        raise ConfigError(f"{name}: resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if math.prod(from_grid) != pos.shape[0]:
        raise ValueError(f"{name}: grid {from_grid} does not hold {pos.shape[0]} positions")
    if to_grid == from_grid:
        return pos
    n_from, n_to = math.prod(from_grid), math.prod(to_grid)
    if mode == "fixed" or (mode == "prefix" and (len(to_grid) != 1 or n_to > n_from)):
        raise ConfigError(
            f"the input has {n_to} positions (grid {list(to_grid)}) but the model was built for "
            f"{name}={n_from} (grid {list(from_grid)})"
        )
    if mode == "prefix":
        return pos[:n_to]
    dims = 1 if mode == "linear" else 2
    if len(to_grid) != dims or len(from_grid) != dims:
        raise ValueError(
            f"{name}: {mode} resizing needs {dims}D grids, got {from_grid} -> {to_grid}"
        )
    if mode == "linear":
        line = F.interpolate(pos.T[None], size=to_grid[0], mode="linear", align_corners=True)
        return line[0].T  # [n_to, C]
    g = pos.view(1, from_grid[0], from_grid[1], -1).permute(0, 3, 1, 2)  # [1, C, h0, w0]
    g = F.interpolate(g, size=to_grid, mode="bicubic", align_corners=False)  # [1, C, h, w]
    return g.flatten(2).transpose(1, 2)[0]  # [h*w, C]
