"""Reproducible CPU training: with torch's default thread count two identical runs of a model
with LayerNorms give identical weights, and the train key `deterministic: true` computes on one
thread (the bits of a one-thread run, whatever the machine's core count), restoring the thread
count afterwards."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from ravar.engine.config import resolve_run_config
from ravar.engine.train import fit
from test_engine_support import make_engine_dataset

# refatomnet_tiny (LayerNorms in its streams and fusion) with a small scratch text encoder
SMALL = ["model.text.kind=scratch", "model.text.frozen=false", "model.text.dim=64"]
SMALL += ["model.text.depth=1", "allow_missing_detections=true"]
RUN = ["epochs=1", "max_steps=2", "batch_size=4", "lr=0.01", "model.clip.num_frames=2"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_engine_dataset(tmp_path_factory.mktemp("det") / "ds", test_size=None)


def _weights(data_dir, out, extra=()):
    run = resolve_run_config("refatomnet_tiny", overrides=[*SMALL, *RUN, *extra])
    fit(run, data_dir, out, device="cpu", quiet=True)
    return load_file(str(out / "last" / "model.safetensors"))


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def threads():
    """Set torch's intra-op thread count for a test; restored after it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.slow
def test_same_seed_same_weights_with_the_default_threads(tmp_path, data_dir):
    assert torch.get_num_threads() >= 1  # torch's default: one per core
    a = _weights(data_dir, tmp_path / "a")
    b = _weights(data_dir, tmp_path / "b")
    assert any("norm" in k for k in a)  # the model has LayerNorms
    assert _same(a, b)


@pytest.mark.slow
def test_deterministic_key_runs_on_one_thread(tmp_path, data_dir, threads, monkeypatch):
    threads(1)
    one = _weights(data_dir, tmp_path / "one")
    threads(2)
    seen = []
    real = torch.nn.LayerNorm.forward

    def forward(self, x):
        seen.append(torch.get_num_threads())
        return real(self, x)

    monkeypatch.setattr(torch.nn.LayerNorm, "forward", forward)
    det = _weights(data_dir, tmp_path / "det", ["deterministic=true"])
    assert seen and set(seen) == {1}  # every step computed on one thread
    assert torch.get_num_threads() == 2  # restored
    assert _same(one, det)  # the bits of a one-thread run
    seen.clear()
    _weights(data_dir, tmp_path / "default")
    assert set(seen) == {2}  # without the key: torch's thread count
