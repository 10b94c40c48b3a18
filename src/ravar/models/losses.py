"""Training losses shared by every model: multi-label action losses and box losses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ravar.util.box_ops import box_iou_paired, generalized_box_iou_paired


@dataclass
class LossConfig:
    """Which losses, and their weights. Defaults follow the RefAtomNet paper: BCE on actions and
    MSE on the box with weight 5 (the authors' code put the 5 on the BCE instead)."""

    action: str = "bce"  # "bce" or "focal"
    action_weight: float = 1.0
    label_smoothing: float = 0.0  # targets become y * (1 - s) + s / 2
    focal_gamma: float = 2.0
    ranking_weight: float = 0.0  # positives above the hardest negatives (RefAtomNet++)
    ranking_margin: float = 1.0
    box_mse_weight: float = 5.0
    box_l1_weight: float = 0.0
    box_iou_weight: float = 0.0  # 1 - IoU
    box_giou_weight: float = 0.0  # 1 - generalised IoU

    def __post_init__(self) -> None:
        if self.action not in ("bce", "focal"):
            raise ValueError(f"LossConfig.action must be 'bce' or 'focal', got {self.action!r}")


def focal_bce(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """Mean focal binary cross-entropy (Lin et al. 2017) over `[B, C]`."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # [B, C]
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)  # probability of the true label
    return ((1 - p_t) ** gamma * bce).mean()


def ranking_loss(logits: torch.Tensor, targets: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge loss pushing every positive class above the hardest negative by `margin`."""
    neg_inf = torch.finfo(logits.dtype).min
    hardest_neg = logits.masked_fill(targets > 0.5, neg_inf).amax(dim=1, keepdim=True)  # [B, 1]
    hinge = F.relu(margin - (logits - hardest_neg))  # [B, C]
    pos = (targets > 0.5).float()
    return (hinge * pos).sum() / pos.sum().clamp(min=1.0)


def compute_losses(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    true_boxes: torch.Tensor,
    cfg: LossConfig,
) -> dict[str, torch.Tensor]:
    """Named weighted losses for `[B, C]` logits / labels and `[B, 4]` predicted / true boxes;
    the key "loss" holds their sum."""
    targets = labels.float()
    if cfg.label_smoothing > 0:
        targets = targets * (1 - cfg.label_smoothing) + cfg.label_smoothing / 2
    losses: dict[str, torch.Tensor] = {}
    if cfg.action == "focal":
        losses["action_focal"] = cfg.action_weight * focal_bce(logits, targets, cfg.focal_gamma)
    else:
        bce = F.binary_cross_entropy_with_logits(logits, targets)
        losses["action_bce"] = cfg.action_weight * bce
    if cfg.ranking_weight > 0:
        losses["action_rank"] = cfg.ranking_weight * ranking_loss(
            logits, labels, cfg.ranking_margin
        )
    if cfg.box_mse_weight > 0:
        mse = ((boxes - true_boxes) ** 2).sum(-1).mean()  # sum over the 4 numbers, as the paper
        losses["box_mse"] = cfg.box_mse_weight * mse
    if cfg.box_l1_weight > 0:
        losses["box_l1"] = cfg.box_l1_weight * (boxes - true_boxes).abs().sum(-1).mean()
    if cfg.box_iou_weight > 0:
        losses["box_iou"] = cfg.box_iou_weight * (1 - box_iou_paired(boxes, true_boxes)).mean()
    if cfg.box_giou_weight > 0:
        giou = generalized_box_iou_paired(boxes, true_boxes)
        losses["box_giou"] = cfg.box_giou_weight * (1 - giou).mean()
    losses["loss"] = torch.stack(list(losses.values())).sum()
    return losses
