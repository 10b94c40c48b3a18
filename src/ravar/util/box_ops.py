"""Box utilities, the one place for them. Boxes are xyxy unless a name says otherwise;
RAVAR boxes are normalised to [0, 1] by the image width and height.

Why not `torchvision.ops` (box_iou, generalized_box_iou, nms, batched_nms, roi_align): no
torchvision wheel on PyPI imports beside the CPU build of torch this project pins (2.13.0).
torchvision 0.29 requires torch >= 2.14, and 0.28.0, the release built for torch 2.13.0, is a
CUDA build whose compiled ops link libtorch_cuda.so / libc10_cuda.so, which the CPU torch does not
ship, so `import torchvision` fails with "operator torchvision::nms does not exist". The ops here
are a few tensor lines each; `nms` is vectorised (no Python loop over boxes) and is tested equal
to the sequential greedy algorithm."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x1, y1, x2, y2)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x1, y1, x2, y2) -> [..., 4] (cx, cy, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def box_features(boxes: torch.Tensor) -> torch.Tensor:
    """xyxy `boxes` [..., 4] -> [..., 8]: x1, y1, x2, y2, cx, cy, w, h (what a model reads of
    where a box is)."""
    return torch.cat([boxes, box_xyxy_to_cxcywh(boxes)], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] -> [...]: area, zero for degenerate boxes."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU: [N, 4] x [M, 4] -> [N, M]. Two empty boxes have IoU 0."""
    area1, area2 = box_area(boxes1), box_area(boxes2)  # [N], [M]
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # [N, M, 2]
    inter = (rb - lt).clamp(min=0).prod(-1)  # [N, M]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _paired_inter_union(
    boxes1: torch.Tensor, boxes2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersection and union areas of matching rows: [N, 4] x [N, 4] -> ([N], [N])."""
    if boxes1.shape != boxes2.shape:
        raise ValueError(
            f"paired IoU needs equal shapes, got {list(boxes1.shape)} and {list(boxes2.shape)}"
        )
    lt = torch.max(boxes1[..., :2], boxes2[..., :2])
    rb = torch.min(boxes1[..., 2:], boxes2[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(boxes1) + box_area(boxes2) - inter
    return inter, union


def box_iou_paired(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of matching rows: [N, 4] x [N, 4] -> [N]. Two empty boxes have IoU 0."""
    inter, union = _paired_inter_union(boxes1, boxes2)
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def generalized_box_iou_paired(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Generalised IoU (Rezatofighi et al. 2019) of matching rows: [N, 4] x [N, 4] -> [N]."""
    inter, union = _paired_inter_union(boxes1, boxes2)  # [N], [N]
    iou = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
    lt = torch.min(boxes1[..., :2], boxes2[..., :2])
    rb = torch.max(boxes1[..., 2:], boxes2[..., 2:])
    hull = (rb - lt).clamp(min=0).prod(-1)  # [N] area of the smallest enclosing box
    return iou - (hull - union) / hull.clamp(min=1e-12)


def _greedy_keep(suppresses: torch.Tensor) -> torch.Tensor:
    """Which boxes greedy NMS keeps, from `suppresses` [N, N] bool in score order (row i
    suppresses column j: i ranks above j and they overlap too much): `[N]` bool.

    A box is kept when no kept box above it suppresses it. That rule refers only to boxes above,
    so its solution is unique, and iterating it from "all kept" reaches it: after k passes every
    box with a chain of at most k suppressors above it is final (Cluster-NMS, Zheng et al. 2021).
    Each pass is one matrix product; a pass that changes nothing is the greedy answer. The number
    of passes is the longest such chain, a few for real detections (N at worst)."""
    weights = suppresses.to(torch.float32)  # [N, N]
    keep = torch.ones(suppresses.shape[0], dtype=torch.bool, device=suppresses.device)
    while True:
        hits = keep.to(torch.float32) @ weights  # [N]: kept boxes above that suppress each box
        new_keep = hits == 0
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Greedy non-maximum suppression within each group (e.g. category): indices `[K]` of the
    kept boxes `[N, 4]`, highest score first (ties: lower index first); a box is dropped when its
    IoU with a kept, higher-ranked box of the same `groups` `[N]` value exceeds `iou_threshold`."""
    order = torch.argsort(scores, descending=True, stable=True)  # [N]
    sorted_boxes, sorted_groups = boxes[order], groups[order]  # [N, 4], [N]
    overlap = box_iou(sorted_boxes, sorted_boxes) > iou_threshold  # [N, N]
    same_group = sorted_groups[:, None] == sorted_groups[None, :]  # [N, N]
    suppresses = (overlap & same_group).triu(diagonal=1)  # only boxes ranked above suppress
    return order[_greedy_keep(suppresses)]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices `[K]` of the kept boxes `[N, 4]`, highest score
    first (ties: lower index first); a box is dropped when its IoU with a kept, higher-scoring
    box exceeds `iou_threshold`."""
    groups = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)  # [N] one group
    return batched_nms(boxes, scores, groups, iou_threshold)


def hflip_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Mirror normalised xyxy boxes left-right: x -> 1 - x (keeps x1 < x2)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([1.0 - x2, y1, 1.0 - x1, y2], dim=-1)


def normalize_boxes(boxes: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """Pixel xyxy -> normalised xyxy."""
    scale = boxes.new_tensor([width, height, width, height])
    return boxes / scale


def denormalize_boxes(boxes: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """Normalised xyxy -> pixel xyxy."""
    scale = boxes.new_tensor([width, height, width, height])
    return boxes * scale


def valid_boxes_from_unbounded(raw: torch.Tensor, min_size: float = 1e-3) -> torch.Tensor:
    """Map any real [..., 4] to valid normalised xyxy boxes: sigmoid (cx, cy, w, h), then
    clipped to the image so that 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1."""
    c = torch.sigmoid(raw[..., :2])  # centre in (0, 1)
    wh = torch.sigmoid(raw[..., 2:]).clamp(min=min_size)  # size in (0, 1)
    lo = (c - wh / 2).clamp(0.0, 1.0 - min_size)
    hi = torch.maximum((c + wh / 2).clamp(max=1.0), lo + min_size)
    return torch.stack([lo[..., 0], lo[..., 1], hi[..., 0], hi[..., 1]], dim=-1)


def box_problem(box: Sequence[float]) -> str | None:
    """Why `box` is not a valid normalised xyxy box, or None if it is."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return f"expected 4 numbers [x1, y1, x2, y2], got {box!r}"
    for v in box:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"expected numbers, got {box!r}"
        if not math.isfinite(v):
            return f"non-finite value in {box!r}"
    x1, y1, x2, y2 = box
    if min(box) < 0.0 or max(box) > 1.0:
        return f"values must lie in [0, 1] (normalised xyxy), got {list(box)}"
    if not x1 < x2:
        return f"x1 ({x1}) must be < x2 ({x2})"
    if not y1 < y2:
        return f"y1 ({y1}) must be < y2 ({y2})"
    return None
