"""Clip sampling: which frames of a video form the clip around a keyframe.

The default clip is T frames spread evenly over +-window/2 seconds around the keyframe, with the
keyframe itself at slot T // 2. Training may jitter every other slot by less than half a step
(order and distinctness are kept); evaluation is deterministic and may take K clips at K temporal
phases, whose predictions are averaged.

Every clip then stays inside the frames that exist (`fit_offsets`): the dataset's window around
the keyframe (dataset.json `frame_source.keyframe_window`) and the video's ends. A slot outside is
clamped to the nearest frame inside, not reflected, so an in-window clip is left exactly as it
was; the keyframe slot stays on the keyframe, and the slots stay distinct (in time order)
wherever the window holds enough frames for them.
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


_UNBOUNDED = np.iinfo(np.int64).max // 4  # the upper end of a window without one


def fit_offsets(offsets: np.ndarray, lo: int, hi: int | None) -> np.ndarray:
    """`offsets` (`[T]` or `[K, T]`, each clip increasing) moved into [lo, hi] (hi None: no
    upper end), clip by clip.

    A clip holding offset 0 keeps it (the keyframe slot stays on the keyframe) and fits the slots
    before it into [lo, -1] and those after into [1, hi]; other clips fit into [lo, hi]. Fitting
    clamps each slot, and keeps the slots distinct where the range has room for them: slot i of
    m is held within [a + i, b - (m - 1 - i)] of the range [a, b]. A clip already inside (the
    usual case) does not move.
    """
    top = _UNBOUNDED if hi is None else int(hi)
    out = np.array(offsets, dtype=np.int64, copy=True)
    rows = out.reshape(-1, out.shape[-1])  # [K, T] view
    for r in range(len(rows)):
        rows[r] = _fit_clip(rows[r], int(lo), top)
    return out


def _fit_clip(y: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """One increasing clip `[T]` fitted into [lo, hi], offset 0 kept when present and allowed."""
    zero = np.flatnonzero(y == 0)
    if len(zero) == 0 or not lo <= 0 <= hi:
        return _spread(y, lo, hi)
    k = int(zero[0])
    before = np.maximum(_spread(y[:k], lo, -1), lo)  # lo == 0: the keyframe is the first frame
    after = np.minimum(_spread(y[k + 1 :], 1, hi), hi)  # hi == 0: ... the last frame
    return np.concatenate([before, y[k : k + 1], after])


def _spread(y: np.ndarray, a: int, b: int) -> np.ndarray:
    """Increasing `y` `[m]` clamped into [a, b]: slot i held within [a + i, b - (m - 1 - i)],
    so the slots stay distinct where [a, b] holds m frames (otherwise some slots share a
    frame)."""
    i = np.arange(len(y))
    spread = np.minimum(np.maximum(y, a + i), b - (len(y) - 1 - i))
    return np.minimum(np.maximum(spread, a), b)  # a > b (no frame on this side): b
