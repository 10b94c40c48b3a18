"""From the RefAVA release to a trained model, as a new user would go: import the pickles, find the
people, validate, train, evaluate. On a stand-in made here (tests/refava_release.py): three pickles
per split, numpy boxes, every person annotated, no detections, only +-1.5 s of frames."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch

from ravar.cli import main
from ravar.data.format import read_split
from ravar.util.box_ops import box_iou

from refava_release import make_refava_release

MODEL = "refatomnet_pp_tiny"


def _random_person_acc(dataset, split: str) -> float:
    """Acc@0.5 of answering with a random annotated person of the keyframe (the expectation over
    the draw), computed from the annotations alone."""
    people: dict[tuple[str, float], list[list[float]]] = defaultdict(list)
    for s in ("train", "val", "test"):
        for rec in read_split(dataset, s):
            people[(rec.video_id, float(rec.time))].append(rec.box)
    hits = []
    for rec in read_split(dataset, split):
        ious = box_iou(
            torch.tensor(people[(rec.video_id, float(rec.time))]), torch.tensor([rec.box])
        )
        hits.append(float((ious[:, 0] >= 0.5).float().mean()))
    return float(np.mean(hits))


@pytest.mark.slow
def test_release_to_trained_model(tmp_path, capsys):
    pkl, frames = make_refava_release(tmp_path / "release", people=3, seed=0)
    data = tmp_path / "refava"
    assert main(["data", "import-refava", str(pkl), str(data), "--frames", str(frames)]) == 0
    meta = json.loads((data / "dataset.json").read_text())
    assert meta["frame_source"]["keyframe_window"] == 1.5  # what the release holds
    capsys.readouterr()

    # without detections the location stream would see no one: one line says what to run
    train = [
        "train", "--model", MODEL, "--data", str(data), "--epochs", "3", "--batch-size", "8",
        "--quiet", "--select-metric", "mIoU", "model.clip.num_clips=2",
    ]  # fmt: skip
    assert main([*train, "--out", str(tmp_path / "refused")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "'train'" in err[0] and f"ravar data detect {data} --detector annotations" in err[0]
    assert not (tmp_path / "refused" / "last").exists()

    assert main(["data", "detect", str(data), "--detector", "annotations"]) == 0
    summary = capsys.readouterr().out
    assert "test" in summary and "100.0" in summary  # every referred box is a detection
    assert main(["data", "validate", str(data)]) == 0
    assert "OK: no errors" in capsys.readouterr().out

    # training jitter and two-phase evaluation clips stay inside the +-45 frames on disk
    run = tmp_path / "run"
    assert main([*train, "--out", str(run)]) == 0
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(run / "best"), "--data", str(data), "--split",
                 "test", "--out", str(out), "--multi-clip", "3", "--quiet"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    metrics = metrics.get("metrics", metrics)
    chance = _random_person_acc(data, "test")
    assert 0.25 < chance < 0.45  # three people, side by side
    assert metrics["Acc@0.5"] >= chance + 0.4, (metrics["Acc@0.5"], chance)
    assert metrics["mIoU"] >= 0.6
