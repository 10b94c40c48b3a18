"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# refatomnet_tiny (location stream: it needs detections) with a small scratch text encoder
SMALL = {"text.kind": "scratch", "text.frozen": False, "text.dim": 64, "text.depth": 1}


@pytest.fixture
def shared_dir() -> Path:
    """`../shared` beside the checkout (the official label CSV); tests that need it skip
    without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def footage(tmp_path_factory) -> Path:
    """A folder of camera-like clips with several people (tests/media.py: two_players.mp4,
    426x240 at 29.97 fps, 10.01 s; three_people.mp4, 340x256 at 28 fps, 10 s)."""
    from media import THREE_PEOPLE, TWO_PLAYERS, write_clip

    folder = tmp_path_factory.mktemp("footage")
    for spec in (TWO_PLAYERS, THREE_PEOPLE):
        write_clip(spec, folder)
    return folder


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    """A `best/` checkpoint of a small random refatomnet_tiny named "tiny" (needs detections)."""
    import torch

    from ravar.engine.checkpoint import save_checkpoint
    from ravar.models import create_model

    torch.manual_seed(0)
    model = create_model("refatomnet_tiny", **SMALL)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "best", model, model_name="tiny")
