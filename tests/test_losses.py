"""Training losses against direct computations."""

from __future__ import annotations

import math

import pytest
import torch

from ravar.models.losses import LossConfig, compute_losses, focal_bce, ranking_loss


def test_default_losses_are_the_papers():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.6]])
    true = torch.tensor([[0.0, 0.1, 0.5, 0.6], [0.2, 0.2, 0.6, 0.6]])
    out = compute_losses(logits, boxes, labels, true, LossConfig())

    def bce(z, y):
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected_bce = (bce(0, 1) + bce(2, 0) + bce(-1, 0) + bce(1, 1)) / 4
    expected_mse = 5.0 * ((0.1**2 + 0.1**2) + 0.0) / 2  # summed over 4 numbers, mean over batch
    assert out["action_bce"].item() == pytest.approx(expected_bce, rel=1e-5)
    assert out["box_mse"].item() == pytest.approx(expected_mse, rel=1e-5)
    assert out["loss"].item() == pytest.approx(expected_bce + expected_mse, rel=1e-5)
    assert set(out) == {"action_bce", "box_mse", "loss"}


def test_focal_reduces_to_bce_at_gamma_zero_and_downweights_easy():
    logits = torch.randn(4, 80)
    targets = (torch.rand(4, 80) > 0.9).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert focal_bce(logits, targets, 0.0).item() == pytest.approx(bce.item(), rel=1e-6)
    assert focal_bce(logits, targets, 2.0).item() < bce.item()


def test_ranking_loss_hand_case():
    logits = torch.tensor([[3.0, 0.5, 2.0, 1.0]])
    labels = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    # hardest negative 2.0; positives 3.0 -> max(0, 1 - 1) = 0, 0.5 -> max(0, 1 + 1.5) = 2.5
    assert ranking_loss(logits, labels, margin=1.0).item() == pytest.approx(1.25)


def test_optional_box_terms_and_smoothing():
    cfg = LossConfig(
        action="focal",
        label_smoothing=0.1,
        ranking_weight=0.5,
        box_mse_weight=0,
        box_l1_weight=1,
        box_iou_weight=2,
        box_giou_weight=1,
    )
    b = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    out = compute_losses(torch.zeros(1, 80), b, torch.zeros(1, 80), b, cfg)
    assert set(out) == {"action_focal", "action_rank", "box_l1", "box_iou", "box_giou", "loss"}
    assert out["box_iou"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["box_giou"].item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="action"):
        LossConfig(action="softmax")
