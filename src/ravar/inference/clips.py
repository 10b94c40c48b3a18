"""Model inputs for video inference, built exactly as `RAVARDataset` builds evaluation samples:
the same frame offsets, clamping at the video's ends, pixel transform and detection padding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ravar.data.dataset import ClipConfig, pad_detections
from ravar.data.format import Detection
from ravar.data.sampling import clip_offsets, fit_offsets
from ravar.data.transforms import frames_to_tensor


def clip_plan(config: ClipConfig, fps: float, key: int, num_frames: int) -> np.ndarray:
    """Frame numbers `[T]` of the clip around keyframe `key` (the evaluation clip of the
    dataset: offsets over `window_seconds * fps`, fitted into the video's frames as the dataset
    fits them into a window that holds every frame)."""
    offsets = clip_offsets(config.num_frames, config.window_seconds * fps, config.stride)  # [T]
    return key + fit_offsets(offsets, -key, num_frames - 1 - key)  # [T]


def keyframe_inputs(
    raw: np.ndarray,
    rows: dict[int, int],
    clip: np.ndarray,
    key: int,
    detections: Sequence[Detection],
    config: ClipConfig,
    uint8: bool = False,
) -> dict[str, Any]:
    """The text-independent part of one sample: clip, keyframe and detections of keyframe `key`.

    `raw` [F, H, W, 3] holds decoded frames; `rows` maps a frame number to its row in `raw`.
    With `uint8`, pixels stay resized uint8 for `to_device` to normalise (as the dataset's).
    """
    size, norm = config.size, config.normalization
    pixels = frames_to_tensor(raw[[rows[int(f)] for f in clip]], size, norm, uint8)  # [T, 3, h, w]
    slots = np.flatnonzero(clip == key)
    if len(slots):  # the keyframe is a frame of the clip
        keyframe = pixels[int(slots[0])]  # [3, h, w]
    else:
        keyframe = frames_to_tensor(raw[[rows[key]]], size, norm, uint8)[0]
    det_boxes, det_scores, det_categories, det_mask = pad_detections(
        detections, config.max_detections
    )
    height, width = raw.shape[1:3]
    extra = {"pixel_normalization": config.normalization} if uint8 else {}
    return extra | {
        "frames": pixels,  # [T, 3, h, w]
        "keyframe": keyframe,  # [3, h, w]
        "key_slot": int(slots[0]) if len(slots) else -1,
        "frame_indices": torch.from_numpy(clip.copy()),  # [T]
        "det_boxes": det_boxes,  # [D, 4]
        "det_scores": det_scores,  # [D]
        "det_categories": det_categories,  # D strings
        "det_mask": det_mask,  # [D]
        "image_size": (int(width), int(height)),
    }
