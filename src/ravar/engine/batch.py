"""Batches on their way into a model: moved to the device, multi-clip batches flattened."""

from __future__ import annotations

from typing import Any

import torch

from ravar.data.transforms import normalize_frames
from ravar.errors import RavarError

TARGET_KEYS = ("labels", "box")  # a batch with these makes the model compute its losses


PIXEL_KEYS = ("frames", "keyframe")


def uint8_pixels(device: torch.device) -> bool:
    """Whether loaders should hand `device` uint8 pixels for `to_device` to normalise there: on
    CUDA (a quarter of the bytes to copy, normalisation on the GPU); on a CPU the loader's
    workers normalise as well."""
    return device.type == "cuda"


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """`batch` with every tensor on `device` (other values unchanged). uint8 pixels (a dataset
    made with `uint8=True`: a quarter of the bytes to copy) are normalised there, as the
    batch's `pixel_normalization` says."""
    non_blocking = device.type == "cuda"
    out = {
        k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }
    names = out.pop("pixel_normalization", None)  # B strings, one per sample
    names = [names] if isinstance(names, str) else names
    for key in PIXEL_KEYS:
        value = out.get(key)
        if isinstance(value, torch.Tensor) and value.dtype == torch.uint8:
            if not names or len(set(names)) != 1:
                raise RavarError(
                    f"batch[{key!r}] holds uint8 pixels without one pixel_normalization "
                    f"(got {names!r})"
                )
            out[key] = normalize_frames(value, names[0])
    return out


def without_targets(batch: dict[str, Any], keep_box: bool = False) -> dict[str, Any]:
    """`batch` without the ground truth, for inference; `keep_box` keeps the true box for oracle
    models (which read it at test time; without the labels no loss is computed)."""
    drop = tuple(k for k in TARGET_KEYS if not (keep_box and k == "box"))
    return {k: v for k, v in batch.items() if k not in drop}


def flatten_clips(batch: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A multi-clip batch (frames `[B, K, T, 3, H, W]`, or cached visual features
    `[B, K, T, Q, C]`) as `B*K` single-clip samples (`[B*K, ...]`, every other entry repeated K
    times in place), and K. Single-clip batches come back unchanged with K = 1."""
    frames, feats = batch.get("frames"), batch.get("visual_features")
    if frames is not None and frames.dim() == 6:
        b, k = frames.shape[:2]
    elif feats is not None and feats.dim() == 5:
        b, k = feats.shape[:2]
    else:
        return batch, 1
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key in ("frames", "visual_features"):
            out[key] = value.flatten(0, 1)  # [B*K, ...]
        elif isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == b:
            out[key] = value.repeat_interleave(k, dim=0)  # [B*K, ...]
        elif isinstance(value, list) and len(value) == b:
            out[key] = [item for item in value for _ in range(k)]
        else:
            out[key] = value
    return out, k
