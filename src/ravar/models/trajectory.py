"""Semantic trajectories for RefAtomNet++ and the axis bookkeeping around them.

A trajectory follows one query (a keyword of the sentence, or a detected object) through the clip:
in every frame t it takes the visual token most similar to the query (cosine similarity), so the
picks over t form a sequence [T, C] that a Mamba layer can scan.

The selection is trainable (the authors' argmax gave the query projections no gradient):
    s[b, k, t, q] = cos(query[b, k], token[b, t, q])
    soft           = softmax_q(s / tau)
    "soft":             w = soft
    "straight_through": w = onehot(argmax_q s) + soft - stopgrad(soft)   (forward: exactly the
                        one-hot pick; backward: the gradient of the temperature softmax)
    trajectory[b, k, t] = sum_q w[b, k, t, q] * token[b, t, q]

How the trajectories are scanned (`RefAtomNetPPConfig.trajectory_scan`):
    "per_trajectory": each trajectory [T, C] is its own sequence (`scan_trajectories`);
    "authors": as the authors' code, all the trajectories of a clip form ONE sequence, keyword
        after keyword ([K*T, C], position k*T + t: `scan_keyword_major`), which is then averaged
        over the keywords into [T, C] (`mean_over_trajectories`).

Token grids are always [B, T, Q, C] (batch, frame, token within the frame, channel); the helpers
below turn them into the sequences that Mamba layers scan and back, without mixing T and Q.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

SelectionMode = Literal["straight_through", "soft"]
SELECTION_MODES: tuple[str, ...] = ("straight_through", "soft")


@dataclass
class Trajectories:
    """Result of `select_trajectories`."""

    tokens: torch.Tensor  # [B, K, T, C] the selected visual token of every frame
    weights: torch.Tensor  # [B, K, T, Q] selection weights (exactly one-hot for straight-through)
    index: torch.Tensor  # [B, K, T] long: the most similar token of every frame
    similarity: torch.Tensor  # [B, K, T, Q] cosine similarities


def _check_grid(tokens: torch.Tensor, name: str = "tokens") -> None:
    if tokens.dim() != 4:
        raise ValueError(
            f"{name} must be a [B, T, Q, C] token grid, got shape {tuple(tokens.shape)}"
        )


def cosine_similarity_grid(queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every query with every token of every frame:
    queries [B, K, C] x tokens [B, T, Q, C] -> [B, K, T, Q] (zero for an all-zero vector)."""
    _check_grid(tokens)
    if queries.dim() != 3 or queries.shape[0] != tokens.shape[0]:
        raise ValueError(
            f"queries must be [B, K, C] with the batch of tokens {tuple(tokens.shape)}, "
            f"got shape {tuple(queries.shape)}"
        )
    if queries.shape[-1] != tokens.shape[-1]:
        raise ValueError(
            f"queries have {queries.shape[-1]} channels but tokens have {tokens.shape[-1]}"
        )
    q = F.normalize(queries, dim=-1, eps=1e-6)  # [B, K, C]
    v = F.normalize(tokens, dim=-1, eps=1e-6)  # [B, T, Q, C]
    return torch.einsum("bkc,btqc->bktq", q, v)  # [B, K, T, Q]


def selection_weights(similarity: torch.Tensor, mode: str, tau: float) -> torch.Tensor:
    """Per-frame selection weights over tokens (last axis) from similarities [..., Q]:
    a temperature softmax ("soft") or a straight-through one-hot ("straight_through")."""
    if mode not in SELECTION_MODES:
        raise ValueError(f"selection must be one of {SELECTION_MODES}, got {mode!r}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    soft = torch.softmax(similarity / tau, dim=-1)  # [..., Q]
    if mode == "soft":
        return soft
    hard = F.one_hot(similarity.argmax(-1), similarity.shape[-1]).to(soft.dtype)  # [..., Q]
    return hard + (soft - soft.detach())  # value: hard (exactly); gradient: that of soft


def select_trajectories(
    queries: torch.Tensor,
    tokens: torch.Tensor,
    mode: str = "straight_through",
    tau: float = 0.1,
) -> Trajectories:
    """For each query [B, K, C], the token of every frame of tokens [B, T, Q, C] most similar to
    it: trajectories [B, K, T, C] (see the module docstring for the trainable selection)."""
    sim = cosine_similarity_grid(queries, tokens)  # [B, K, T, Q]
    weights = selection_weights(sim, mode, tau)  # [B, K, T, Q]
    picked = torch.einsum("bktq,btqc->bktc", weights, tokens)  # [B, K, T, C]
    return Trajectories(tokens=picked, weights=weights, index=sim.argmax(-1), similarity=sim)


def scan_trajectories(
    trajectories: torch.Tensor, mask: torch.Tensor, layer: nn.Module
) -> torch.Tensor:
    """Run `layer` ([N, T, C] -> [N, T, C]) along time over the valid trajectories of
    [B, K, T, C] (mask [B, K] bool); padded ones come back as zeros."""
    if trajectories.dim() != 4 or mask.shape != trajectories.shape[:2]:
        raise ValueError(
            f"trajectories must be [B, K, T, C] and mask [B, K], got "
            f"{tuple(trajectories.shape)} and {tuple(mask.shape)}"
        )
    mask = mask.bool()
    out = trajectories.new_zeros(trajectories.shape)  # [B, K, T, C]
    if mask.any():
        out[mask] = layer(trajectories[mask])  # [N, T, C] with N valid trajectories
    return out


def scan_keyword_major(
    trajectories: torch.Tensor, mask: torch.Tensor, layer: nn.Module
) -> torch.Tensor:
    """Run `layer` ([B, L, C] -> [B, L, C]) once per clip over all its valid trajectories of
    [B, K, T, C] (mask [B, K] bool) laid end to end: sequence position j*T + t holds frame t of
    the j-th valid trajectory (valid ones keep their order). Padded trajectories go after the
    valid ones as zeros, so a causal layer gives the valid positions exactly what a scan of the
    valid trajectories alone gives; they come back as zeros. Returns [B, K, T, C]."""
    if trajectories.dim() != 4 or mask.shape != trajectories.shape[:2]:
        raise ValueError(
            f"trajectories must be [B, K, T, C] and mask [B, K], got "
            f"{tuple(trajectories.shape)} and {tuple(mask.shape)}"
        )
    b, k, t, c = trajectories.shape
    mask = mask.bool()
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # [B, K] valid first
    index = order[:, :, None, None].expand(b, k, t, c)  # [B, K, T, C]
    packed = trajectories.gather(1, index) * mask.gather(1, order)[:, :, None, None]
    scanned = layer(packed.reshape(b, k * t, c)).reshape(b, k, t, c)  # [B, K, T, C]
    out = torch.zeros_like(scanned).scatter(1, index, scanned)  # back to the input order
    return out * mask[:, :, None, None]


def mean_over_trajectories(trajectories: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, K, T, C] averaged over the valid trajectories (mask [B, K]) -> [B, T, C] (zeros for
    a clip with none)."""
    w = mask.to(trajectories.dtype)[:, :, None, None]  # [B, K, 1, 1]
    return (trajectories * w).sum(1) / w.sum(1).clamp(min=1.0)  # [B, T, C]


def per_token_sequences(tokens: torch.Tensor) -> torch.Tensor:
    """[B, T, Q, C] -> [B*Q, T, C]: one time series per (clip, token position)."""
    _check_grid(tokens)
    b, t, q, c = tokens.shape
    return tokens.permute(0, 2, 1, 3).reshape(b * q, t, c)  # [B*Q, T, C]


def from_per_token_sequences(sequences: torch.Tensor, batch: int) -> torch.Tensor:
    """Inverse of `per_token_sequences`: [B*Q, T, C] -> [B, T, Q, C]."""
    bq, t, c = sequences.shape
    if bq % batch:
        raise ValueError(f"{bq} sequences cannot be split into a batch of {batch}")
    return sequences.reshape(batch, bq // batch, t, c).permute(0, 2, 1, 3)  # [B, T, Q, C]


def time_major_sequence(tokens: torch.Tensor) -> torch.Tensor:
    """[B, T, Q, C] -> [B, T*Q, C]: the whole clip as one sequence, frame after frame (position
    t*Q + q holds token q of frame t)."""
    _check_grid(tokens)
    b, t, q, c = tokens.shape
    return tokens.reshape(b, t * q, c)  # [B, T*Q, C]


def from_time_major(sequence: torch.Tensor, frames: int) -> torch.Tensor:
    """Inverse of `time_major_sequence`: [B, T*Q, C] -> [B, T, Q, C]."""
    b, tq, c = sequence.shape
    if tq % frames:
        raise ValueError(f"a sequence of {tq} tokens cannot be split into {frames} frames")
    return sequence.reshape(b, frames, tq // frames, c)  # [B, T, Q, C]


def temporal_view(tokens: torch.Tensor) -> torch.Tensor:
    """Temporal context: [B, T, Q, C] pooled over space (the Q tokens of a frame) -> [B, T, C]."""
    _check_grid(tokens)
    return tokens.mean(dim=2)  # [B, T, C]


def spatial_view(tokens: torch.Tensor) -> torch.Tensor:
    """Spatial context: [B, T, Q, C] pooled over time (each token position) -> [B, Q, C]."""
    _check_grid(tokens)
    return tokens.mean(dim=1)  # [B, Q, C]


def flatten_trajectories(
    trajectories: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, K, T, C] and mask [B, K] -> tokens [B, K*T, C] (position k*T + t) and mask [B, K*T]."""
    b, k, t, c = trajectories.shape
    flat_mask = mask.bool()[:, :, None].expand(b, k, t).reshape(b, k * t)  # [B, K*T]
    return trajectories.reshape(b, k * t, c), flat_mask
