"""Random model-ready batches, for smoke tests and benchmarks (no dataset needed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ravar.util.box_ops import valid_boxes_from_unbounded

WORDS = ("man", "woman", "child", "red", "blue", "green", "hat", "shirt", "left", "right", "tall")
CATEGORIES = ("person", "sports ball", "cup", "chair")


def dummy_batch(
    batch_size: int = 2,
    num_frames: int = 4,
    size: int | tuple[int, int] = 32,
    num_detections: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """A batch shaped like `ravar.data.dataset.collate` output, with random content: frames
    `[B, T, 3, H, W]`, sentences, targets and `num_detections` padded detections (the last one
    padding)."""
    h, w = (size, size) if isinstance(size, int) else size
    b, t, d = batch_size, num_frames, num_detections
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    texts = [" ".join(["the", *rng.choice(WORDS, size=4)]) for _ in range(b)]
    det_mask = torch.zeros(b, d, dtype=torch.bool)
    det_mask[:, : max(1, d - 1)] = True
    det_boxes = valid_boxes_from_unbounded(torch.randn(b, d, 4, generator=g))
    return {
        "frames": torch.randn(b, t, 3, h, w, generator=g),
        "keyframe": torch.randn(b, 3, h, w, generator=g),
        "text": texts,
        "box": valid_boxes_from_unbounded(torch.randn(b, 4, generator=g)),
        "labels": (torch.rand(b, 80, generator=g) > 0.9).float(),
        "det_boxes": det_boxes * det_mask[..., None],
        "det_scores": torch.rand(b, d, generator=g) * det_mask,
        "det_mask": det_mask,
        "det_categories": [
            [str(rng.choice(CATEGORIES)) if det_mask[i, j] else "" for j in range(d)]
            for i in range(b)
        ],
    }
