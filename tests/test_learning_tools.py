"""The learning-curve reader and the referring probe's accuracy, against hand-made inputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_learning_curve_points_sum_training_time_and_skip_epochs_without_val(tmp_path):
    curves = _module("learning_curves")
    rows = [
        {"epoch": 1, "step": 10, "epoch_time_s": 30.0, "val": None},
        {"epoch": 2, "step": 20, "epoch_time_s": 45.0,
         "val": {"Acc@0.5": 0.5, "mIoU": 0.25, "mAP_weighted": 0.125}},
        {"epoch": 3, "step": 25, "epoch_time_s": 15.0,
         "val": {"Acc@0.5": 0.75, "mIoU": 0.5, "mAP_weighted": 0.25}},
    ]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    points = curves.read_curve(tmp_path)
    assert [(p["epoch"], p["step"], p["seconds"]) for p in points] == [(2, 20, 75.0), (3, 25, 90.0)]
    assert points[1]["Acc@0.5"] == 75.0 and points[0]["mAP_weighted"] == 12.5
    table = curves.markdown({"m": points})
    assert "| m | 2 | 20 | 1.2 min | 50.0 | 25.0 | 12.5 |" in table
    out = tmp_path / "plot.png"
    curves.plot({"m": points}, out)
    assert out.stat().st_size > 1000


def test_probe_pick_accuracy_counts_picks_that_overlap_the_true_box():
    probe = _module("referring_probe")
    det = torch.tensor(
        [
            [[0.0, 0.0, 0.2, 0.5], [0.5, 0.0, 0.7, 0.5]],
            [[0.0, 0.0, 0.2, 0.5], [0.5, 0.0, 0.7, 0.5]],
            [[0.0, 0.0, 0.2, 0.5], [0.5, 0.0, 0.7, 0.5]],
        ]
    )  # [3, 2, 4]
    person = torch.tensor([[True, True], [True, True], [False, False]])
    scores = torch.tensor([[0.1, 2.0], [3.0, -1.0], [5.0, 0.0]])
    true = torch.tensor([[0.5, 0.0, 0.7, 0.45], [0.5, 0.0, 0.7, 0.5], [0.0, 0.0, 0.2, 0.5]])
    # 1: picks person 1, IoU 0.9 -> hit; 2: picks person 0, no overlap -> miss; 3: no people
    assert probe.pick_accuracy(det, person, scores, true).tolist() == [True, False, False]


@pytest.mark.parametrize("frames", [2, 8])
def test_probe_reads_the_middle_frames_around_the_keyframe(frames):
    probe = _module("referring_probe")
    store = {
        "frames": torch.arange(8, dtype=torch.float16).view(1, 8, 1, 1, 1).expand(1, 8, 3, 2, 2),
        "det_boxes": torch.zeros(1, 1, 4), "det_scores": torch.ones(1, 1),
        "det_mask": torch.ones(1, 1, dtype=torch.bool), "box": torch.zeros(1, 4),
        "labels": torch.zeros(1, 80), "words": torch.zeros(1, 2, 4, dtype=torch.float16),
        "word_mask": torch.ones(1, 2, dtype=torch.bool), "det_categories": [["person"]],
    }  # fmt: skip
    window = slice(4 - frames // 2, 4 - frames // 2 + frames)
    got = probe.take(store, torch.tensor([0]), window)["frames"][0, :, 0, 0, 0].tolist()
    assert got == ([3.0, 4.0] if frames == 2 else [float(i) for i in range(8)])
