"""Checkpoint configs of older format versions are upgraded when read: a hand-written version-1
RefAtomNet checkpoint (saved before `referring_tokens` existed) loads with the post-fusion tokens
it was trained with, a new checkpoint round-trips with the new default, and a checkpoint of a
newer format version is refused with one line."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import save_file

from ravar.config import to_dict
from ravar.engine.checkpoint import (
    CheckpointError,
    load_model,
    read_checkpoint_config,
    save_checkpoint,
)
from ravar.engine.checkpoint_upgrade import FORMAT_VERSION, upgrade_config
from ravar.engine.config import run_config_from_checkpoint
from ravar.models.refatomnet import RefAtomNetConfig
from ravar.models.registry import create_model
from test_refatomnet import SCRATCH_TEXT, make_batch

NAME = "refatomnet_tiny"
SMALL = {**SCRATCH_TEXT, "dropout": 0.0, "dim": 32, "heads": 2, "location.hidden": 32}


def _logits(out) -> torch.Tensor:
    return out["logits"] if isinstance(out, dict) else out.logits


def _model(**changes):
    torch.manual_seed(0)
    return create_model(NAME, **SMALL, **changes).eval()


def _write_v1_checkpoint(folder, model, drop_key: bool = True):
    """A checkpoint as ravar wrote it in format version 1 before `referring_tokens` existed:
    no "backbones" key, the model config without the key."""
    folder.mkdir()
    weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = to_dict(model.config)
    if drop_key:
        del config["referring_tokens"]
    info = {
        "format": "ravar-checkpoint",
        "format_version": 1,
        "ravar_version": "0.1.0",
        "family": "refatomnet",
        "model_name": NAME,
        "model": config,
        "train": {"lr": 0.001},
        "epoch": 2,
        "step": 7,
        "metrics": None,
    }
    (folder / "config.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return folder


def test_the_default_is_the_pre_fusion_tokens():
    assert RefAtomNetConfig().referring_tokens == "streams"
    assert FORMAT_VERSION == 2


def test_a_version_1_checkpoint_without_the_key_loads_with_the_fused_tokens(tmp_path):
    fused = _model(referring_tokens="fused")
    path = _write_v1_checkpoint(tmp_path / "old", fused)
    info = read_checkpoint_config(path)
    assert info["format_version"] == FORMAT_VERSION
    assert info["model"]["referring_tokens"] == "fused"
    loaded = load_model(path)
    assert loaded.config.referring_tokens == "fused"
    assert run_config_from_checkpoint(path).model.referring_tokens == "fused"  # --resume

    streams = _model(referring_tokens="streams")
    streams.load_state_dict(fused.state_dict())
    batch = make_batch()
    with torch.no_grad():
        got, want, other = _logits(loaded(batch)), _logits(fused(batch)), _logits(streams(batch))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.allclose(got, other, atol=1e-5)  # the key changes what the model computes


def test_a_version_1_checkpoint_with_the_key_keeps_its_value(tmp_path):
    path = _write_v1_checkpoint(tmp_path / "old", _model(), drop_key=False)
    assert load_model(path).config.referring_tokens == "streams"


def test_a_new_checkpoint_round_trips_with_the_new_default(tmp_path, monkeypatch):
    model = _model()
    path = save_checkpoint(tmp_path / "new", model, model_name=NAME)
    saved = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert saved["format_version"] == FORMAT_VERSION == 2
    assert saved["model"]["referring_tokens"] == "streams"
    # a current config that lacks the key (written by hand) takes today's default
    del saved["model"]["referring_tokens"]
    (path / "config.json").write_text(json.dumps(saved), encoding="utf-8")
    loaded = load_model(path)
    assert loaded.config == model.config
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(_logits(loaded(batch)), _logits(model(batch)), rtol=0, atol=0)


@pytest.mark.parametrize(
    "version,culprit",
    [(FORMAT_VERSION + 1, "newer ravar"), (0, "from 1 to"), ("2", "'2'"), (True, "True")],
)
def test_other_format_versions_are_refused_with_one_line(tmp_path, version, culprit):
    path = save_checkpoint(tmp_path / "ck", _model(), model_name=NAME)
    info = json.loads((path / "config.json").read_text(encoding="utf-8"))
    (path / "config.json").write_text(json.dumps({**info, "format_version": version}))
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = str(err.value)
    assert "\n" not in msg and "config.json" in msg and "'format_version'" in msg, msg
    assert culprit in msg, msg


def test_upgrade_config_steps():
    old = {
        "format_version": 1,
        "family": "refatomnet",
        "model": {"referring": True, "dim": 8},
        "train": None,
    }
    before = copy.deepcopy(old)
    new = upgrade_config(old)
    assert old == before  # the argument is left as it was
    assert new == {
        **old,
        "format_version": 2,
        "model": {**old["model"], "referring_tokens": "fused"},
    }
    other = {"format_version": 1, "family": "refatomnet_pp", "model": {"dim": 8}}
    assert upgrade_config(other) == {**other, "format_version": 2}  # other families untouched
    current = {"format_version": 2, "family": "refatomnet", "model": {"dim": 8}}
    assert upgrade_config(current) == current  # the current version is not changed
