"""The papers' recipes in configs/: each file parses, its values reach the TrainConfig and the model
config, and `ravar train --config FILE` builds the model with random weights and trains a step on
a tiny stand-in. Only what a CPU cannot run in seconds is shrunk: the BLIP-2 (a tiny random one,
for the visual backbone and the Q-Former text path), the frame size, the batch; every other recipe
value is kept and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from blip2_builders import tiny_blip2_config, write_vocab
from ravar.config import to_dict
from ravar.engine.config import RUN_KEYS, flatten_keys, resolve_run_config
from ravar.engine.runlog import read_log
from ravar.engine.train import fit
from ravar.models.registry import build_model
from test_engine_support import cli_main

from builders import make_frames_dataset

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
PAPER_FILES = {"refatomnet_refava.yaml", "refatomnet_pp_refava_pp.yaml"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_frames_dataset(tmp_path_factory.mktemp("recipes") / "ds", fps=5.0)


def _recipe(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The file's own (train keys, flat model keys), read without ravar's resolver."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    train = {k: v for k, v in raw.items() if k not in RUN_KEYS}
    model = flatten_keys(raw.get("model") or {}, {}, prefix="")
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v

    walk(model, "")
    return train, flat


def _lookup(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d[part]
    return d


def _assert_recipe_kept(run: Any, train: dict, model: dict, shrunk: set[str]) -> None:
    for key, want in train.items():
        if key in shrunk:
            continue
        got = getattr(run.train, key)
        got = list(got) if isinstance(got, tuple) else got
        assert got == want, f"train key {key}: {got!r} != recipe {want!r}"
    plain = to_dict(run.model)
    for key, want in model.items():
        if f"model.{key}" in shrunk:
            continue
        assert _lookup(plain, key) == want, f"model key {key}"


def _cpu_overrides(run: Any, vocab: Path) -> dict[str, Any]:
    """What a CPU cannot run in seconds: the paper-size BLIP-2, 224 px frames, the batch."""
    over: dict[str, Any] = {
        "batch_size": 2,
        "workers": 0,
        "max_steps": 1,
        "model.visual.hf_config": tiny_blip2_config(),
        "model.clip.size": [32, 32],
    }
    text = getattr(run.model, "text", None)
    if text is not None and text.kind == "qformer":
        over["model.text.hf_config"] = tiny_blip2_config()
        over["model.text.tokenizer_path"] = str(vocab)
    return over


def test_the_paper_recipes_are_all_there() -> None:
    names = {p.name for p in CONFIGS}
    assert names >= PAPER_FILES and len(names) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_values_reach_the_run_config(path: Path) -> None:
    train, model = _recipe(path)
    run = resolve_run_config(None, path)
    assert run.model_name == yaml.safe_load(path.read_text())["model_name"]
    _assert_recipe_kept(run, train, model, shrunk=set())
    # the comments name a source for every value
    for line in path.read_text().splitlines():
        body = line.split("#")[0].strip()
        if body and not body.endswith(":") and not body.startswith("model_name"):
            assert "#" in line or _continued(path, line), f"{path.name}: no source for {line!r}"


def _continued(path: Path, line: str) -> bool:
    """Values under a commented `key:` block (e.g. the loss weights) share its comment."""
    lines = path.read_text().splitlines()
    i = lines.index(line)
    indent = len(line) - len(line.lstrip())
    for prev in reversed(lines[:i]):
        if prev.strip() and len(prev) - len(prev.lstrip()) < indent:
            return "#" in prev or any(
                "#" in p for p in lines[lines.index(prev) + 1 : i] if p.strip().startswith("#")
            )
    return False


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_builds_and_trains_a_step(path: Path, tmp_path: Path, data_dir: Path) -> None:
    train, model = _recipe(path)
    vocab = write_vocab(tmp_path / "vocab.txt")
    over = _cpu_overrides(resolve_run_config(None, path), vocab)
    run = resolve_run_config(None, path, over)
    _assert_recipe_kept(run, train, model, shrunk=set(over))
    net = build_model(run.family, run.model)
    if run.model.visual.frozen == "vision":  # RefAtomNet: the ViT frozen, the Q-Former trains
        blip = net.visual.model
        frozen = sum(p.numel() for p in blip.vision_model.parameters())
        text = sum(p.numel() for p in net.text.parameters())  # the frozen text path
        total, trainable = net.param_counts()
        assert trainable == total - frozen - text
    result = fit(run, data_dir, tmp_path / "run", device="cpu", quiet=True)
    assert result.finished and result.step == 1
    rows = read_log(tmp_path / "run" / "metrics.jsonl")
    assert rows[-1]["lr"] <= run.train.lr and rows[-1]["train"]["loss"] > 0


@pytest.mark.slow
def test_ravar_train_runs_a_recipe_file(tmp_path: Path, data_dir: Path) -> None:
    path = next(p for p in CONFIGS if p.name == "refatomnet_refava.yaml")
    vocab = write_vocab(tmp_path / "vocab.txt")
    over = _cpu_overrides(resolve_run_config(None, path), vocab)
    args = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in over.items()]
    out = tmp_path / "run"
    argv = ["train", "--config", str(path), "--data", str(data_dir), "--out", str(out)]
    assert cli_main([*argv, *args, "--device", "cpu", "--quiet"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["lr"], saved["betas"], saved["eps"], saved["weight_decay"]) == (
        1e-4, [0.9, 0.98], 1e-6, 0.2,
    )  # fmt: skip
    assert (saved["epochs"], saved["schedule"], saved["warmup_fraction"]) == (
        40,
        "bert_cosine",
        0.3,
    )
    assert saved["model"]["visual"]["frozen"] == "vision"
    assert saved["model"]["text"]["kind"] == "qformer"


def test_bert_cosine_is_bertadams_warmup_cosine() -> None:
    import math

    from ravar.engine.schedule import lr_factor

    total, warmup = 100, 30  # warmup_proportion 0.3 of 100 steps
    assert lr_factor(9, total, warmup, "bert_cosine") == pytest.approx(10 / 30)
    # after warmup: 0.5 * (1 + cos(pi * x)) of the whole run's progress x, so it drops at x = 0.3
    for step in (30, 55, 99):
        want = 0.5 * (1 + math.cos(math.pi * step / total))
        assert lr_factor(step, total, warmup, "bert_cosine") == pytest.approx(want)
    assert (
        lr_factor(30, total, warmup, "bert_cosine")
        < 0.8
        < lr_factor(29, total, warmup, "bert_cosine")
    )
