"""`ravar train`: a tiny model trains, the run directory is complete, the best checkpoint is
picked on val only and test is evaluated once with it, runs are reproducible and resumable, and
a NaN loss stops the run naming its step."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import ravar.engine.evaluate as evaluate_mod
from ravar.engine.checkpoint import load_model, read_checkpoint_config
from ravar.engine.config import resolve_run_config
from ravar.engine.evaluate import evaluate_checkpoint
from ravar.engine.runlog import read_log
from ravar.engine.train import NonFiniteLossError, fit
from test_engine_support import NAME, cli_main, make_engine_dataset, strip_times

FAST = ["batch_size=4", "lr=0.05", "warmup_fraction=0.1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_engine_dataset(tmp_path_factory.mktemp("train") / "ds")


def _fit(data_dir, out, overrides=(), resume=False, base=None):
    run = resolve_run_config(NAME, overrides=[*FAST, *overrides], base=base)
    return fit(run, data_dir, out, device="cpu", resume=resume, quiet=True)


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def _same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_lowers_the_loss_and_writes_the_run_directory(tmp_path, data_dir):
    out = tmp_path / "run"
    result = _fit(data_dir, out, ["epochs=4"])
    assert result.finished and result.epoch == 4 and result.step == 12  # 3 batches of 4
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "test_metrics.json"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_log(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and rows[-1]["step"] == 12
    assert rows[-1]["train"]["loss"] < 0.7 * rows[0]["train"]["loss"]
    assert set(rows[0]["train"]) == {"loss", "action_bce", "box_mse"}
    assert rows[0]["val"]["n"] == 5 and "mAP_weighted" in rows[0]["val"]
    assert rows[-1]["lr"] == pytest.approx(0.0)  # cosine ends at min_lr_ratio * lr
    assert max(r["lr"] for r in rows) <= 0.05
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["n"] == 4 and test["split"] == "test"
    assert len((out / "test_predictions.jsonl").read_text().splitlines()) == 4
    last = read_checkpoint_config(out / "last")
    assert (last["epoch"], last["step"], last["train"]["epochs"]) == (4, 12, 4)
    assert (out / "last" / "trainer_state.pt").is_file()
    assert not (out / "best" / "trainer_state.pt").exists()
    saved = (out / "config.yaml").read_text()
    assert "lr: 0.05" in saved and "model:" in saved and "num_frames: 2" in saved


def test_best_is_chosen_on_val_and_test_is_evaluated_once_with_it(tmp_path, data_dir, monkeypatch):
    real = evaluate_mod.compute_metrics
    calls = []
    scripted = iter([0.5, 0.9, 0.7])  # val mAP_weighted of epochs 1, 2, 3

    def fake(pred_boxes, true_boxes, scores, labels):
        metrics = real(pred_boxes, true_boxes, scores, labels)
        calls.append(metrics["n"])
        if len(calls) <= 3:
            metrics["mAP_weighted"] = next(scripted)
        return metrics

    monkeypatch.setattr(evaluate_mod, "compute_metrics", fake)
    out = tmp_path / "run"
    result = _fit(data_dir, out, ["epochs=3"])
    monkeypatch.undo()
    assert calls == [5, 5, 5, 4]  # val (5 instances) every epoch, test (4) once at the end
    assert result.best_epoch == 2 and result.best_val["mAP_weighted"] == 0.9
    best = read_checkpoint_config(out / "best")
    assert best["epoch"] == 2 and best["metrics"]["mAP_weighted"] == 0.9
    assert read_checkpoint_config(out / "last")["epoch"] == 3
    assert not _same_weights(_weights(out / "best"), _weights(out / "last"))
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["best_epoch"] == 2
    again = evaluate_checkpoint(out / "best", data_dir, "test", write=False).metrics
    assert test["metrics"]["mAP_weighted"] == pytest.approx(again["mAP_weighted"])
    assert test["metrics"]["mIoU"] == pytest.approx(again["mIoU"])
    rows = read_log(out / "metrics.jsonl")
    assert all("test" not in r for r in rows)


def test_same_seed_same_results_other_seed_other_results(tmp_path, data_dir):
    a = _fit(data_dir, tmp_path / "a", ["epochs=2", "seed=3"])
    b = _fit(data_dir, tmp_path / "b", ["epochs=2", "seed=3"])
    c = _fit(data_dir, tmp_path / "c", ["epochs=2", "seed=4"])
    rows_a = strip_times(read_log(tmp_path / "a" / "metrics.jsonl"))
    assert rows_a == strip_times(read_log(tmp_path / "b" / "metrics.jsonl"))
    assert a.test == b.test
    assert _same_weights(_weights(tmp_path / "a" / "last"), _weights(tmp_path / "b" / "last"))
    assert not _same_weights(_weights(tmp_path / "a" / "last"), _weights(tmp_path / "c" / "last"))
    assert c.test != a.test or rows_a != strip_times(read_log(tmp_path / "c" / "metrics.jsonl"))


def test_resume_after_a_stop_gives_the_uninterrupted_results(tmp_path, data_dir):
    # dropout on and EMA on: the RNG states and the EMA state must survive the stop
    over = ["epochs=3", "ema=0.8", "model.dropout=0.3"]
    whole = _fit(data_dir, tmp_path / "whole", over)
    out = tmp_path / "split"
    first = _fit(data_dir, out, [*over, "stop_after_epoch=1"])
    assert not first.finished and first.epoch == 1 and first.test is None
    assert not (out / "test_metrics.json").exists()
    assert read_checkpoint_config(out / "last")["epoch"] == 1
    base = resolve_run_config(NAME, overrides=[*FAST, *over])
    rest = _fit(data_dir, out, over, resume=True, base=base)
    assert rest.finished and rest.epoch == 3
    assert rest.test == whole.test and rest.best_epoch == whole.best_epoch
    assert strip_times(read_log(out / "metrics.jsonl")) == strip_times(
        read_log(tmp_path / "whole" / "metrics.jsonl")
    )
    for name in ("last", "best"):
        assert _same_weights(_weights(out / name), _weights(tmp_path / "whole" / name))


def test_resume_refuses_a_changed_config_and_a_fresh_run_refuses_an_old_dir(tmp_path, data_dir):
    out = tmp_path / "run"
    _fit(data_dir, out, ["epochs=2", "stop_after_epoch=1"])
    with pytest.raises(Exception, match="already holds a run"):
        _fit(data_dir, out, ["epochs=2"])
    with pytest.raises(Exception, match=r"lr"):
        _fit(data_dir, out, ["epochs=2", "lr=0.01"], resume=True)
    with pytest.raises(Exception, match="no checkpoint to resume"):
        _fit(data_dir, tmp_path / "empty", ["epochs=2"], resume=True)


def test_gradient_accumulation_matches_the_larger_batch(tmp_path, data_dir):
    over = ["epochs=1", "model.dropout=0.0"]
    _fit(data_dir, tmp_path / "big", over)  # batch 4
    _fit(data_dir, tmp_path / "acc", [*over, "batch_size=2", "grad_accum=2"])
    big, acc = _weights(tmp_path / "big" / "last"), _weights(tmp_path / "acc" / "last")
    assert all(torch.allclose(big[k], acc[k], atol=1e-5) for k in big)
    assert read_checkpoint_config(tmp_path / "acc" / "last")["step"] == 3
    no_acc = _weights(_fit(data_dir, tmp_path / "small", [*over, "batch_size=2"]).run_dir / "last")
    assert not all(torch.allclose(big[k], no_acc[k], atol=1e-5) for k in big)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
    out = tmp_path / "run"
    # 3 batches per epoch: the 5th training forward is epoch 2, batch 2, optimizer step 5
    with pytest.raises(NonFiniteLossError) as err:
        _fit(data_dir, out, ["epochs=3", "model.nan_at_call=5"])
    msg = str(err.value)
    assert "\n" not in msg and "nan" in msg
    assert "step 5" in msg and "epoch 2" in msg and "batch 2" in msg
    assert read_checkpoint_config(out / "last")["epoch"] == 1
    assert len(read_log(out / "metrics.jsonl")) == 1
    load_model(out / "last")  # still usable


def test_cli_train_with_yaml_overrides_and_flags(tmp_path, data_dir, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model_name: {NAME}\nepochs: 5\nlr: 0.05\nmodel:\n  dim: 8\n")
    out = tmp_path / "run"
    argv = ["train", "--config", str(cfg), "--data", str(data_dir), "--out", str(out)]
    argv += ["model.dropout=0.0", "eval_every=2", "--epochs", "2", "--batch-size", "6"]
    assert cli_main([*argv, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "epoch 2/2" in printed and "mAP (w)" in printed and "test (best)" in printed
    last = read_checkpoint_config(out / "last")
    assert last["model"]["dim"] == 8 and last["model"]["dropout"] == 0.0
    assert (last["train"]["epochs"], last["train"]["batch_size"], last["step"]) == (2, 6, 4)
    rows = read_log(out / "metrics.jsonl")
    assert rows[0]["val"] is None and rows[1]["val"]["n"] == 5  # eval_every=2, last always
    # the run's config.yaml is itself a valid --config
    again = resolve_run_config(None, out / "config.yaml")
    assert again.to_dict() == {**again.to_dict(), **{"epochs": 2, "batch_size": 6}}
    assert again.model.dim == 8


def test_cli_train_errors_are_one_line(tmp_path, data_dir, capsys):
    base = ["train", "--model", NAME, "--data", str(data_dir), "--out", str(tmp_path / "r")]
    assert cli_main([*base, "model.nosuch=1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nosuch" in err
    assert cli_main(["train", "--model", NAME, "--data", str(tmp_path / "nope"), "--out", "x"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err
    assert cli_main([*base, "--resume"]) == 1
    assert "no checkpoint to resume" in capsys.readouterr().err


def test_max_steps_ends_the_run_mid_epoch_with_val_and_test(tmp_path, data_dir):
    result = _fit(data_dir, tmp_path / "run", ["epochs=5", "max_steps=4", "amp=bf16"])
    assert result.finished and (result.epoch, result.step) == (2, 4)
    rows = read_log(tmp_path / "run" / "metrics.jsonl")
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 3), (2, 4)]
    assert rows[-1]["val"]["n"] == 5 and rows[-1]["lr"] == pytest.approx(0.0)  # schedule: 4 steps
    assert result.test is not None and result.test["n"] == 4


def test_uint8_pixels_normalised_on_the_device_train_like_floats(tmp_path, data_dir, monkeypatch):
    # on CUDA the trainer hands uint8 pixels to the device; forced here on the CPU
    import ravar.engine.train as train_mod
    from ravar.data.dataset import RAVARDataset

    a = _fit(data_dir, tmp_path / "a", ["epochs=2", "seed=3"])
    made = []

    def uint8_dataset(*args, **kwargs):
        made.append(RAVARDataset(*args, **{**kwargs, "uint8": True}))
        return made[-1]

    monkeypatch.setattr(train_mod, "RAVARDataset", uint8_dataset)
    b = _fit(data_dir, tmp_path / "b", ["epochs=2", "seed=3"])
    assert len(made) == 3 and made[0][0]["frames"].dtype == torch.uint8  # train, val, test
    rows_a = read_log(tmp_path / "a" / "metrics.jsonl")
    rows_b = read_log(tmp_path / "b" / "metrics.jsonl")
    for ra, rb in zip(strip_times(rows_a), strip_times(rows_b), strict=True):
        assert ra.keys() == rb.keys()
        for k, v in ra.items():
            assert rb[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
    assert b.test.keys() == a.test.keys()
    assert all(b.test[k] == pytest.approx(v, rel=1e-4, abs=1e-6) for k, v in a.test.items())
