"""`ravar demo`, the README's main job, end to end on the small preset with a few steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ravar.cli import main
from ravar.cli.demo import DEMO_MODEL


@pytest.mark.slow
def test_demo_trains_evaluates_and_draws_predictions(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--preset", "small", "--steps", "4"])
    assert code == 0
    text = capsys.readouterr().out
    run = out / f"run-{DEMO_MODEL}-small-0"
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] > 0
    # the final table has the trained model and the three baselines, in percent
    table = text[text.index("6. test split") :]
    for row in (DEMO_MODEL, "random person", "clip mean", "prior"):
        assert row in table
    miou = 100 * metrics["metrics"]["mIoU"]
    assert f"{miou:.2f}" in table.splitlines()[3]
    png = Image.open(out / "test_predictions.png")
    pixels = np.asarray(png.convert("RGB")).reshape(-1, 3).astype(int)
    red = (pixels[:, 0] > 200) & (pixels[:, 1] < 60) & (pixels[:, 2] < 60)
    green = (pixels[:, 1] > 200) & (pixels[:, 0] < 60) & (pixels[:, 2] < 60)
    assert red.sum() > 20 and green.sum() > 20  # predicted and true boxes are drawn

    # a second run reuses the synthetic data and the finished training run
    assert main(["demo", "--out", str(out), "--preset", "small", "--steps", "4"]) == 0
    again = capsys.readouterr().out
    assert "using the cached dataset" in again and "using the finished run" in again
