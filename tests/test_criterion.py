"""The model contract: `ModelOutput` and `Criterion`, checked against the loss formulas written out
here by hand, and DistributedDataParallel training through the criterion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils import _pytree

from ravar.errors import BatchError
from ravar.models.base import RAVARModel
from ravar.models.losses import Criterion, LossConfig
from ravar.models.output import ModelOutput


def _batch(b: int = 3, c: int = 6, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(b, c, generator=g) < 0.4).float()
    labels[:, 0] = 1.0  # every sample has a positive and (almost surely) a negative
    labels[:, 1] = 0.0
    xy = 0.4 * torch.rand(b, 2, generator=g)
    box = torch.cat([xy, xy + 0.2 + 0.3 * torch.rand(b, 2, generator=g)], -1)  # [B, 4] valid
    return {"labels": labels, "box": box}


def _head(b: int = 3, c: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(b, c, generator=g)
    xy = 0.5 * torch.rand(b, 2, generator=g)
    boxes = torch.cat([xy, xy + 0.1 + 0.4 * torch.rand(b, 2, generator=g)], -1)
    return logits, boxes


def _bce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [B, C] elementwise
    p = 1 / (1 + torch.exp(-z))
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))


def _focal(z: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:  # mean
    p = 1 / (1 + torch.exp(-z))
    p_t = p * y + (1 - p) * (1 - y)  # of the (smoothed) targets
    return ((1 - p_t) ** gamma * _bce(z, y)).mean()


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # [B] paired
    w = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    h = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def test_bce_and_box_mse_of_one_head_set() -> None:
    batch = _batch()
    logits, boxes = _head()
    out = ModelOutput.from_heads({"main": (logits, boxes)})
    assert out.logits is logits and out.boxes is boxes  # one head set: its own answer
    losses = Criterion(LossConfig(action_weight=3.0, box_mse_weight=5.0))(out, batch)
    y, t = batch["labels"], batch["box"]
    bce = 3.0 * _bce(logits, y).mean()
    mse = 5.0 * ((boxes - t) ** 2).sum(1).mean()
    assert set(losses.named) == {"action_bce", "box_mse"}
    assert torch.allclose(losses.named["action_bce"], bce, rtol=1e-5)
    assert torch.allclose(losses.named["box_mse"], mse, rtol=1e-5)
    assert torch.allclose(losses.total, bce + mse, rtol=1e-5)


def _authors_style_terms(
    logits: torch.Tensor, boxes: torch.Tensor, y: torch.Tensor, t: torch.Tensor
) -> dict[str, torch.Tensor]:
    """focal (gamma 2, smoothing 0.4) + hinge ranking (margin 0.2) + IRM x 0.5 + 2 (1 - IoU)."""
    smoothed = y * 0.6 + 0.2
    focal = _focal(logits, smoothed, 2.0)
    hinge = []
    for z, row in zip(logits, y, strict=True):
        hardest = z[row < 0.5].max()
        hinge += [torch.relu(0.2 - (z[c] - hardest)) for c in range(len(z)) if row[c] > 0.5]
    rank = torch.stack(hinge).mean()
    # IRM: the squared derivative of the focal loss on the hard labels w.r.t. a scale w at w = 1
    w = torch.ones((), dtype=logits.dtype, requires_grad=True)
    (grad,) = torch.autograd.grad(_focal(w * logits.detach(), y, 2.0), w)
    return {
        "action_focal": 2.0 * focal,
        "action_rank": rank,
        "action_irm": 0.5 * grad**2,
        "box_iou": 2.0 * (1 - _iou(boxes, t)).mean(),
    }


PP_LIKE = LossConfig(
    action="focal",
    action_weight=2.0,
    label_smoothing=0.4,
    ranking_weight=1.0,
    ranking_margin=0.2,
    irm_weight=0.5,
    box_mse_weight=0.0,
    box_iou_weight=2.0,
)


def test_per_head_losses_are_averaged_over_head_sets_and_the_total_is_their_mean() -> None:
    batch = _batch()
    heads = {"temporal": _head(seed=1), "spatial": _head(seed=2)}
    out = ModelOutput.from_heads(heads)
    assert torch.allclose(out.logits, (heads["temporal"][0] + heads["spatial"][0]) / 2)
    assert torch.allclose(out.boxes, (heads["temporal"][1] + heads["spatial"][1]) / 2)
    y, t = batch["labels"], batch["box"]
    per_head = [_authors_style_terms(lg, bx, y, t) for lg, bx in heads.values()]
    losses = Criterion(PP_LIKE, per_head=True)(out, batch)
    assert set(losses.named) == set(per_head[0])
    for name, value in losses.named.items():
        expected = (per_head[0][name] + per_head[1][name]) / 2
        assert torch.allclose(value, expected, rtol=1e-5), name
    total = sum(sum(p.values()) for p in per_head) / 2
    assert torch.allclose(losses.total, total, rtol=1e-5)
    # per_head=False: the same terms, of the mean answer
    mean = _authors_style_terms(out.logits, out.boxes, y, t)
    losses = Criterion(PP_LIKE, per_head=False)(out, batch)
    for name, value in losses.named.items():
        assert torch.allclose(value, mean[name], rtol=1e-5), name
    assert torch.allclose(losses.total, sum(mean.values()), rtol=1e-5)


def test_selection_loss_is_the_weighted_cross_entropy_over_samples_with_a_target() -> None:
    batch = _batch()
    scores = torch.tensor([[2.0, -1.0, -1e4], [0.5, 0.3, 0.1], [1.0, 1.0, 1.0]])
    target = torch.tensor([1, 2, 0])
    valid = torch.tensor([True, True, False])  # sample 2: no person overlaps the truth
    out = ModelOutput.from_heads({"main": _head()}, scores, target, valid)
    losses = Criterion(LossConfig(), select_weight=0.7)(out, batch)
    ce = [torch.logsumexp(scores[i], 0) - scores[i, target[i]] for i in (0, 1)]
    assert torch.allclose(losses.named["select"], 0.7 * (ce[0] + ce[1]) / 2, rtol=1e-5)
    rest = losses.named["action_bce"] + losses.named["box_mse"]
    assert torch.allclose(losses.total, rest + losses.named["select"], rtol=1e-5)
    # no target (no true box given, or no detection slot): no selection term
    without = ModelOutput.from_heads({"main": _head()}, scores)
    assert "select" not in Criterion(LossConfig())(without, batch).named


def test_criterion_needs_the_targets_and_names_the_missing_key() -> None:
    out = ModelOutput.from_heads({"main": _head()})
    with pytest.raises(BatchError, match="'box'"):
        Criterion(LossConfig())(out, {"labels": torch.zeros(3, 6)})


def test_model_output_is_a_pytree_node() -> None:
    out = ModelOutput.from_heads(
        {"a": _head(seed=1), "b": _head(seed=2)}, torch.zeros(3, 2), torch.zeros(3).long()
    )
    leaves, spec = _pytree.tree_flatten(out)
    # logits, boxes, 2 heads x 2, scores, target, valid=None, batch_scores=None
    assert len(leaves) == 2 + 4 + 2 + 1 + 1
    back = _pytree.tree_unflatten(leaves, spec)
    assert isinstance(back, ModelOutput) and back.heads["b"][1] is out.heads["b"][1]
    assert back.selection_valid is None and back.selection_target is out.selection_target


@dataclass
class _TwoHeadConfig:
    loss: LossConfig = field(default_factory=lambda: PP_LIKE)


class _TwoHeads(RAVARModel):
    """Two linear head sets over a feature vector, and a parameter no output uses."""

    family = "test_two_heads"

    def __init__(self) -> None:
        super().__init__(_TwoHeadConfig())
        self.trunk = nn.Linear(5, 8)
        self.heads = nn.ModuleDict({k: nn.Linear(8, 6 + 4) for k in ("a", "b")})
        self.unused = nn.Linear(2, 2)

    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        h = torch.tanh(self.trunk(batch["x"]))  # [B, 8]
        heads = {}
        for name, layer in self.heads.items():
            y = layer(h)  # [B, 10]
            xy = 0.5 * torch.sigmoid(y[:, 6:8])
            heads[name] = (y[:, :6], torch.cat([xy, xy + 0.1 + 0.4 * torch.sigmoid(y[:, 8:])], -1))
        return ModelOutput.from_heads(heads)

    def criterion(self) -> Criterion:
        return Criterion(self.config.loss, per_head=True)


@pytest.mark.parametrize("find_unused", [False, True])
def test_ddp_trains_through_the_criterion_on_its_output(tmp_path, find_unused: bool) -> None:
    torch.manual_seed(0)
    plain, wrapped = _TwoHeads(), _TwoHeads()
    wrapped.load_state_dict(plain.state_dict())
    batch = {**_batch(b=4), "x": torch.randn(4, 5)}
    criterion = plain.criterion()
    criterion(plain(batch), batch).total.backward()

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = DistributedDataParallel(wrapped, find_unused_parameters=find_unused)
        out = ddp(batch)
        assert isinstance(out, ModelOutput)
        losses = wrapped.criterion()(out, batch)
        losses.total.backward()
    finally:
        dist.destroy_process_group()
    for (name, a), b in zip(plain.named_parameters(), wrapped.parameters(), strict=True):
        if name.startswith("unused"):
            assert a.grad is None and b.grad is None
        else:
            assert torch.allclose(a.grad, b.grad, atol=1e-7), name
