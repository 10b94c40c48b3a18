"""The baselines' specific behaviour: what they read, and the oracle's crop."""

from __future__ import annotations

import pytest
import torch

from ravar.errors import RavarError
from ravar.models import create_model
from ravar.models.roi import AppearanceEncoder, crop_boxes

from builders import random_batch

SMALL = {"clip.num_frames": 4, "clip.size": [32, 32], "visual.num_frames": 4}


def test_crop_boxes_takes_the_box_region():
    frames = torch.arange(16.0).view(1, 1, 1, 4, 4).expand(1, 2, 3, 4, 4).contiguous()
    box = torch.tensor([[0.5, 0.0, 1.0, 0.5]])  # top-right quarter: values 2, 3, 6, 7
    crop = crop_boxes(frames, box, (2, 2))
    assert crop.shape == (1, 2, 3, 2, 2)
    assert torch.allclose(crop[0, 1, 0], torch.tensor([[2.0, 3.0], [6.0, 7.0]]))


def test_no_text_ignores_the_sentence_and_late_fusion_reads_it():
    torch.manual_seed(0)
    batch = random_batch(b=2, t=4, size=32)
    other = dict(batch, text=["the tall man on the right", "a child in a red hat"])
    no_text = create_model("no_text_tiny", **SMALL, **{"visual.image_size": [32, 32]}).eval()
    late = create_model(
        "late_fusion_tiny",
        **SMALL,
        **{"visual.image_size": [32, 32], "text.kind": "scratch", "text.frozen": False},
    ).eval()
    with torch.no_grad():
        assert torch.equal(no_text(batch).logits, no_text(other).logits)
        assert not torch.allclose(late(batch).logits, late(other).logits)


def test_oracle_returns_the_true_box_and_needs_it():
    model = create_model("oracle_crop_tiny", **SMALL).eval()
    batch = random_batch(b=2, t=4, size=32)
    out = model(batch)
    assert torch.equal(out.boxes, batch["box"]) and model.is_oracle
    with pytest.raises(RavarError, match="ground-truth box"):
        model({k: v for k, v in batch.items() if k != "box"})


def test_person_oracle_reads_the_true_persons_crop_through_the_person_encoder():
    model = create_model("oracle_person_tiny", **SMALL).eval()
    assert isinstance(model.person.encoder, AppearanceEncoder) and model.is_oracle
    batch = random_batch(b=2, t=4, size=32)
    with torch.no_grad():
        out = model(batch)
        assert torch.equal(out.boxes, batch["box"])
        # pixels outside both true boxes (plus their margin) do not matter
        other = dict(batch)
        frames = batch["frames"].clone()
        inside = torch.zeros(frames.shape[-2:], dtype=torch.bool)
        for box in batch["box"]:
            x1, y1, x2, y2 = (box * 32).tolist()
            inside[max(0, int(y1) - 2) : int(y2) + 3, max(0, int(x1) - 2) : int(x2) + 3] = True
        frames[..., ~inside] = 5.0
        other["frames"] = frames
        assert torch.allclose(model(other).logits, out.logits, atol=1e-5)
        # the pixels inside do
        frames = batch["frames"].clone()
        frames[..., inside] = -5.0
        other["frames"] = frames
        assert not torch.allclose(model(other).logits, out.logits, atol=1e-3)
    with pytest.raises(RavarError, match="ground-truth box"):
        model({k: v for k, v in batch.items() if k != "box"})
    with pytest.raises(ValueError, match="encoder"):
        create_model("oracle_crop_tiny", encoder="pixels")
