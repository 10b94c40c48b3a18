"""`build_sample`: the one place a model input is made from decoded frames, a keyframe, the
sentence, detections and (for training and evaluation) the target box and actions. The Dataset
and video inference both call it, so a model reads the same sample whichever way it came."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ravar.data.clip_config import ClipConfig
from ravar.data.format import Detection
from ravar.data.transforms import frames_to_tensor, hflip_clip
from ravar.errors import RavarError
from ravar.labels import multi_hot


def key_slot(clip: np.ndarray, key_frame: int) -> int:
    """The first slot of `clip` ([T] frame numbers) that holds `key_frame`, -1 if none does."""
    slots = np.flatnonzero(np.asarray(clip) == key_frame)
    return int(slots[0]) if len(slots) else -1


def pad_detections(
    detections: Sequence[Detection], max_detections: int
) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
    """Detections padded to D = `max_detections`, highest scores first: boxes [D, 4],
    scores [D], categories (D strings, "" for padding), mask [D]."""
    d = max_detections
    kept = sorted(detections, key=lambda det: -det.score)[:d]
    boxes = torch.zeros(d, 4)
    scores = torch.zeros(d)
    mask = torch.zeros(d, dtype=torch.bool)
    categories = [""] * d
    for i, det in enumerate(kept):
        boxes[i] = torch.tensor(det.box)
        scores[i] = det.score
        mask[i] = True
        categories[i] = det.category
    return boxes, scores, categories, mask


def clip_pixels(
    frames: np.ndarray,
    frame_numbers: Sequence[int],
    clips: np.ndarray,
    key_frame: int,
    config: ClipConfig,
    uint8: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's pixels of `clips` ([K, T] frame numbers) and of the keyframe, taken from
    decoded uint8 RGB `frames` [F, H, W, 3] whose rows are frame numbers `frame_numbers`:
    (`[K, T, 3, h, w]`, `[3, h, w]`), normalised floats or, with `uint8`, resized uint8."""
    rows = {int(f): i for i, f in enumerate(frame_numbers)}
    if len(rows) != len(frames):
        raise RavarError(
            f"build_sample: {len(frames)} decoded frames, {len(frame_numbers)} frame numbers"
        )
    missing = sorted(({int(f) for f in clips.ravel()} | {int(key_frame)}) - rows.keys())
    if missing:
        raise RavarError(f"build_sample: frames {missing} of the clip were not decoded")
    size, norm = config.size, config.normalization
    pixels = frames_to_tensor(frames[[rows[int(f)] for f in clips.ravel()]], size, norm, uint8)
    slot = key_slot(clips[0], key_frame)
    if slot >= 0:  # the keyframe is a frame of the (first) clip
        keyframe = pixels[slot]  # [3, h, w]
    else:
        keyframe = frames_to_tensor(frames[[rows[key_frame]]], size, norm, uint8)[0]
    return pixels.view(*clips.shape, *pixels.shape[1:]), keyframe  # [K, T, 3, h, w]


def build_sample(
    frames: np.ndarray | None,
    frame_numbers: Sequence[int] | None,
    clips: np.ndarray,
    key_frame: int,
    text: str,
    detections: Sequence[Detection],
    config: ClipConfig,
    *,
    box: Sequence[float] | None = None,
    actions: Sequence[int] | None = None,
    flip: bool = False,
    uint8: bool = False,
    image_size: tuple[int, int] | None = None,
    visual_features: torch.Tensor | None = None,
) -> dict[str, Any]:
    """One model input (unbatched; `ravar.data.dataset.collate` batches them).

    `frames` [F, H, W, 3] uint8 RGB are decoded frames with frame numbers `frame_numbers`;
    `clips` [K, T] (or [T]) the frame numbers of the clip(s), `key_frame` the keyframe's.
    Pixels are resized and normalised as `config` says (left uint8 with `uint8`, for
    `ravar.engine.batch.to_device` to normalise); `detections` (the keyframe's) are padded to
    `config.max_detections`, highest scores first. `box` (normalised xyxy) and `actions` (AVA
    ids) are the targets, given for training and evaluation. `flip` mirrors the frames, the
    boxes and the sentence's left/right words together (only where there are frames).
    `image_size` (width, height) defaults to the decoded frames'. `visual_features`
    [K, T, Q, C] are cached features, given with or instead of frames (`frames=None`).

    Keys: frames [T, 3, h, w] (or [K, T, ...] for K > 1), keyframe [3, h, w],
    pixel_normalization (uint8 only), visual_features [T, Q, C] (or [K, ...]), key_slot,
    frame_indices [T], text, box [4] and labels [80] (with targets), det_boxes [D, 4],
    det_scores [D], det_categories (D strings, "" for padding), det_mask [D], image_size."""
    clips = np.atleast_2d(np.asarray(clips))  # [K, T]
    det_boxes, det_scores, det_categories, det_mask = pad_detections(
        detections, config.max_detections
    )
    box_t = torch.tensor(box, dtype=torch.float32) if box is not None else None  # [4]
    sample: dict[str, Any] = {}
    if frames is not None:
        if frame_numbers is None:
            raise RavarError("build_sample: frames given without their frame numbers")
        pixels, keyframe = clip_pixels(frames, frame_numbers, clips, key_frame, config, uint8)
        if flip:
            pixels, box_t, det_boxes, text = hflip_clip(pixels, box_t, det_boxes, text)
            keyframe = keyframe.flip(-1)
            det_boxes = torch.where(det_mask[:, None], det_boxes, torch.zeros_like(det_boxes))
        sample["frames"] = pixels[0] if len(pixels) == 1 else pixels  # [T, 3, h, w] or [K, ...]
        sample["keyframe"] = keyframe  # [3, h, w]
        if uint8:  # how `to_device` turns the uint8 pixels into the model's input
            sample["pixel_normalization"] = config.normalization
        if image_size is None:
            image_size = (frames.shape[2], frames.shape[1])
    if image_size is None:
        raise RavarError("build_sample: no frames and no image_size given")
    if visual_features is not None:  # [K, T, Q, C]
        sample["visual_features"] = (
            visual_features[0] if len(visual_features) == 1 else visual_features
        )  # [T, Q, C] or [K, ...]
    sample |= {
        "key_slot": key_slot(clips[0], key_frame),
        "frame_indices": torch.from_numpy(clips[0].copy()),  # [T] frame numbers
        "text": text,
    }
    if box_t is not None:
        sample["box"] = box_t  # [4] normalised xyxy
    if actions is not None:
        sample["labels"] = multi_hot(actions)  # [80]
    return sample | {
        "det_boxes": det_boxes,  # [D, 4]
        "det_scores": det_scores,  # [D]
        "det_categories": det_categories,  # D strings, "" for padding
        "det_mask": det_mask,  # [D] bool
        "image_size": (int(image_size[0]), int(image_size[1])),
    }
