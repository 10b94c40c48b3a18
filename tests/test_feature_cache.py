"""The feature cache: stores hold what the frozen backbones compute, training reads them with the
same results, and a store made by something else is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from ravar.cache import (
    CacheError,
    TextStore,
    VisualStore,
    attach_cache,
    build_cache,
    text_identity,
    visual_identity,
)
from ravar.cache.store import find_store, identity_key
from ravar.cli import main
from ravar.data.dataset import RAVARDataset, collate
from ravar.data.format import read_split, write_split
from ravar.engine.batch import flatten_clips
from ravar.engine.config import resolve_run_config
from ravar.engine.rng import seed_everything
from ravar.models.backbones.visual import tiny_hf_config
from ravar.models.registry import build_model, create_model
from ravar.util.io import temp_sibling

from builders import make_frames_dataset

FROZEN_VISUAL = {
    "model_name": "refatomnet_pp_tiny",
    "model": {
        "visual": {
            "kind": "hf",
            "hf_kind": "blip2",
            "hf_config": tiny_hf_config("blip2"),
            "frozen": True,
            "tokens_per_frame": None,
        },
        "location": {"appearance": False},
        "clip": {"size": [32, 32], "hflip_prob": 0.0, "temporal_jitter": False},
    },
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = make_frames_dataset(tmp_path_factory.mktemp("cache") / "data", times=(902, 903, 904))
    records = read_split(root, "val")
    records[0].text = "the person on the right holding a cup"  # a second sentence
    write_split(root, "test", records)
    return root


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "frozen.yaml"
    path.write_text(yaml.safe_dump(FROZEN_VISUAL))
    return path


def _model(config_file, *overrides, seed=0):
    run = resolve_run_config(None, config_file, list(overrides))
    seed_everything(seed)
    return build_model(run.family, run.model)


def _copy(data_dir, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(data_dir, dst, ignore=shutil.ignore_patterns("cache"))
    return dst


def test_stores_hold_what_the_backbones_compute(tmp_path, data_dir, config_file):
    data = _copy(data_dir, tmp_path)
    model = _model(config_file).eval()
    build_cache(data, model, ["val", "test"], dtype="float32", batch_size=4, say=lambda s: None)
    root = data / "cache"
    vfolder, _ = find_store(root, visual_identity(model, data))
    tfolder, _ = find_store(root, text_identity(model))
    assert vfolder is not None and tfolder is not None
    store = VisualStore(vfolder)
    assert sorted(store.splits) == ["test", "val"]
    ds = RAVARDataset(data, "test", model.config.clip)
    split = store.split("test")
    for i in range(len(ds)):
        item = ds[i]
        with torch.no_grad():
            want = model.visual(item["frames"][None])[0]  # [T, Q, C] computed now
        assert np.array_equal(split.frames[i][0], item["frame_indices"].numpy())
        assert split.image_size[i].tolist() == list(item["image_size"])
        got = torch.from_numpy(np.array(split.features(i)))[0]
        assert got.shape == want.shape == (8, 8, 32)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

    # text: every sentence and its mirrored form; a batch mixing a cached and an unknown
    # sentence equals the encoder's own output
    text = TextStore(tfolder)
    assert "the person on the right holding a cup" in text
    assert "the person on the left holding a cup" in text
    texts = ["the person on the right holding a cup", "someone nobody described", "the person"]
    with torch.no_grad():
        want = model.text(texts)
        model.text.attach_store(text)
        got = model.text(texts)
        model.text.attach_store(None)
    for name in ("tokens", "mask", "sentence", "keywords", "keyword_mask"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), atol=1e-5, rtol=1e-4)
    assert got.keyword_strings == want.keyword_strings


def test_dataset_reads_features_without_decoding_frames(tmp_path, data_dir, config_file):
    data = _copy(data_dir, tmp_path)
    model = _model(config_file)
    build_cache(data, model, ["val"], say=lambda s: None)
    ds = RAVARDataset(data, "val", model.config.clip)
    lines = attach_cache([model], [ds], data, "require")
    assert any("visual features of val" in line for line in lines)
    item = ds[1]
    assert "frames" not in item and item["visual_features"].dtype == torch.float16
    assert item["visual_features"].shape == (8, 8, 32)
    assert item["image_size"] == (48, 32)
    batch = collate([ds[0], ds[1]])
    out = model.eval()(batch)
    assert out.logits.shape == (2, 80) and torch.isfinite(out.logits).all()
    # a later build of another split keeps what was cached before (visual splits, sentences)
    build_cache(data, model, ["test"], say=lambda s: None)
    vfolder, _ = find_store(data / "cache", visual_identity(model, data))
    assert sorted(VisualStore(vfolder).splits) == ["test", "val"]
    kept = VisualStore(vfolder).split("val").features(1)[0]  # [T, Q, C] of clip 0
    assert np.array_equal(kept, item["visual_features"].numpy())
    tfolder, _ = find_store(data / "cache", text_identity(model))
    sentences = {r.text for split in ("val", "test") for r in read_split(data, split)}
    assert sentences <= set(TextStore(tfolder).rows)


def test_flatten_clips_handles_multi_clip_features():
    feats = torch.arange(2 * 3 * 4 * 5 * 6, dtype=torch.float32).view(2, 3, 4, 5, 6)
    flat, k = flatten_clips({"visual_features": feats, "labels": torch.zeros(2, 80)})
    assert k == 3 and flat["visual_features"].shape == (6, 4, 5, 6)
    assert torch.equal(flat["visual_features"][4], feats[1, 1])
    assert flat["labels"].shape == (6, 80)


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train"]["loss"] for r in rows]


def test_training_from_the_cache_matches_training_from_frames(tmp_path, data_dir, config_file):
    data = _copy(data_dir, tmp_path)
    assert main(["cache", str(data), "--config", str(config_file), "--dtype", "float32",
                 "--quiet"]) == 0  # fmt: skip
    common = ["train", "--data", str(data), "--config", str(config_file), "--epochs", "2",
              "--batch-size", "3", "--quiet"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "cached"), "--cache", "require"]) == 0
    assert main([*common, "--out", str(tmp_path / "frames"), "cache=off"]) == 0
    cached, frames = _losses(tmp_path / "cached"), _losses(tmp_path / "frames")
    assert len(cached) == 2 and cached[-1] < cached[0]
    np.testing.assert_allclose(cached, frames, rtol=1e-4)
    a = json.loads((tmp_path / "cached" / "test_metrics.json").read_text())["metrics"]
    b = json.loads((tmp_path / "frames" / "test_metrics.json").read_text())["metrics"]
    for key in ("mIoU", "mAP_weighted"):
        assert a[key] == pytest.approx(b[key], abs=1e-6)

    # ravar eval reads the store too, with the metrics of the frames; multi-clip needs its own
    best = str(tmp_path / "cached" / "best")
    evals = {}
    for mode in ("require", "off"):
        out = tmp_path / f"eval-{mode}"
        assert main(["eval", "--checkpoint", best, "--data", str(data), "--cache", mode,
                     "--out", str(out), "--quiet"]) == 0  # fmt: skip
        evals[mode] = json.loads((out / "metrics.json").read_text())["metrics"]
    assert evals["require"]["mAP_weighted"] == pytest.approx(evals["off"]["mAP_weighted"], abs=1e-6)
    assert main(["eval", "--checkpoint", best, "--data", str(data), "--cache", "require",
                 "--multi-clip", "2", "--quiet"]) == 1  # fmt: skip


def test_a_store_made_by_something_else_is_refused(tmp_path, data_dir, config_file, capsys):
    data = _copy(data_dir, tmp_path)
    assert main(["cache", str(data), "--config", str(config_file), "--split", "val",
                 "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    common = ["train", "--data", str(data), "--config", str(config_file), "--epochs", "1",
              "--quiet", "--out"]  # fmt: skip
    # other random weights (another seed), other clip settings: named in the refusal
    assert main([*common, str(tmp_path / "a"), "--seed", "1", "cache=require"]) == 1
    err = capsys.readouterr().err
    assert "no text feature store" not in err and "visual" in err and "weights" in err
    assert main([*common, str(tmp_path / "b"), "cache=require", "model.clip.num_frames=4"]) == 1
    assert "clip.num_frames: store 8, model 4" in capsys.readouterr().err
    # the store has no train split; pixel augmentations cannot be cached
    assert main([*common, str(tmp_path / "c"), "cache=require"]) == 1
    assert "no features for split 'train'" in capsys.readouterr().err
    assert main([*common, str(tmp_path / "d"), "cache=require", "model.clip.hflip_prob=0.5"]) == 1
    assert "model.clip.hflip_prob=0" in capsys.readouterr().err
    # auto: a run with augmentations reads the text store and says why not the visual one
    model = _model(config_file, "model.clip.hflip_prob=0.5")
    ds = RAVARDataset(data, "val", model.config.clip, train=True)
    lines = attach_cache([model], [ds], data, "auto")
    assert "text features" in lines[0] and "hflip_prob=0.5" in lines[1]
    assert ds.features is None
    # a changed annotation file is refused, not read with shifted rows
    records = read_split(data, "val")
    write_split(data, "val", records[::-1])
    ds = RAVARDataset(data, "val", _model(config_file).config.clip)
    with pytest.raises(CacheError, match="cached from another"):
        attach_cache([_model(config_file)], [ds], data, "auto")


def test_interrupted_builds_and_models_without_frozen_parts(
    tmp_path, data_dir, config_file, capsys
):
    data = _copy(data_dir, tmp_path)
    model = _model(config_file)
    ident = visual_identity(model, data)
    partial = temp_sibling(data / "cache" / identity_key(ident))
    partial.mkdir(parents=True)  # what a killed `ravar cache` leaves
    (partial / "junk.npy").write_bytes(b"")
    assert find_store(data / "cache", ident)[0] is None
    ds = RAVARDataset(data, "val", model.config.clip)
    with pytest.raises(CacheError, match="no text feature store under"):
        attach_cache([model], [ds], data, "require")
    # the tiny configs train their visual backbone: only the frozen MiniLM is cached
    tiny = create_model("refatomnet_pp_tiny")
    assert visual_identity(tiny, data) is None and text_identity(tiny) is not None
    assert main(["cache", str(data), "--model", "no_text_tiny", "--quiet"]) == 1
    assert "no frozen backbone" in capsys.readouterr().err
    assert main(["cache", str(data), "--model", "no_text_tiny", "--split", "nope"]) == 1
    assert "nope.jsonl is missing" in capsys.readouterr().err
