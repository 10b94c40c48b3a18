"""Box utilities against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from ravar.util.box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_iou_paired,
    box_problem,
    box_xyxy_to_cxcywh,
    denormalize_boxes,
    generalized_box_iou_paired,
    hflip_boxes,
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
