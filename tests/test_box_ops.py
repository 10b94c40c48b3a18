"""Box utilities against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from ravar.util.box_ops import (
    batched_nms,
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_iou_paired,
    box_problem,
    box_xyxy_to_cxcywh,
    denormalize_boxes,
    generalized_box_iou_paired,
    hflip_boxes,
    nms,
    normalize_boxes,
    valid_boxes_from_unbounded,
)

A = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
B = torch.tensor([[0.25, 0.0, 0.75, 0.5]])  # half overlap: inter 0.125, union 0.375


def test_iou_hand_values():
    assert box_iou_paired(A, A).item() == pytest.approx(1.0)
    assert box_iou_paired(A, B).item() == pytest.approx(1 / 3)
    far = torch.tensor([[0.6, 0.6, 0.9, 0.9]])
    assert box_iou_paired(A, far).item() == 0.0
    pair = box_iou(torch.cat([A, B]), torch.cat([A, B, far]))
    assert pair.shape == (2, 3)
    assert pair[0, 1].item() == pytest.approx(1 / 3) and pair[1, 1].item() == pytest.approx(1.0)
    empty = torch.zeros(1, 4)
    assert box_iou_paired(empty, empty).item() == 0.0  # no NaN for degenerate boxes


def test_giou_hand_values():
    # disjoint A and far: iou 0, hull [0,0,0.9,0.9] area 0.81, union 0.25 + 0.09 = 0.34
    far = torch.tensor([[0.6, 0.6, 0.9, 0.9]])
    expected = 0.0 - (0.81 - 0.34) / 0.81
    assert generalized_box_iou_paired(A, far).item() == pytest.approx(expected)
    assert generalized_box_iou_paired(A, B).item() == pytest.approx(1 / 3)  # hull == union


def test_conversions_round_trip_and_area():
    xyxy = torch.tensor([[0.1, 0.2, 0.5, 0.8]])
    cxcywh = box_xyxy_to_cxcywh(xyxy)
    assert torch.allclose(cxcywh, torch.tensor([[0.3, 0.5, 0.4, 0.6]]))
    assert torch.allclose(box_cxcywh_to_xyxy(cxcywh), xyxy)
    assert box_area(xyxy).item() == pytest.approx(0.24)
    px = denormalize_boxes(xyxy, 200, 100)
    assert torch.allclose(px, torch.tensor([[20.0, 20.0, 100.0, 80.0]]))
    assert torch.allclose(normalize_boxes(px, 200, 100), xyxy)


def test_hflip_is_an_involution_and_keeps_order():
    box = torch.tensor([0.1, 0.2, 0.4, 0.9])
    flipped = hflip_boxes(box)
    assert torch.allclose(flipped, torch.tensor([0.6, 0.2, 0.9, 0.9]))
    assert torch.allclose(hflip_boxes(flipped), box)


def test_valid_boxes_from_any_input():
    raw = torch.randn(1000, 4) * 20  # extreme values included
    boxes = valid_boxes_from_unbounded(raw)
    assert bool((boxes >= 0).all() and (boxes <= 1).all())
    assert bool((boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all())
    x = raw[:4].clone().requires_grad_()
    valid_boxes_from_unbounded(x).sum().backward()
    assert bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize(
    "box,needle",
    [
        ([0.1, 0.1, 0.5], "4 numbers"),
        ([0.1, 0.1, 1.5, 0.5], "[0, 1]"),
        ([0.5, 0.1, 0.4, 0.5], "x1"),
        ([0.1, 0.5, 0.4, 0.5], "y1"),
        ([0.1, float("nan"), 0.4, 0.5], "non-finite"),
        ([0.1, True, 0.4, 0.5], "numbers"),
        ("0 0 1 1", "4 numbers"),
    ],
)
def test_box_problem_names_the_issue(box, needle):
    assert needle in box_problem(box)


def test_box_problem_accepts_valid():
    assert box_problem([0, 0, 1, 1]) is None and box_problem((0.2, 0.3, 0.4, 0.5)) is None


def _sequential_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> list[int]:
    """The greedy loop, one box at a time (the implementation `nms` replaced)."""
    order = torch.argsort(scores, descending=True, stable=True)
    iou = box_iou(boxes, boxes)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep: list[int] = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return keep


def _random_boxes(gen: torch.Generator, n: int) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * 0.8
    wh = torch.rand(n, 2, generator=gen) * 0.3
    boxes = torch.cat([xy, xy + wh], dim=1)  # [N, 4]
    boxes[: n // 10] = boxes[n // 10 : 2 * (n // 10)]  # exact duplicates
    boxes[-2, 2:] = boxes[-2, :2]  # a degenerate (empty) box
    return boxes


@pytest.mark.parametrize("seed", range(6))
def test_nms_equals_the_sequential_greedy_loop_on_random_boxes_with_ties(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 60 + 30 * seed
    boxes = _random_boxes(gen, n)
    scores = torch.randint(0, 8, (n,), generator=gen).float() / 8  # many tied scores
    for thr in (0.0, 0.1, 0.3, 0.5, 0.7, 0.95):
        assert nms(boxes, scores, thr).tolist() == _sequential_nms(boxes, scores, thr)


def test_batched_nms_equals_the_loop_run_per_group():
    gen = torch.Generator().manual_seed(7)
    n = 150
    boxes = _random_boxes(gen, n)
    scores = torch.randint(0, 10, (n,), generator=gen).float()
    groups = torch.randint(0, 4, (n,), generator=gen)
    for thr in (0.2, 0.5):
        kept: list[int] = []
        for g in range(4):
            idx = (groups == g).nonzero().flatten()
            kept += idx[_sequential_nms(boxes[idx], scores[idx], thr)].tolist()
        # highest score first, ties by index: the order of a stable sort over all boxes
        want = sorted(kept, key=lambda i: (-float(scores[i]), i))
        assert batched_nms(boxes, scores, groups, thr).tolist() == want
    # boxes of different groups never suppress each other
    same = torch.tensor([[0.1, 0.1, 0.5, 0.5]] * 3)
    assert batched_nms(
        same, torch.tensor([3.0, 2.0, 1.0]), torch.tensor([0, 1, 0]), 0.5
    ).tolist() == [0, 1]


def test_nms_on_a_chain_needs_many_passes_and_stays_exact():
    # each box overlaps only its neighbours, scores fall along the chain: greedy keeps every
    # other box, the longest case for the matrix passes
    x = torch.arange(40, dtype=torch.float32) * 0.02
    boxes = torch.stack([x, torch.zeros(40), x + 0.03, torch.ones(40)], dim=1)  # IoU(i, i+1) = 0.2
    scores = torch.linspace(1.0, 0.1, 40)
    assert nms(boxes, scores, 0.1).tolist() == list(range(0, 40, 2))
    assert nms(boxes, scores, 0.1).tolist() == _sequential_nms(boxes, scores, 0.1)
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []
