"""Progress lines when the output is not a terminal: `ravar.util.heartbeat` and `ravar train`."""

from __future__ import annotations

import importlib
import re

import pytest

import ravar.engine.train as train_mod
from ravar.engine.config import resolve_run_config
from ravar.engine.train import fit
from ravar.util.heartbeat import Heartbeat, format_duration
from test_engine_support import NAME, make_engine_dataset


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_at_most_every_period_and_only_built_when_said():
    clock, said, built = Clock(), [], []

    def line() -> str:
        built.append(clock.now)
        return f"at {clock.now:g}"

    beat = Heartbeat(said.append, every=30.0, clock=clock)
    for t in (110.0, 129.9, 130.0, 140.0, 159.9, 160.5, 161.0):
        clock.now = t
        beat.tick(line)
    assert said == ["at 130", "at 160.5"]  # 30 s after the start, then 30 s after that line
    assert built == [130.0, 160.5]  # the line is not built when nothing is said
    clock.now = 161.0
    assert beat.tick(line, force=True) and said[-1] == "at 161"
    assert beat.elapsed() == pytest.approx(61.0)
    with pytest.raises(ValueError, match="every"):
        Heartbeat(said.append, every=-1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3599, "59m59s"), (3720, "1h02m")],
)
def test_durations(seconds, text):
    assert format_duration(seconds) == text


def test_train_prints_progress_lines_into_a_log(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_mod, "PROGRESS_EVERY_S", 1e-9)  # a line after every batch
    data = make_engine_dataset(tmp_path / "ds")
    run = resolve_run_config(NAME, overrides=["batch_size=4", "epochs=2"])
    fit(run, data, tmp_path / "run", device="cpu")  # captured stdout: not a terminal
    lines = [
        m.groups()
        for m in re.finditer(
            r"epoch (\d)/2  step (\d+)/6  loss (\d+\.\d{4})  (\d+\.\d) clips/s  ETA (\S+)",
            capsys.readouterr().out,
        )
    ]
    assert [(e, s) for e, s, *_ in lines] == [
        ("1", "1"), ("1", "2"), ("1", "3"), ("2", "4"), ("2", "5"), ("2", "6"),
    ]  # fmt: skip
    assert lines[-1][-1] == "0s" and all(float(loss) > 0 for _, _, loss, _, _ in lines)


def test_quiet_runs_print_no_progress_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_mod, "PROGRESS_EVERY_S", 1e-9)
    data = make_engine_dataset(tmp_path / "ds")
    run = resolve_run_config(NAME, overrides=["batch_size=4", "epochs=1"])
    fit(run, data, tmp_path / "run", device="cpu", quiet=True)
    assert "clips/s  ETA" not in capsys.readouterr().out


def test_synth_generation_says_where_it_is(tmp_path, monkeypatch):
    gen = importlib.import_module("ravar.synth.generate")  # (ravar.synth.generate is a function)

    class EveryTick(Heartbeat):  # a line at every clip
        def __init__(self, say):
            super().__init__(say, every=1e-9)

    monkeypatch.setattr(gen, "Heartbeat", EveryTick)
    said: list[str] = []
    summary = gen.generate(
        tmp_path / "synth",
        preset="small",
        seed=0,
        splits=("val",),
        with_card=False,
        say=said.append,
    )
    clips = summary["counts"]["val"]["clips"]
    assert [line.split(",")[0] for line in said] == [
        f"  generating val: {n}/{clips} clips" for n in range(1, clips + 1)
    ]
