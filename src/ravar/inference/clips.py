"""The clip around a keyframe of a video, sampled as `RAVARDataset` samples evaluation clips: the
same frame offsets and clamping at the video's ends (the sample itself is made by
`ravar.data.sample.build_sample`, as the dataset's)."""

from __future__ import annotations

import numpy as np

from ravar.data.clip_config import ClipConfig
from ravar.data.sampling import clip_offsets, fit_offsets


def clip_plan(config: ClipConfig, fps: float, key: int, num_frames: int) -> np.ndarray:
    """Frame numbers `[T]` of the clip around keyframe `key` (the evaluation clip of the
    dataset: offsets over `window_seconds * fps`, fitted into the video's frames as the dataset
    fits them into a window that holds every frame)."""
    offsets = clip_offsets(config.num_frames, config.window_seconds * fps, config.stride)  # [T]
    return key + fit_offsets(offsets, -key, num_frames - 1 - key)  # [T]
