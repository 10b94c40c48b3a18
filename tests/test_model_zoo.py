"""Every registered `tiny` model: one interface, valid boxes, finite losses, and it learns."""

from __future__ import annotations

import pytest
import torch

from ravar.config import to_dict
from ravar.models import create_model, list_models, model_config

from builders import random_batch

TINY = [n for n in list_models() if "_tiny" in n]


def small(name: str) -> dict:
    """Overrides that shrink a tiny config to 4 frames of 32x32 (keys only where they exist)."""
    cfg = to_dict(model_config(name))
    wanted = {"clip.num_frames": 4, "clip.size": [32, 32], "visual.num_frames": 4}
    if cfg.get("visual", {}).get("kind") == "scratch" and not name.startswith("oracle_"):
        wanted["visual.image_size"] = [32, 32]
    if cfg.get("text", {}).get("kind") == "minilm":
        wanted.update({"text.kind": "scratch", "text.frozen": False, "text.dim": 64})
    out = {}
    for key, value in wanted.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.get(p, {})
        if parts[-1] in node:
            out[key] = value
    return out


def check_boxes(boxes: torch.Tensor) -> None:
    assert bool((boxes >= 0).all() and (boxes <= 1).all())
    assert bool((boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all())


def test_registry_has_every_family():
    families = {"refatomnet", "refatomnet_pp", "no_text", "late_fusion", "oracle_crop"}
    assert {n.rsplit("_tiny", 1)[0] for n in TINY} >= families


@pytest.mark.parametrize("name", TINY)
def test_forward_backward_gives_valid_outputs(name):
    torch.manual_seed(0)
    model = create_model(name, **small(name)).train()
    batch = random_batch(b=3, t=4, size=32)
    out = model(batch)
    losses = model.criterion()(out, batch)
    assert out.logits.shape == (3, 80) and out.boxes.shape == (3, 4)
    check_boxes(out.boxes)
    assert torch.isfinite(losses.total) and set(losses.named)
    losses.total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[:1])
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    model.eval()
    with torch.no_grad():
        no_targets = {k: v for k, v in batch.items() if k not in ("labels", "box")}
        if model.is_oracle:
            no_targets["box"] = batch["box"]
        eval_out = model(no_targets)
    assert "loss" not in vars(eval_out) or model.is_oracle
    check_boxes(eval_out.boxes)


@pytest.mark.parametrize("name", TINY)
def test_loss_falls_when_overfitting_16_clips(name):
    torch.manual_seed(0)
    model = create_model(name, **small(name)).train()
    batch = random_batch(b=16, t=4, size=32, seed=1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    criterion = model.criterion()
    for _ in range(30):
        loss = criterion(model(batch), batch).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses[::5]
