"""`ravar predict` under faults: an output folder that cannot take files is refused before the
model loads, a write that fails is one line naming the file, and a checkpoint whose weights are
NaN is refused naming the checkpoint and the weight instead of crashing the drawing."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import ravar.util.io as io_mod
from ravar.cli import main
from ravar.errors import PredictError
from ravar.inference import predictor as predictor_mod

from builders import write_video

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, 40, fps=30, box=[0.125, 0.2, 0.375, 0.9])
    return path


def _argv(ckpt: Path, video: Path, out: Path) -> list[str]:
    return ["predict", "--checkpoint", str(ckpt), "--video", str(video), "--text", "the man",
            "--time", "0.5", "--out", str(out)]  # fmt: skip


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ravar: error: ") and "Traceback" not in err
    return lines[0][len("ravar: error: ") :]


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the checkpoint is loaded (the check must come first)."""

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(predictor_mod.Predictor, "from_checkpoint", loaded)


def test_an_unwritable_out_folder_is_refused_before_the_model_loads(
    ckpt, video, tmp_path, capsys, monkeypatch, no_model_load
):
    out = tmp_path / "out"
    out.mkdir()
    real_open = open

    def refusing_open(file, *args, **kwargs):  # the folder refuses new files (EACCES)
        if Path(file).parent == out:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io_mod, "open", refusing_open, raising=False)
    assert main(_argv(ckpt, video, out)) == 1
    line = _one_line(capsys)
    assert line == f"--out {out}: cannot write into the folder (Permission denied (EACCES))"
    assert list(out.iterdir()) == []  # the probe is not left behind


def test_an_out_path_under_a_file_is_refused_before_the_model_loads(
    ckpt, video, tmp_path, capsys, no_model_load
):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out"
    assert main(_argv(ckpt, video, out)) == 1
    assert _one_line(capsys) == f"--out {out}: cannot create the folder (Not a directory (ENOTDIR))"


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders")
def test_a_read_only_out_folder(ckpt, video, tmp_path, capsys, no_model_load):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(_argv(ckpt, video, out)) == 1
    finally:
        out.chmod(0o755)
    line = _one_line(capsys)
    assert line == f"--out {out}: cannot write into the folder (Permission denied (EACCES))"


def test_disk_full_while_drawing_names_the_file(ckpt, video, tmp_path, capsys, monkeypatch):
    from ravar.inference import render

    def full(frame, results, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(render, "write_keyframe_png", full)
    out = tmp_path / "out"
    assert main(_argv(ckpt, video, out)) == 1
    line = _one_line(capsys)
    assert line == f"{out / 'keyframe_0.500.png'}: cannot write (No space left on device (ENOSPC))"


def _nan_checkpoint(ckpt: Path, folder: Path, names: str) -> Path:
    """A copy of `ckpt` whose float weights whose names contain `names` are all NaN ("" for
    every weight); returns it."""
    bad = folder / "nan"
    shutil.copytree(ckpt, bad)
    file = bad / "model.safetensors"
    weights = load_file(str(file))
    hit = [k for k, v in weights.items() if v.is_floating_point() and names in k]
    assert hit
    for k in hit:
        weights[k] = torch.full_like(weights[k], float("nan"))
    save_file(weights, str(file), metadata={"format": "pt"})
    return bad


def test_a_checkpoint_with_nan_weights_is_one_line_naming_it(ckpt, video, tmp_path, capsys):
    bad = _nan_checkpoint(ckpt, tmp_path, "")
    out = tmp_path / "out"
    assert main(_argv(bad, video, out)) == 1
    line = _one_line(capsys)
    assert line.startswith(f"{bad}: the model gives a non-finite box or action probabilities at ")
    assert "t=0.50 s" in line and "holds NaN/inf values" in line
    import ravar

    state = ravar.load(ckpt).model.state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    assert f"its weight {first!r} holds NaN/inf values" in line
    assert sorted(p.name for p in out.iterdir()) == []  # nothing drawn, no predictions.json


def test_python_api_refuses_nan_results(ckpt, video, tmp_path):
    import ravar

    bad = _nan_checkpoint(ckpt, tmp_path, "head")  # only the heads: the output is NaN
    predictor = ravar.load(bad)
    head = next(k for k in predictor.model.state_dict() if "head" in k)
    with pytest.raises(PredictError) as err:
        predictor.predict(video, "the man", time=[0.2, 0.5])
    message = str(err.value)
    assert message.startswith(f"{bad}: the model gives a non-finite box")
    assert "t=0.20 s" in message and f"its weight {head!r} holds NaN/inf values" in message
    # the same model with finite weights predicts
    assert len(ravar.load(ckpt).predict(video, "the man", time=[0.2, 0.5])) == 2
