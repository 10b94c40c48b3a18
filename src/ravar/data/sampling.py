"""Clip sampling: which frames of a video form the clip around a keyframe.

The default clip is T frames spread evenly over +-window/2 seconds around the keyframe, with the
keyframe itself at slot T // 2. Training may jitter every other slot by less than half a step
(order and distinctness are kept); evaluation is deterministic and may take K clips at K temporal
phases, whose predictions are averaged.
"""

from __future__ import annotations

import numpy as np


def clip_offsets(num_frames: int, window_frames: float, stride: float | None = None) -> np.ndarray:
    """Integer frame offsets `[T]` relative to the keyframe, increasing, 0 at slot T // 2.

    `stride` (frames between slots) defaults to window_frames / num_frames, and is at least 1 so
    the frames are distinct.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    step = max(1.0, float(stride) if stride is not None else float(window_frames) / num_frames)
    slots = np.arange(num_frames) - num_frames // 2  # [T], 0 at the keyframe slot
    return np.round(slots * step).astype(np.int64)


def step_of(offsets: np.ndarray) -> int:
    """Smallest gap between consecutive offsets (the clip's stride), 1 for a single frame."""
    return int(np.diff(offsets).min()) if len(offsets) > 1 else 1


def jitter_offsets(offsets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move each non-keyframe slot by a random amount below half the stride (keeps order)."""
    half = (step_of(offsets) - 1) // 2
    if half == 0:
        return offsets.copy()
    delta = rng.integers(-half, half + 1, size=len(offsets))  # [T]
    delta[len(offsets) // 2] = 0  # the keyframe stays exactly where it is
    return offsets + delta


def multi_clip_offsets(offsets: np.ndarray, num_clips: int) -> np.ndarray:
    """`[K, T]` offsets: the clip shifted to K evenly spaced phases within one stride."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if num_clips == 1:
        return offsets[None].copy()
    step = step_of(offsets)
    phases = np.round((np.arange(num_clips) + 0.5) / num_clips * step - step / 2).astype(np.int64)
    return offsets[None, :] + phases[:, None]  # [K, T]


def clamp_indices(indices: np.ndarray, first: int, num_frames: int | None) -> np.ndarray:
    """Keep frame numbers at or after the first frame, and inside
    [first, first + num_frames - 1] when the length is known (windows at a video's ends)."""
    if num_frames is None:
        return np.maximum(indices, first)
    return np.clip(indices, first, first + num_frames - 1)
