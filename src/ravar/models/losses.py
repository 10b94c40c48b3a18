"""Training losses: `Criterion` turns a model's `ModelOutput` and the batch's targets into named,
weighted losses and their total; the terms are the functions below.

    action:  "action_bce" or "action_focal", "action_rank", "action_irm"   (per head set)
    box:     "box_mse", "box_l1", "box_iou", "box_giou"                    (per head set)
    select:  the referring head's choice of the referred person            (once)
    contrast: the same choice among all the batch's people, by word match   (once, when on)

With several head sets (RefAtomNet++), each head set's terms are computed on its own answer and
averaged over the head sets (`per_head`), or computed once on their mean answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from ravar.config import ConfigError
from ravar.errors import BatchError
from ravar.models.output import ModelOutput
from ravar.util.box_ops import box_iou_paired, generalized_box_iou_paired

RANKING_FORMS: tuple[str, ...] = ("hinge", "authors")


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
    # "hinge": per sample, every positive above that sample's hardest negative by the margin;
    # "authors": the RefAtomNet++ code's softplus of every positive of the batch against the
    # batch's `ranking_hard_negatives` highest negative logits
    ranking: str = "hinge"
    ranking_hard_negatives: int = 64  # k of the "authors" ranking loss
    irm_weight: float = 0.0  # IRM penalty on the focal loss (the RefAtomNet++ code: weight 1)
    box_mse_weight: float = 5.0
    box_l1_weight: float = 0.0
    box_iou_weight: float = 0.0  # 1 - IoU
    box_giou_weight: float = 0.0  # 1 - generalised IoU

    def __post_init__(self) -> None:
        if self.action not in ("bce", "focal"):
            raise ConfigError(f"LossConfig.action must be 'bce' or 'focal', got {self.action!r}")
        if self.ranking not in RANKING_FORMS:
            raise ConfigError(
                f"LossConfig.ranking must be one of {RANKING_FORMS}, got {self.ranking!r}"
            )
        if self.ranking_hard_negatives < 1:
            raise ConfigError(
                f"LossConfig.ranking_hard_negatives must be >= 1, got {self.ranking_hard_negatives}"
            )


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


def batch_hard_negative_ranking(
    logits: torch.Tensor, targets: torch.Tensor, margin: float, hard_negatives: int
) -> torch.Tensor:
    """The RefAtomNet++ authors' ranking loss over the whole batch `[B, C]`:

        P = logits of every positive (b, c) of the batch      [n_p]
        N = the k highest logits among its negatives          [k], k = min(hard_negatives, n_n)
        loss = mean_{i, j} softplus(margin - (P_i - N_j))

    Zero (with a gradient path) when the batch has no positive or no negative."""
    pos_mask = targets > 0.5
    pos, neg = logits[pos_mask], logits[~pos_mask]  # [n_p], [n_n]
    if pos.numel() == 0 or neg.numel() == 0:
        return logits.sum() * 0.0
    hard = neg.topk(min(hard_negatives, neg.numel())).values  # [k]
    return F.softplus(margin - (pos[:, None] - hard[None, :])).mean()


def irm_penalty(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """IRM penalty (Arjovsky et al. 2019) of the focal loss on hard targets `[B, C]`, as in the
    RefAtomNet++ authors' code: the squared derivative of the loss with respect to a dummy scale
    w of the logits, at w = 1,

        penalty = (d/dw  focal(w * z, y) |_{w=1})^2 = (mean_{b,c} z * dl/dz)^2.

    With u = z for a positive and u = -z for a negative, p_t = sigmoid(u) and
    l(z) = -(1 - p_t)^gamma log p_t, the chain rule gives z * dl/dz =
    u * sigmoid(-u)^gamma * (gamma * sigmoid(u) * log sigmoid(u) - sigmoid(-u)). Written in
    closed form, so it needs no autograd graph (it also runs under `torch.no_grad`)."""
    u = torch.where(targets > 0.5, logits, -logits)  # [B, C]
    term = (
        u
        * torch.sigmoid(-u) ** gamma
        * (gamma * torch.sigmoid(u) * F.logsigmoid(u) - torch.sigmoid(-u))
    )  # [B, C]
    return term.mean() ** 2


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
        if cfg.ranking == "authors":
            rank = batch_hard_negative_ranking(
                logits, labels, cfg.ranking_margin, cfg.ranking_hard_negatives
            )
        else:
            rank = ranking_loss(logits, labels, cfg.ranking_margin)
        losses["action_rank"] = cfg.ranking_weight * rank
    if cfg.irm_weight > 0:
        losses["action_irm"] = cfg.irm_weight * irm_penalty(logits, labels, cfg.focal_gamma)
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


def selection_loss(
    scores: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, weight: float = 1.0
) -> torch.Tensor:
    """`weight` x the mean cross-entropy of person scores [B, D] against the target person [B]
    over the samples that have one (valid [B] bool); 0 when none has."""
    ce = F.cross_entropy(scores, target, reduction="none")  # [B]
    return weight * (ce * valid).sum() / valid.sum().clamp(min=1)


class Losses(NamedTuple):
    """A batch's named, weighted losses and their total (the value trained on)."""

    total: torch.Tensor  # scalar
    named: dict[str, torch.Tensor]  # name -> scalar


class Criterion:
    """Named losses of a `ModelOutput` against the batch's targets ("labels" [B, 80], "box"
    [B, 4]). `per_head`: the action and box terms of each head set, averaged over head sets
    (else of the mean answer); `select_weight`: weight of the person-selection term, added when
    the output carries a selection target; `contrast_weight`: weight of the cross-batch
    selection term, added when the output carries the batch's scores."""

    def __init__(
        self,
        cfg: LossConfig,
        per_head: bool = False,
        select_weight: float = 1.0,
        contrast_weight: float = 0.0,
    ) -> None:
        self.cfg = cfg
        self.per_head = per_head
        self.select_weight = select_weight
        self.contrast_weight = contrast_weight

    def __call__(self, out: ModelOutput, batch: Mapping[str, Any]) -> Losses:
        missing = [k for k in ("labels", "box") if k not in batch]
        if missing:
            raise BatchError(
                f"the loss needs the batch's targets: no {', '.join(repr(k) for k in missing)}"
            )
        labels, true_box = batch["labels"], batch["box"]
        if self.per_head and len(out.heads) > 1:
            per_head = [
                compute_losses(logits, boxes, labels, true_box, self.cfg)
                for logits, boxes in out.heads.values()
            ]
            named = {k: torch.stack([p[k] for p in per_head]).mean() for k in per_head[0]}
        else:
            named = compute_losses(out.logits, out.boxes, labels, true_box, self.cfg)
        total = named.pop("loss")
        if out.selection_target is not None:
            assert out.selection_scores is not None and out.selection_valid is not None
            named["select"] = selection_loss(
                out.selection_scores, out.selection_target, out.selection_valid, self.select_weight
            )
            total = total + named["select"]
            batch_scores = out.selection_batch_scores  # [B, B*D]
            if batch_scores is not None and self.contrast_weight > 0:
                b, d = out.selection_scores.shape
                index = torch.arange(b, device=batch_scores.device) * d + out.selection_target
                named["contrast"] = selection_loss(
                    batch_scores, index, out.selection_valid, self.contrast_weight
                )
                total = total + named["contrast"]
        return Losses(total, named)
