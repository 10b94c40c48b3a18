"""BLIP-2 as the papers use it: what `VisualConfig.frozen` freezes (all / vision / none), the
Q-Former text path as a text encoder, and pointing a run config at a local BLIP-2 folder with one
key. Tiny random BLIP-2 models saved to temp folders: no network."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from blip2_builders import save_tiny_blip2, tiny_blip2_config, write_vocab
from ravar.config import ConfigError, from_dict
from ravar.engine.config import resolve_run_config
from ravar.models.backbones import TextConfig, VisualConfig, build_text, build_visual


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def blip2_dir(tmp_path_factory):
    return save_tiny_blip2(tmp_path_factory.mktemp("blip2") / "blip2")


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _tiny_visual(frozen) -> object:
    return build_visual(
        VisualConfig(kind="hf", hf_kind="blip2", hf_config=tiny_blip2_config(), frozen=frozen)
    )


@pytest.mark.parametrize("frozen", ["all", "vision", "none"])
def test_trainable_parameters_are_those_of_the_unfrozen_sub_modules(frozen: str) -> None:
    visual = _tiny_visual(frozen)
    blip = visual.model
    vit, qformer = _numel(blip.vision_model), _numel(blip.qformer)
    queries = blip.query_tokens.numel()
    assert _numel(visual) == vit + qformer + queries  # nothing else in the backbone
    expected = {"all": 0, "vision": qformer + queries, "none": vit + qformer + queries}[frozen]
    assert _trainable(visual) == expected
    part = {"all": blip, "vision": blip.vision_model, "none": None}[frozen]
    assert visual.frozen_part is part


def test_frozen_vision_sends_gradients_to_the_qformer_and_not_the_vit() -> None:
    visual = _tiny_visual("vision")
    visual.train()
    assert not visual.model.vision_model.training and visual.model.qformer.training
    visual(torch.rand(2, 3, 3, 32, 32)).square().mean().backward()  # [B, T, Q, C]
    qformer_grads = [p.grad for p in visual.model.qformer.parameters()]
    assert visual.model.query_tokens.grad is not None and visual.model.query_tokens.grad.abs().sum()
    assert any(g is not None and g.abs().sum() > 0 for g in qformer_grads)
    assert all(p.grad is None for p in visual.model.vision_model.parameters())


def test_frozen_booleans_of_older_configs_and_bad_values() -> None:
    assert from_dict(VisualConfig, {"frozen": True}).frozen == "all"
    assert from_dict(VisualConfig, {"frozen": False}).frozen == "none"
    assert VisualConfig().frozen == "none"
    with pytest.raises(ConfigError, match="frozen='vision'.*no Q-Former"):
        VisualConfig(kind="scratch", frozen="vision")
    with pytest.raises(ConfigError, match="frozen"):
        from_dict(VisualConfig, {"frozen": "half"})


def test_refatomnet_with_frozen_vit_trains_its_qformer(blip2_dir) -> None:
    from ravar.models import create_model

    model = create_model(
        "refatomnet_tiny",
        **{
            "visual": VisualConfig(kind="hf", hf_kind="blip2", hf_name_or_path=str(blip2_dir)),
            "visual.frozen": "vision",
            "text.kind": "scratch",
            "text.frozen": False,
            "text.dim": 32,
        },
    )
    total, trainable = model.param_counts()
    vit = _numel(model.visual.model.vision_model)
    assert total == _numel(model) and trainable == total - vit


def test_qformer_text_matches_the_hf_text_model_of_the_same_folder(blip2_dir) -> None:
    from transformers import Blip2TextModelWithProjection

    text = build_text(TextConfig(kind="qformer", hf_name_or_path=str(blip2_dir), frozen=True))
    assert text.dim == 32 and _trainable(text) == 0
    feats = text(["the man in a red shirt", "a woman on the left"])
    assert feats.tokens.shape[-1] == 32
    assert feats.keyword_strings == [["man", "red", "shirt"], ["woman", "left"]]
    reference = Blip2TextModelWithProjection.from_pretrained(blip2_dir).eval()
    enc = text.tokenizer(["the man in a red shirt"], return_tensors="pt")
    with torch.no_grad():
        want = reference(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
        ).last_hidden_state  # [1, L, C]
    torch.testing.assert_close(feats.tokens[:1, : want.shape[1]], want)


def test_qformer_text_from_a_config_and_a_vocab_file_trains(tmp_path) -> None:
    vocab = write_vocab(tmp_path / "vocab.txt")
    text = build_text(
        TextConfig(kind="qformer", hf_config=tiny_blip2_config(), tokenizer_path=str(vocab))
    )
    text.train()
    text(["the person in white"]).sentence.sum().backward()
    assert text.model.embeddings.word_embeddings.weight.grad is not None


def test_qformer_text_refuses_a_checkpoint_without_the_text_path(tmp_path, blip2_dir) -> None:
    folder = tmp_path / "query_only"
    folder.mkdir()
    for f in blip2_dir.iterdir():
        if f.name != "model.safetensors":
            (folder / f.name).write_bytes(f.read_bytes())
    state = load_file(str(blip2_dir / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("embeddings.")},
              str(folder / "model.safetensors"))  # fmt: skip
    with pytest.raises(ConfigError, match="no Q-Former text path.*blip2-itm-vit-g"):
        build_text(TextConfig(kind="qformer", hf_name_or_path=str(folder)))
    with pytest.raises(ConfigError, match="exactly one"):
        TextConfig(kind="qformer", hf_name_or_path=str(folder), hf_config=tiny_blip2_config())
    with pytest.raises(ConfigError, match="needs hf_name_or_path: the local BLIP-2 folder"):
        build_text(TextConfig(kind="qformer"))  # a recipe not yet pointed at its weights


def test_one_key_points_a_paper_config_at_a_local_blip2(tmp_path, blip2_dir) -> None:
    over = [f"model.visual.hf_name_or_path={blip2_dir}"]
    run = resolve_run_config("refatomnet_base", overrides=over)
    assert run.model.visual.hf_name_or_path == str(blip2_dir)
    assert run.model.visual.hf_config is None  # the folder's config wins over the named default
    visual = build_visual(run.model.visual)
    assert visual.dim == 32 and visual.tokens_per_frame == 8  # the folder's tiny architecture
    # the same in a YAML file, and a later layer giving a config instead takes over again
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(
        f"model_name: refatomnet_base\nmodel:\n  visual:\n    hf_name_or_path: {blip2_dir}\n"
    )
    run = resolve_run_config(None, yaml_file)
    assert run.model.visual.hf_config is None
    tiny = tiny_blip2_config()
    run = resolve_run_config(None, yaml_file, {"model.visual.hf_config": tiny})
    assert run.model.visual.hf_name_or_path is None and run.model.visual.hf_config == tiny
    # both in one layer: one line naming the keys
    both = {"model.visual.hf_name_or_path": str(blip2_dir), "model.visual.hf_config": tiny}
    with pytest.raises(ConfigError, match="visual.hf_name_or_path and visual.hf_config are both"):
        resolve_run_config("refatomnet_base", overrides=both)
