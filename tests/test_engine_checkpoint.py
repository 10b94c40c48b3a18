"""The checkpoint format: round trip through config.json alone, one-line errors for damaged or
foreign checkpoints, safe trainer-state loading, and atomic replacement."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from ravar.data.dataset import RAVARDataset, collate
from ravar.engine import checkpoint as ckpt
from ravar.engine.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_model,
    load_trainer_state,
    read_checkpoint_config,
    recover_checkpoint,
    save_checkpoint,
)
from test_engine_support import NAME, TinyConfig, TinyModel, make_engine_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_engine_dataset(tmp_path_factory.mktemp("ckpt") / "ds")


def _model(seed: int = 0, **kw) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel(TinyConfig(**kw)).eval()


def _batch(data_dir, model) -> dict:
    ds = RAVARDataset(data_dir, "val", model.config.clip)
    return collate([ds[i] for i in range(len(ds))])


def _one_line_naming(err: pytest.ExceptionInfo, name: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert name in msg, msg


def test_round_trip_gives_identical_outputs(tmp_path, data_dir):
    model = _model(dim=12, dropout=0.3)
    path = save_checkpoint(
        tmp_path / "ck",
        model,
        model_name=NAME,
        train={"lr": 0.1},
        epoch=3,
        step=9,
        metrics={"mAP_weighted": 0.5, "AUROC_macro": float("nan")},
    )
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    info = json.loads((path / "config.json").read_text())
    assert info["format"] == "ravar-checkpoint" and info["format_version"] == ckpt.FORMAT_VERSION
    assert (info["family"], info["model_name"], info["epoch"], info["step"]) == (NAME, NAME, 3, 9)
    assert info["model"]["dim"] == 12 and info["model"]["clip"]["num_frames"] == 2
    assert info["metrics"] == {"mAP_weighted": 0.5, "AUROC_macro": None}
    assert info["train"] == {"lr": 0.1} and "ravar_version" in info

    loaded = load_model(path)
    assert isinstance(loaded, TinyModel) and not loaded.training
    assert loaded.config == model.config
    batch = _batch(data_dir, model)
    with torch.no_grad():
        a, b = model(batch), loaded(batch)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.boxes, b.boxes)
    # a differently initialised model really gives other outputs (the comparison can fail)
    with torch.no_grad():
        other = _model(seed=1, dim=12)(batch)
    assert not torch.equal(other.logits, a.logits)


def test_trainer_state_round_trip_with_weights_only(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(
        {
            "frames": torch.zeros(1, 2, 3, 4, 4),
            "keyframe": torch.zeros(1, 3, 4, 4),
            "text": ["a b"],
        }
    ).logits.sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "epoch": 2, "rng": [torch.get_rng_state()]}
    path = save_checkpoint(tmp_path / "last", model, model_name=NAME, trainer_state=state)
    got = load_trainer_state(path)
    assert got["epoch"] == 2 and torch.equal(got["rng"][0], state["rng"][0])
    exp_avg = got["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(exp_avg, opt.state_dict()["state"][0]["exp_avg"])


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_trainer_state_that_is_not_plain_data_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "last", _model(), model_name=NAME, trainer_state={"a": 1})
    with open(path / "trainer_state.pt", "wb") as f:
        pickle.dump({"x": Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError) as err:
        load_trainer_state(path)
    _one_line_naming(err, "trainer_state.pt")


def test_missing_trainer_state_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "best", _model(), model_name=NAME)
    with pytest.raises(CheckpointError) as err:
        load_trainer_state(path)
    _one_line_naming(err, "trainer_state.pt")


@pytest.mark.parametrize(
    "damage,culprit",
    [
        ("truncate_weights", "model.safetensors"),
        ("garbage_weights", "model.safetensors"),
        ("delete_weights", "model.safetensors"),
        ("delete_config", "config.json"),
        ("bad_json", "config.json"),
        ("version", "format_version"),
        ("format", "'format'"),
        ("family", "config.json"),
        ("shape", "text.weight"),
        ("dir_missing", "nowhere"),
    ],
)
def test_damaged_checkpoints_give_one_line_errors(tmp_path, damage, culprit):
    path = save_checkpoint(tmp_path / "ck", _model(), model_name=NAME)
    weights, config = path / "model.safetensors", path / "config.json"
    info = json.loads(config.read_text())
    if damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "garbage_weights":
        weights.write_bytes(b"\xff" * 64)
    elif damage == "delete_weights":
        weights.unlink()
    elif damage == "delete_config":
        config.unlink()
    elif damage == "bad_json":
        config.write_text("{not json")
    elif damage == "version":
        config.write_text(json.dumps({**info, "format_version": ckpt.FORMAT_VERSION + 1}))
    elif damage == "format":
        config.write_text(json.dumps({**info, "format": "something-else"}))
    elif damage == "family":
        config.write_text(json.dumps({**info, "family": "no_such_family"}))
    elif damage == "shape":
        config.write_text(json.dumps({**info, "model": {**info["model"], "dim": 8}}))
    elif damage == "dir_missing":
        path = tmp_path / "nowhere"
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    _one_line_naming(err, culprit)
    assert str(path.name) in str(err.value) or damage == "version"


def test_interrupted_swap_keeps_the_previous_checkpoint(tmp_path, monkeypatch, data_dir):
    first = _model(seed=0)
    path = save_checkpoint(tmp_path / "last", first, model_name=NAME, epoch=1)

    def die(stage, name, epoch):
        if stage == "swap":
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ckpt, "STAGE_CALLBACKS", [die])
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _model(seed=1), model_name=NAME, epoch=2)
    assert not path.exists()  # the moment between the two renames
    assert find_checkpoint(path).name == ".last.old"
    assert read_checkpoint_config(path)["epoch"] == 1
    batch = _batch(data_dir, first)
    with torch.no_grad():
        assert torch.equal(load_model(path)(batch).logits, first(batch).logits)
    assert recover_checkpoint(path) and path.is_dir()
    monkeypatch.undo()
    save_checkpoint(path, _model(seed=1), model_name=NAME, epoch=2)
    assert read_checkpoint_config(path)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temp or old dirs left


def test_interrupted_write_leaves_the_old_checkpoint_in_place(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last", _model(), model_name=NAME, epoch=1)

    def die(stage, name, epoch):
        if stage == "write":
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ckpt, "STAGE_CALLBACKS", [die])
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _model(seed=1), model_name=NAME, epoch=2)
    assert read_checkpoint_config(path)["epoch"] == 1
    assert any(p.name.startswith(".last.tmp-") for p in tmp_path.iterdir())
    monkeypatch.undo()
    save_checkpoint(path, _model(seed=1), model_name=NAME, epoch=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
