"""Experiment tracking of `ravar train`: steps.csv has one row per optimizer step whose losses
agree with metrics.jsonl, tensorboard's event files hold the same values, a resumed run does not
repeat steps, wandb (a recording stand-in) gets the same values offline, a missing package or
an unknown logger is one line, and curves.png draws the per-step loss of a one-epoch run."""

from __future__ import annotations

import errno
import importlib.machinery
import importlib.util
import math
import os
import sys
import types

import pytest

from ravar.cli import main as ravar_main
from ravar.engine.config import resolve_run_config
from ravar.engine.loggers import LoggerError, parse_logger_names, read_steps
from ravar.engine.plots import loss_series
from ravar.engine.runlog import read_log
from ravar.engine.schedule import lr_factor, warmup_steps_for
from ravar.engine.train import fit
from test_engine_support import NAME, make_engine_dataset

FAST = ["batch_size=4", "lr=0.05", "warmup_fraction=0.2"]  # 12 clips: 3 steps of 4 per epoch


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_engine_dataset(tmp_path_factory.mktemp("loggers") / "ds")


def _fit(data_dir, out, overrides=(), resume=False):
    base = resolve_run_config(NAME, overrides=[*FAST, *overrides]) if resume else None
    run = resolve_run_config(NAME, overrides=[*FAST, *overrides], base=base)
    return fit(run, data_dir, out, device="cpu", resume=resume, quiet=True)


def _tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_steps_csv_and_tensorboard_log_every_step(tmp_path, data_dir):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    _fit(data_dir, out, ["epochs=2", "loggers=csv,tensorboard"])
    steps = read_steps(out / "steps.csv")
    header = (out / "steps.csv").read_text().splitlines()[0].split(",")
    assert header == ["step", "epoch", "lr", "clips_per_s", "loss", "action_bce", "box_mse"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert [r["epoch"] for r in steps] == [1, 1, 1, 2, 2, 2]
    # each epoch's mean in metrics.jsonl is the mean of its three equal-sized steps
    epochs = read_log(out / "metrics.jsonl")
    for row in epochs:
        mine = [r for r in steps if r["epoch"] == row["epoch"]]
        for key in ("loss", "action_bce", "box_mse"):
            assert sum(r[key] for r in mine) / 3 == pytest.approx(row["train"][key], rel=1e-12)
    # the learning rate each step trained with: warmup then cosine over the 6 steps
    warmup = warmup_steps_for(6, None, 0.2)
    for r in steps:
        expected = 0.05 * lr_factor(r["step"] - 1, 6, warmup, "cosine", 0.0)
        assert r["lr"] == pytest.approx(expected, rel=1e-12)
    assert all(r["clips_per_s"] > 0 for r in steps)
    scalars = _tensorboard_scalars(out / "tb")
    for key in ("loss", "action_bce", "box_mse", "lr"):
        assert [s for s, _ in scalars[f"train/{key}"]] == [1, 2, 3, 4, 5, 6]
        logged = [v for _, v in scalars[f"train/{key}"]]
        assert logged == pytest.approx([r[key] for r in steps], rel=1e-6)  # float32 events
    val = [(s, v) for s, v in scalars["val/mAP_weighted"]]
    assert [s for s, _ in val] == [3, 6]
    assert [v for _, v in val] == pytest.approx([r["val"]["mAP_weighted"] for r in epochs])


def test_resume_neither_repeats_nor_loses_steps(tmp_path, data_dir):
    whole = tmp_path / "whole"
    _fit(data_dir, whole, ["epochs=3"])
    out = tmp_path / "split"
    _fit(data_dir, out, ["epochs=3", "stop_after_epoch=1"])
    # a run killed in epoch 2 after its last/ of epoch 1: two steps it will repeat are logged
    with open(out / "steps.csv", "a") as f:
        f.write("4,2,0.01,9.0,99.0,99.0,99.0\n5,2,0.01,9.0,99.0,99.0,99.0\n6,2,0.0")  # torn
    _fit(data_dir, out, ["epochs=3"], resume=True)
    resumed, uninterrupted = read_steps(out / "steps.csv"), read_steps(whole / "steps.csv")
    assert [r["step"] for r in resumed] == list(range(1, 10))
    for a, b in zip(resumed, uninterrupted, strict=True):
        assert (a["loss"], a["lr"], a["epoch"]) == (b["loss"], b["lr"], b["epoch"])


class _FakeWandb(types.ModuleType):
    """Records what `ravar` asks of wandb."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
        self.calls: list[tuple] = []

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        fake = self

        class Run:
            def log(self, values, step):
                fake.calls.append(("log", step, dict(values)))

            def finish(self):
                fake.calls.append(("finish",))

        return Run()


@pytest.mark.parametrize("mode", [None, "online"])
def test_wandb_gets_the_step_values_offline_by_default(tmp_path, data_dir, monkeypatch, mode):
    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    if mode is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", mode)
    out = tmp_path / "run"
    _fit(data_dir, out, ["epochs=1", "loggers=wandb"])
    (kind, init), *logs, finish = fake.calls
    assert kind == "init" and finish == ("finish",)
    assert init["mode"] == (mode or "offline") and init["dir"] == str(out)
    assert init["id"] == (out / "wandb_id").read_text().strip() and init["resume"] == "allow"
    assert init["config"]["model_name"] == NAME and init["config"]["loggers"] == "wandb"
    steps = read_steps(out / "steps.csv")  # csv is always written
    train = [c for c in logs if "train/loss" in c[2]]
    assert [c[1] for c in train] == [1, 2, 3]
    assert [c[2]["train/loss"] for c in train] == [r["loss"] for r in steps]
    [val] = [c for c in logs if "val/mIoU" in c[2]]
    assert val[1] == 3 and val[2]["val/mIoU"] == read_log(out / "metrics.jsonl")[0]["val"]["mIoU"]


def test_missing_package_and_unknown_logger_are_one_line(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed")
    base = ["train", "--model", NAME, "--data", str(data_dir), "--out", str(tmp_path / "r")]
    assert ravar_main([*base, "--logger", "csv", "--logger", "wandb"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "ravar: error: --logger wandb: the 'wandb' package is not installed "
        "(pip install 'ravar[track]', or pip install wandb)"
    )
    assert not (tmp_path / "r").exists()  # refused before anything was written
    with pytest.raises(LoggerError, match="unknown logger 'mlflow'; choose from csv"):
        parse_logger_names(["tensorboard,mlflow"])
    assert parse_logger_names(["tensorboard", "wandb,tensorboard"]) == (
        "csv",
        "tensorboard",
        "wandb",
    )


def test_one_epoch_run_plots_a_loss_curve_per_step(tmp_path, data_dir):
    out = tmp_path / "run"
    _fit(data_dir, out, ["epochs=1"])
    steps = read_steps(out / "steps.csv")
    axis, curves = loss_series(read_log(out / "metrics.jsonl"), steps)
    assert axis == "step" and list(curves) == ["loss", "action_bce", "box_mse"]
    assert curves["loss"] == ([1, 2, 3], [r["loss"] for r in steps])
    assert all(math.isfinite(v) for v in curves["loss"][1])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without a step log (runs of earlier versions): one point per epoch
    axis, curves = loss_series(read_log(out / "metrics.jsonl"), [])
    assert axis == "epoch" and curves["loss"][0] == [1]


def test_a_full_disk_while_logging_a_step_is_one_line_then_resumes(tmp_path, data_dir, monkeypatch):
    from ravar.engine import loggers as loggers_mod
    from ravar.engine.train import RunWriteError

    real = loggers_mod.CsvLogger.log_step

    def log_step(self, step, epoch, values):
        if step == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        real(self, step, epoch, values)

    monkeypatch.setattr(loggers_mod.CsvLogger, "log_step", log_step)
    out = tmp_path / "run"
    with pytest.raises(RunWriteError) as err:
        _fit(data_dir, out, ["epochs=2"])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{out / 'steps.csv'}: cannot write")
    assert "(epoch 1) is intact" in msg and "--resume" in msg
    monkeypatch.setattr(loggers_mod.CsvLogger, "log_step", real)
    _fit(data_dir, out, ["epochs=2"], resume=True)
    assert [r["step"] for r in read_steps(out / "steps.csv")] == [1, 2, 3, 4, 5, 6]
