"""`ravar eval`: metrics table, metrics.json and predictions.jsonl that agree with an independent
computation, multi-clip averaging, and one-line errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ravar.data.dataset import RAVARDataset, collate
from ravar.data.format import read_split
from ravar.engine.batch import without_targets
from ravar.engine.checkpoint import load_model, save_checkpoint
from ravar.engine.evaluate import evaluate_checkpoint
from ravar.labels import action_name, multi_hot
from ravar.metrics import compute_metrics
from ravar.models.output import ModelOutput
from ravar.models.registry import register_family
from test_engine_support import (
    NAME,
    TinyConfig,
    TinyModel,
    cli_main,
    make_engine_dataset,
    read_jsonl,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = make_engine_dataset(root / "ds")
    torch.manual_seed(0)
    model = TinyModel(TinyConfig(dim=12))
    with torch.no_grad():  # larger weights so that pixel differences show in the outputs
        model.visual.weight.mul_(20)
    ckpt = save_checkpoint(root / "run" / "best", model, model_name=NAME, epoch=1)
    return data, ckpt


def _direct(model, ds, index, clip=None):
    """Probabilities [80] and box [4] of one instance (one clip), computed by hand."""
    item = ds[index]
    frames = item["frames"] if clip is None else item["frames"][clip]  # [T, 3, H, W]
    batch = collate([{**item, "frames": frames}])
    with torch.no_grad():
        out = model({k: v for k, v in batch.items() if k not in ("labels", "box")})
    return torch.sigmoid(out.logits)[0].numpy(), out.boxes[0].numpy()


def test_cli_eval_writes_metrics_and_predictions_that_check_out(setup, tmp_path, capsys):
    data, ckpt = setup
    out = tmp_path / "ev"
    argv = ["eval", "--checkpoint", str(ckpt), "--data", str(data), "--split", "val"]
    assert cli_main([*argv, "--out", str(out), "--batch-size", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    for column in ("mIoU", "Acc@0.5", "mAP (w)", "mAP (macro)", "AUROC (w)", "AUROC (macro)"):
        assert column in printed
    summary = json.loads((out / "metrics.json").read_text())
    assert (summary["split"], summary["n"], summary["num_clips"]) == ("val", 5, 1)
    rows = read_jsonl(out / "predictions.jsonl")
    records = read_split(data, "val")
    assert [r["key"] for r in rows] == [rec.key for rec in records]

    model, ds = load_model(ckpt), RAVARDataset(data, "val", TinyConfig().clip)
    for i, row in enumerate(rows):
        probs, box = _direct(model, ds, i)
        assert np.allclose(row["probs"], probs, atol=1e-5) and len(row["probs"]) == 80
        assert np.allclose(row["box"], box, atol=1e-5)
        top = row["top_actions"]
        assert len(top) == 5 and top[0]["id"] == int(np.argmax(probs)) + 1
        assert top[0]["name"] == action_name(top[0]["id"])
        assert [t["prob"] for t in top] == sorted((t["prob"] for t in top), reverse=True)
    # metrics recomputed from the written predictions and the annotation file
    labels = np.stack([multi_hot(r.actions).numpy() for r in records])
    again = compute_metrics(
        np.array([r["box"] for r in rows]),
        np.array([r.box for r in records]),
        np.array([r["probs"] for r in rows]),
        labels,
    )
    for key in ("mIoU", "Acc@0.5", "mAP_weighted", "mAP_macro", "AUROC_weighted", "AUROC_macro"):
        assert summary["metrics"][key] == pytest.approx(again[key], abs=1e-5), key


def test_multi_clip_averages_probabilities_and_boxes_over_clips(setup, tmp_path):
    data, ckpt = setup
    res = evaluate_checkpoint(ckpt, data, "val", num_clips=3, batch_size=2, out_dir=tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["num_clips"] == 3
    model = load_model(ckpt)
    ds3 = RAVARDataset(data, "val", dataclasses.replace(TinyConfig().clip, num_clips=3))
    assert ds3[0]["frames"].shape[:2] == (3, 2)  # [K, T, ...]
    for i in range(len(ds3)):
        per_clip = [_direct(model, ds3, i, clip=k) for k in range(3)]
        assert np.allclose(
            res.predictions.probs[i], np.mean([p for p, _ in per_clip], 0), atol=1e-6
        )
        assert np.allclose(
            res.predictions.boxes[i], np.mean([b for _, b in per_clip], 0), atol=1e-6
        )
    single = evaluate_checkpoint(ckpt, data, "val", write=False)
    assert not np.allclose(single.predictions.probs, res.predictions.probs, atol=1e-6)


def test_default_output_dir_is_beside_the_checkpoint(setup):
    data, ckpt = setup
    res = evaluate_checkpoint(ckpt, data, "test", num_clips=2)
    assert res.out_dir == ckpt.parent / "eval-best-test-2clips"
    assert len(read_jsonl(res.out_dir / "predictions.jsonl")) == 4


def test_eval_errors_are_one_line_naming_the_culprit(setup, tmp_path, capsys):
    data, ckpt = setup
    cases = [
        (["--checkpoint", str(tmp_path / "missing"), "--data", str(data)], "missing"),
        (["--checkpoint", str(ckpt), "--data", str(data), "--split", "nosuch"], "nosuch.jsonl"),
        (["--checkpoint", str(ckpt), "--data", str(tmp_path / "nodata")], "nodata"),
    ]
    for args, culprit in cases:
        assert cli_main(["eval", *args, "--device", "cpu"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and culprit in err, err


@register_family
class TinyOracle(TinyModel):
    """Test-only oracle: reads the true box at test time and returns it."""

    family = "engine_test_oracle"
    is_oracle = True

    def forward(self, batch):
        out = super().forward(batch)
        return ModelOutput.from_heads({"main": (out.logits, batch["box"])})


def test_oracle_models_get_the_true_box_but_not_the_labels(setup, tmp_path):
    data, _ = setup
    ckpt = save_checkpoint(tmp_path / "oracle", TinyOracle(TinyConfig()), model_name="oracle")
    res = evaluate_checkpoint(ckpt, data, "val", num_clips=2, write=False)
    assert res.metrics["mIoU"] == pytest.approx(1.0) and res.metrics["Acc@0.5"] == 1.0
    with pytest.raises(KeyError):  # an ordinary model never sees the box at test time
        without_targets({"box": 1, "labels": 2, "text": 3})["box"]
    assert without_targets({"box": 1, "labels": 2, "text": 3}, keep_box=True) == {
        "box": 1,
        "text": 3,
    }
