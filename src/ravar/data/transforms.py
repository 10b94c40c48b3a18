"""Pixel and text transforms that keep frames, boxes and the referring sentence consistent."""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F

from ravar.util.box_ops import hflip_boxes

# (mean, std) per channel, RGB, for images scaled to [0, 1]
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ViT, DETR, ResNet
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "blip2": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "kinetics": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),  # I3D / X3D / SlowFast
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def normalization_stats(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) tensors `[3, 1, 1]` of a named normalisation."""
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {name!r}; choose from {sorted(NORMALIZATIONS)}")
    mean, std = NORMALIZATIONS[name]
    return torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 RGB `[T, H, W, 3]` -> uint8 `[T, 3, h, w]` (channels-last in memory), the whole
    frame resized (so normalised boxes stay valid). The resize (bilinear, antialiased) runs on
    the uint8 pixels, ten times faster than on floats, within 1/255 of it."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # [T, 3, H, W] uint8
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x


def normalize_frames(x: torch.Tensor, normalization: str) -> torch.Tensor:
    """uint8 RGB `[..., 3, h, w]` -> float32 `(x / 255 - mean) / std` on `x`'s device."""
    mean, std = normalization_stats(normalization)
    mean, std = mean.to(x.device), std.to(x.device)
    return x.float().mul_(1.0 / (255.0 * std)).sub_(mean / std)


def frames_to_tensor(
    frames: np.ndarray, size: tuple[int, int], normalization: str, uint8: bool = False
) -> torch.Tensor:
    """uint8 RGB `[T, H, W, 3]` -> the model's `[T, 3, h, w]` pixels: normalised floats
    (`resize_frames`, then `normalize_frames`), or with `uint8` the resized uint8 pixels (for
    `ravar.engine.batch.to_device` to normalise on the device)."""
    if uint8:
        return resize_frames(frames, size)
    x = resize_frames(frames, size).contiguous()  # channels first while uint8: floats vectorise
    return normalize_frames(x, normalization)


def denormalize(x: torch.Tensor, normalization: str) -> torch.Tensor:
    """Undo `frames_to_tensor`'s normalisation: `[..., 3, h, w]` back to [0, 1] RGB."""
    mean, std = normalization_stats(normalization)
    return (x * std + mean).clamp(0, 1)


_LR_WORDS = {
    "left": "right",
    "right": "left",
    "leftmost": "rightmost",
    "rightmost": "leftmost",
    "lefthand": "righthand",
    "righthand": "lefthand",
}
_LR_PATTERN = re.compile(r"\b(" + "|".join(_LR_WORDS) + r")\b", re.IGNORECASE)


def _match_case(word: str, like: str) -> str:
    if like.isupper():
        return word.upper()
    if like[0].isupper():
        return word.capitalize()
    return word


def swap_left_right(text: str) -> str:
    """Mirror a sentence: "left" <-> "right" (also leftmost/rightmost), keeping capitalisation."""
    return _LR_PATTERN.sub(lambda m: _match_case(_LR_WORDS[m.group(0).lower()], m.group(0)), text)


def hflip_clip(
    frames: torch.Tensor, box: torch.Tensor | None, det_boxes: torch.Tensor, text: str
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, str]:
    """Mirror a whole clip left-right: every frame `[..., W]`, the target box `[4]` (None when
    there is no target), detection boxes `[D, 4]` and the left/right words of the sentence,
    all together."""
    flipped_box = hflip_boxes(box) if box is not None else None
    return frames.flip(-1), flipped_box, hflip_boxes(det_boxes), swap_left_right(text)
