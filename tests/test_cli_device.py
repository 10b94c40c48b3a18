"""`--device`: one argument type for every command, any torch device string, one-line errors
for a malformed device or one this machine lacks, and the index kept down to the tensors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from ravar.cli import build_parser, main
from ravar.cli.argtypes import device_arg
from ravar.engine import distributed
from ravar.errors import RavarError
from ravar.inference.predictor import Predictor
from ravar.util.devices import check_device, resolve_device

from builders import write_video

DEVICE_COMMANDS = [("train",), ("eval",), ("predict",), ("serve",), ("cache",), ("data", "detect")]


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine without CUDA or MPS, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with two CUDA devices (nothing is put on them); records `set_device` calls."""
    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return chosen


def device_options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, --device action) of every command of `parser` that has one."""
    for action in parser._actions:
        if "--device" in action.option_strings:
            yield path, action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from device_options(sub, (*path, name))


def test_every_command_with_a_device_shares_one_argument_type():
    found = dict(device_options(build_parser()))
    assert sorted(found) == sorted(DEVICE_COMMANDS)
    assert {action.type for action in found.values()} == {device_arg}
    assert found[("data", "detect")].default == "cpu"
    assert {found[c].default for c in DEVICE_COMMANDS if c != ("data", "detect")} == {None}


def test_device_strings_are_parsed_and_normalised(two_gpus):
    assert device_arg("cpu") == "cpu"
    assert device_arg("cuda") == "cuda"
    assert device_arg("cuda:1") == "cuda:1"
    assert device_arg("cuda:0") == "cuda:0"
    for bad in ("gpu", "cuda:x", "cuda:-1", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="not a torch device"):
            device_arg(bad)


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", "--device cuda: CUDA is not available on this machine"),
        ("cuda:1", "--device cuda:1: CUDA is not available on this machine"),
        ("mps", "--device mps: MPS is not available on this machine"),
    ],
)
def test_an_unavailable_device_is_one_line_for_every_command(no_gpu, capsys, device, message):
    for command in DEVICE_COMMANDS:
        assert main([*command, "--device", device]) == 1
        err = capsys.readouterr().err
        assert err == f"ravar: error: {message}\n", command


def test_an_index_beyond_the_gpus_names_the_ones_there(two_gpus):
    with pytest.raises(RavarError) as info:
        check_device("cuda:2")
    assert str(info.value) == "--device cuda:2: this machine has 2 CUDA devices (cuda:0 to cuda:1)"


def test_a_malformed_device_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", "--device", "gpu"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --device: not a torch device: 'gpu' (e.g. cpu, cuda, cuda:1, mps)" in err
    assert "Traceback" not in err


def test_the_engine_keeps_the_gpu_index(two_gpus, monkeypatch):
    """train / eval: `cuda:1` is GPU 1 (not the current GPU), `cuda` is the rank's own GPU."""
    assert distributed.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert distributed.resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert distributed.resolve_device("cuda", local_rank=2) == torch.device("cuda", 0)
    assert distributed.resolve_device(None) == torch.device("cuda", 0)
    assert two_gpus == [torch.device("cuda", i) for i in (1, 1, 0, 0)]
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RavarError, match=r"--device cuda:1: under torchrun every rank"):
        distributed.resolve_device("cuda:1", local_rank=0)


def test_the_default_is_the_cpu_without_cuda(no_gpu):
    assert resolve_device(None) == torch.device("cpu")
    assert distributed.resolve_device(None) == torch.device("cpu")


def test_predict_runs_on_the_device_given(ckpt, tmp_path, monkeypatch):
    """The CPU run through the path a GPU index takes: the string reaches the Predictor, whose
    model and outputs are on that device."""
    seen: list[torch.device] = []
    original = Predictor.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append(self.device)
        seen.extend({p.device for p in self.model.parameters()})

    monkeypatch.setattr(Predictor, "__init__", spy)
    video = tmp_path / "clip.mp4"
    write_video(video, 30, fps=30, box=[0.125, 0.2, 0.375, 0.9])
    boxes = tmp_path / "boxes.json"
    dets = [{"time": 0.5, "box": [0.125, 0.2, 0.375, 0.9], "score": 1.0}]
    boxes.write_text(json.dumps({"units": "normalized", "detections": dets}))
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(ckpt), "--video", str(video), "--text", "the person",
            "--time", "0.5", "--boxes", str(boxes), "--out", str(out)]  # fmt: skip
    argv += ["--device", "cpu"]
    assert main(argv) == 0
    assert seen == [torch.device("cpu"), torch.device("cpu")]
    (result,) = json.loads((out / "predictions.json").read_text())["results"]
    assert len(result["probabilities"]) == 80 and Path(out / result["files"]["png"]).is_file()
