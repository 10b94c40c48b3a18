"""An untrusted checkpoint config.json describing an absurd model (dim 10,000,000, a billion
layers, a huge vocabulary) is refused with one line before any memory is allocated for it: the
architecture is built on the meta device and checked against the weights file's header."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ravar.engine.checkpoint import CheckpointError, load_model, save_checkpoint
from ravar.models.registry import create_model, model_config, model_family
from ravar.models.size_guard import ModelSizeError, meta_model, size_limit

SRC = Path(__file__).resolve().parents[1] / "src"
MEMORY_LIMIT = 4 * 1024**3  # address space of the loading process: a regression fails, not swaps
SCRATCH_TEXT = {"text.kind": "scratch"}  # late_fusion_tiny without the packaged MiniLM

# (config.json "model" key path, value, words the error must hold)
ABSURD = [
    (("dim",), 10_000_000, "too large to build"),
    (("text", "vocab_size"), 10**9, "too large to build"),
    (("text", "max_length"), 10**9, "too large to build"),
    (("visual", "depth"), 10**9, "MAX_TENSORS"),
    (("visual", "image_size"), [10**6, 10**6], "too large to build"),
    (("visual", "num_frames"), 10**9, "config.json"),
    (("dim",), 130, "model.safetensors: weight"),  # small, but not the weights' shape
]


def _elements(module: nn.Module) -> int:
    return sum(t.numel() for t in module.state_dict().values())


def test_meta_model_has_the_real_models_shapes_without_memory():
    name = "late_fusion_tiny"
    cfg = model_config(name, **SCRATCH_TEXT)
    real = create_model(name, **SCRATCH_TEXT)
    meta = meta_model(model_family(name), cfg)
    assert all(t.is_meta for t in meta.state_dict().values())
    shapes = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in real.state_dict().items()}
    assert _elements(meta) == _elements(real) > 1_000_000


def test_size_limit_refuses_past_the_limits():
    with size_limit(max_elements=1000, max_tensors=10):
        nn.Linear(10, 10)  # 110 elements, 2 tensors
        with pytest.raises(ModelSizeError, match="at least 1110 parameters"):
            nn.Linear(1000, 1)  # 1000 + 1 more
    with size_limit(max_elements=10**9, max_tensors=5), pytest.raises(ModelSizeError, match="5"):
        nn.Sequential(*[nn.Linear(2, 2) for _ in range(3)])
    nn.Linear(1000, 1000)  # outside the context: no limit


def _absurd_checkpoint(folder: Path, keys: tuple[str, ...], value: object) -> Path:
    model = create_model("late_fusion_tiny", **SCRATCH_TEXT)
    path = save_checkpoint(folder, model, model_name="late_fusion_tiny")
    info = json.loads((path / "config.json").read_text(encoding="utf-8"))
    node = info["model"]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    (path / "config.json").write_text(json.dumps(info), encoding="utf-8")
    return path


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


LOADER = textwrap.dedent(
    """
    import json, resource, sys, time
    from ravar.engine.checkpoint import CheckpointError, load_model
    out = []
    for path in sys.argv[1:]:
        start = time.perf_counter()
        try:
            load_model(path)
            out.append({"error": None})
        except CheckpointError as e:
            out.append({"error": str(e), "seconds": time.perf_counter() - start})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"results": out, "peak": peak}))
    """
)


@pytest.mark.slow
def test_absurd_configs_are_refused_quickly_with_little_memory(tmp_path):
    paths = [
        _absurd_checkpoint(tmp_path / f"ck{i}", keys, value)
        for i, (keys, value, _) in enumerate(ABSURD)
    ]
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, *map(str, paths)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        preexec_fn=_limit_memory,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for (keys, value, words), path, got in zip(ABSURD, paths, report["results"], strict=True):
        error = got["error"]
        assert error is not None, f"model.{'.'.join(keys)}={value} was loaded"
        assert "\n" not in error and words in error, error
        assert str(path) in error
        assert got["seconds"] < 30
    assert report["peak"] < 2 * 1024**3  # torch itself takes a few hundred MB


@pytest.mark.slow
def test_cli_refuses_an_absurd_checkpoint_with_one_line(tmp_path):
    path = _absurd_checkpoint(tmp_path / "ck", ("dim",), 10_000_000)
    proc = subprocess.run(
        [sys.executable, "-m", "ravar", "checkpoint", "strip", str(path)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        preexec_fn=_limit_memory,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ravar: error: {path / 'config.json'}: ")
    assert "over the limit of 4000000000" in lines[0]


def test_a_checkpoint_within_the_limits_still_loads(tmp_path):
    model = create_model("late_fusion_tiny", **SCRATCH_TEXT)
    path = save_checkpoint(tmp_path / "ck", model, model_name="late_fusion_tiny")
    loaded = load_model(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    save_file({"x": torch.zeros(2)}, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="model.safetensors: weights do not fit"):
        load_model(path)
