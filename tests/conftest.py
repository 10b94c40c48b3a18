"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# refatomnet_tiny (location stream: it needs detections) with a small scratch text encoder
SMALL = {"text.kind": "scratch", "text.frozen": False, "text.dim": 64, "text.depth": 1}


@pytest.fixture
def shared_dir() -> Path:
    """`../shared` beside the checkout (real clips, labels); tests that need it skip without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    """A `best/` checkpoint of a small random refatomnet_tiny named "tiny" (needs detections)."""
    import torch

    from ravar.engine.checkpoint import save_checkpoint
    from ravar.models import create_model

    torch.manual_seed(0)
    model = create_model("refatomnet_tiny", **SMALL)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "best", model, model_name="tiny")
