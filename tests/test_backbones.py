"""Backbones: visual (scratch and Hugging Face), text (scratch, BERT, MiniLM), location tokens,
keywords. Hugging Face models are tiny random configs or the packaged MiniLM: no network."""

from __future__ import annotations

import zlib

import pytest
import torch
import torch.nn.functional as F

from ravar.config import ConfigError, from_dict, to_dict
from ravar.errors import RavarError
from ravar.models.backbones import (
    LocationConfig,
    LocationSemanticEncoder,
    TextConfig,
    VisualConfig,
    build_text,
    build_visual,
    extract_keywords,
    paper_blip2_config,
    split_words,
    tiny_bert_config,
    tiny_hf_config,
)
from ravar.models.backbones.location import box_geometry
from ravar.models.base import RAVARModel


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _scratch(**kw) -> object:
    base = {"dim": 32, "heads": 4, "depth": 1, "patch": 8, "image_size": 32, "num_frames": 4}
    base.update(kw)
    return build_visual(VisualConfig(**base))


# ---------------------------------------------------------------------------------------------
# keywords


def test_keywords_drop_stop_words_and_keep_appearance_and_position() -> None:
    text = "The tall man in the blue shirt on the left, behind her, is holding a ball."
    assert extract_keywords(text) == ["tall", "man", "blue", "shirt", "left", "behind", "holding",
                                      "ball"]  # fmt: skip
    assert extract_keywords("the man next to the man in red") == ["man", "next", "red"]
    assert extract_keywords("") == []
    assert extract_keywords("he is on it") == []


def test_split_words_pieces() -> None:
    assert split_words("A man's T-shirt, 23") == [
        "a",
        "man",
        "'",
        "s",
        "t",
        "-",
        "shirt",
        ",",
        "23",
    ]


# ---------------------------------------------------------------------------------------------
# configs


def test_configs_round_trip_and_bad_values_name_the_field() -> None:
    for cfg in (
        VisualConfig(),
        VisualConfig(kind="hf", hf_kind="blip2", hf_config=paper_blip2_config(), frozen=True),
        TextConfig(),
        TextConfig(kind="minilm", frozen=True),
        LocationConfig(persons_only=True),
    ):
        assert from_dict(type(cfg), to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="tokens_per_frame"):
        VisualConfig(tokens_per_frame=10)
    with pytest.raises(ConfigError, match="heads"):
        VisualConfig(dim=30, heads=4)
    with pytest.raises(ConfigError, match="hf_name_or_path"):
        VisualConfig(kind="hf")
    with pytest.raises(ConfigError, match="tokenizer_path"):
        TextConfig(kind="hf", hf_config=tiny_bert_config(10))
    with pytest.raises(ConfigError, match="minilm"):
        TextConfig(kind="minilm", hf_name_or_path="x")
    assert issubclass(ConfigError, RavarError)


# ---------------------------------------------------------------------------------------------
# scratch visual


def test_scratch_visual_shapes_and_other_sizes() -> None:
    v = _scratch(tokens_per_frame=4)
    assert (v.dim, v.tokens_per_frame) == (32, 4)
    assert v(torch.randn(2, 4, 3, 32, 32)).shape == (2, 4, 4, 32)
    # other T and H, W: position embeddings are interpolated
    assert v(torch.randn(1, 6, 3, 48, 40)).shape == (1, 6, 4, 32)
    full = _scratch(temporal="conv")
    assert full.tokens_per_frame == 16
    assert full(torch.randn(2, 4, 3, 32, 32)).shape == (2, 4, 16, 32)
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        full(torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("depth", [0, 2])
def test_scratch_visual_token_t_depends_only_on_frame_t_without_temporal_mixing(depth: int) -> None:
    torch.manual_seed(0)
    v = _scratch(depth=depth, temporal="none").eval()
    frames = torch.randn(2, 4, 3, 32, 32)
    out = v(frames)  # [2, 4, 16, 32]
    bumped = frames.clone()
    bumped[1, 2] += 1.0  # clip 1, frame 2
    changed = (v(bumped) - out).abs().amax(dim=(2, 3)) > 1e-5  # [B, T]
    expected = torch.zeros(2, 4, dtype=torch.bool)
    expected[1, 2] = True
    assert torch.equal(changed, expected)


def test_scratch_visual_tokens_are_row_major_patches() -> None:
    v = _scratch(depth=0, temporal="none").eval()  # grid 4 x 4 of 8-px patches
    frames = torch.randn(1, 4, 3, 32, 32)
    out = v(frames)
    bumped = frames.clone()
    bumped[0, 0, :, 8:16, 16:24] += 1.0  # patch row 1, column 2 of frame 0
    changed = (v(bumped) - out).abs().amax(dim=-1) > 1e-5  # [1, T, Q]
    assert changed.nonzero().tolist() == [[0, 0, 1 * 4 + 2]]


def test_scratch_visual_temporal_mixing_spreads_over_frames_and_trains() -> None:
    torch.manual_seed(0)
    for temporal in ("attention", "conv"):
        v = _scratch(depth=1, temporal=temporal, tokens_per_frame=4)
        frames = torch.randn(1, 4, 3, 32, 32)
        out = v(frames)
        bumped = frames.clone()
        bumped[0, 1] += 1.0
        changed = (v(bumped) - out).abs().amax(dim=(2, 3))[0] > 1e-5  # [T]
        assert changed[0] and changed[2], temporal  # neighbours see frame 1
        v.zero_grad()
        v(frames).pow(2).mean().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in v.parameters())


# ---------------------------------------------------------------------------------------------
# Hugging Face visual


@pytest.mark.parametrize("kind", ["vit", "clip", "blip2"])
def test_hf_visual_tiny_configs_fold_and_unfold_frames(kind: str) -> None:
    torch.manual_seed(0)
    v = build_visual(VisualConfig(kind="hf", hf_kind=kind, hf_config=tiny_hf_config(kind))).eval()
    q = {"vit": 16, "clip": 16, "blip2": 8}[kind]
    assert (v.dim, v.tokens_per_frame) == (32, q)
    frames = torch.randn(2, 3, 3, 32, 32) + torch.arange(6.0).view(2, 3, 1, 1, 1)  # distinct
    out = v(frames)
    assert out.shape == (2, 3, q, 32)
    # independent computation: frame (b, t) alone through the HF model
    for b, t in [(0, 0), (0, 2), (1, 1)]:
        one = frames[b, t : t + 1]  # [1, 3, H, W]
        with torch.no_grad():
            if kind == "blip2":
                ref = v.model(one)[0]
            else:
                ref = v.model(pixel_values=one).last_hidden_state[0, 1:]
        torch.testing.assert_close(out[b, t], ref, atol=1e-5, rtol=1e-4)
    # other frame sizes: interpolated position embeddings
    assert v(torch.randn(1, 2, 3, 48, 48)).shape[:2] == (1, 2)


def test_hf_visual_pools_to_tokens_per_frame_and_trains() -> None:
    cfg = VisualConfig(
        kind="hf", hf_kind="vit", hf_config=tiny_hf_config("vit"), tokens_per_frame=4
    )
    v = build_visual(cfg)
    frames = torch.randn(2, 2, 3, 32, 32)
    out = v(frames)  # [2, 2, 4, 32]
    assert out.shape == (2, 2, 4, 32)
    with torch.no_grad():
        patches = v.model(pixel_values=frames[1, 0:1]).last_hidden_state[0, 1:]  # [16, 32]
    grid = patches.view(4, 4, 32)
    top_left = grid[:2, :2].reshape(4, 32).mean(0)  # pooled token 0 = mean of a 2x2 block
    torch.testing.assert_close(out[1, 0, 0], top_left, atol=1e-5, rtol=1e-4)
    out.sum().backward()
    assert v.model.embeddings.patch_embeddings.projection.weight.grad is not None
    with pytest.raises(ConfigError, match="tokens_per_frame"):
        build_visual(VisualConfig(kind="hf", hf_kind="blip2", hf_config=tiny_hf_config("blip2"),
                                  tokens_per_frame=4))  # fmt: skip


def test_hf_visual_loads_local_folders_and_checks_the_model_type(tmp_path) -> None:
    from transformers import Blip2Config, Blip2Model, ViTConfig, ViTModel

    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(**tiny_hf_config("vit")), add_pooling_layer=False).eval()
    vit.save_pretrained(tmp_path / "vit")
    v = build_visual(VisualConfig(kind="hf", hf_kind="vit", hf_name_or_path=str(tmp_path / "vit")))
    frames = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        ref = vit(pixel_values=frames[0]).last_hidden_state[:, 1:]  # [T, 16, 32]
    torch.testing.assert_close(v.eval()(frames)[0], ref)

    blip_cfg = Blip2Config(
        **tiny_hf_config("blip2"),
        text_config={"model_type": "opt", "hidden_size": 16, "ffn_dim": 32,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 64,
                     "word_embed_proj_dim": 16},
    )  # fmt: skip
    blip = Blip2Model(blip_cfg).eval()
    blip.save_pretrained(tmp_path / "blip2")
    v = build_visual(
        VisualConfig(kind="hf", hf_kind="blip2", hf_name_or_path=str(tmp_path / "blip2"))
    ).eval()
    with torch.no_grad():
        image = blip.vision_model(pixel_values=frames[0]).last_hidden_state
        ref = blip.qformer(
            query_embeds=blip.query_tokens.expand(2, -1, -1), encoder_hidden_states=image
        ).last_hidden_state  # [T, 8, 32]
    torch.testing.assert_close(v(frames)[0], ref)

    with pytest.raises(ConfigError, match="hf_name_or_path.*'vit'"):
        build_visual(VisualConfig(kind="hf", hf_kind="clip", hf_name_or_path=str(tmp_path / "vit")))
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        build_visual(VisualConfig(kind="hf", hf_kind="vit", hf_name_or_path="no-such/model-xyz"))


def test_paper_blip2_config_matches_blip2_defaults_and_size() -> None:
    from transformers import Blip2Config

    ref = Blip2Config()
    cfg = Blip2Config(**paper_blip2_config())
    for part in ("vision_config", "qformer_config"):
        for key, value in paper_blip2_config()[part].items():
            assert getattr(getattr(ref, part), key) == value == getattr(getattr(cfg, part), key)
    assert ref.num_query_tokens == cfg.num_query_tokens == 32
    with torch.device("meta"):  # sizes only, no memory
        v = build_visual(VisualConfig(kind="hf", hf_kind="blip2", hf_config=paper_blip2_config()))
    assert (v.dim, v.tokens_per_frame) == (768, 32)
    n = sum(p.numel() for p in v.parameters())
    assert 1.0e9 < n < 1.2e9  # EVA ViT-g (~1.0B) + Q-Former without its text side


# ---------------------------------------------------------------------------------------------
# frozen parts


class _Owner(RAVARModel):
    family = "test_owner"


def test_frozen_parts_have_no_grad_and_stay_in_eval() -> None:
    hf = dict(tiny_hf_config("vit"), hidden_dropout_prob=0.5)  # dropout makes train mode visible
    visual = build_visual(VisualConfig(kind="hf", hf_kind="vit", hf_config=hf, frozen=True))
    text = build_text(TextConfig(dim=32, depth=1, dropout=0.5, frozen=True))
    trainable = build_visual(VisualConfig(dim=32, depth=1, patch=8, image_size=32))
    assert trainable.frozen_part is None
    owner = _Owner(None)
    owner.visual, owner.text, owner.other = visual, text, trainable
    owner.train()
    for part in (visual.frozen_part, text.frozen_part):
        assert not any(m.training for m in part.modules())
        assert not any(p.requires_grad for p in part.parameters())
    assert trainable.training
    frames = torch.randn(1, 2, 3, 32, 32)
    a, b = visual(frames), visual(frames)
    assert torch.equal(a, b) and not a.requires_grad  # no dropout, no graph
    feats = text(["the man in red"])
    assert not feats.tokens.requires_grad
    assert torch.equal(feats.sentence, text(["the man in red"]).sentence)
    _, n_trainable = owner.param_counts()
    assert n_trainable == sum(p.numel() for p in trainable.parameters())
    # state dicts have each weight once
    keys = list(owner.state_dict())
    assert len(keys) == len(set(keys)) and not any("frozen_part" in k for k in keys)


# ---------------------------------------------------------------------------------------------
# scratch text


def test_scratch_text_features_and_stable_hash() -> None:
    torch.manual_seed(0)
    enc = build_text(TextConfig(dim=32, heads=4, depth=1, vocab_size=101, max_keywords=3))
    assert enc.word_id("man") == 2 + zlib.crc32(b"man") % 99
    texts = ["The man in the blue shirt on the left", "a woman", "it is"]
    f = enc(texts)
    b, length, c = f.tokens.shape
    assert (b, length, c) == (3, 1 + 9, 32)  # [CLS] + the longest text's 9 words
    assert f.mask.sum(1).tolist() == [10, 3, 3]
    assert torch.all(f.tokens[~f.mask] == 0)
    torch.testing.assert_close(f.sentence[1], f.tokens[1, :3].mean(0))
    assert f.keyword_strings == [["man", "blue", "shirt"], ["woman"], ["it is"]]  # K capped at 3
    assert f.keyword_mask.tolist() == [[True] * 3, [True, False, False], [True, False, False]]
    torch.testing.assert_close(f.keywords[0, 1], f.tokens[0, 1 + 4])  # "blue" is word 4
    torch.testing.assert_close(f.keywords[1, 0], f.tokens[1, 2])  # "woman"
    torch.testing.assert_close(f.keywords[2, 0], f.sentence[2])  # no keyword: the sentence
    assert torch.all(f.keywords[1, 1:] == 0)
    f.keywords.sum().backward()
    assert enc.embed.weight.grad is not None


# ---------------------------------------------------------------------------------------------
# Hugging Face text


def _tiny_bert(tmp_path, **kw):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "man", "in", "blue", "shirt",
             "##s", "left", "on", "a", "red", "hat", ",", "."]  # fmt: skip
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    cfg = TextConfig(kind="hf", hf_config=tiny_bert_config(len(vocab)), tokenizer_path=str(path))
    return build_text(from_dict(TextConfig, {**to_dict(cfg), **kw}))


def test_hf_text_keyword_is_mean_of_its_word_pieces(tmp_path) -> None:
    torch.manual_seed(0)
    enc = _tiny_bert(tmp_path).eval()
    assert enc.dim == 32
    f = enc(["The man in blue shirts, on the left.", "a"])
    # pieces: [CLS] the man in blue shirt ##s , on the left . [SEP]
    assert f.tokens.shape == (2, 13, 32)
    assert f.mask.sum(1).tolist() == [13, 3]
    assert f.keyword_strings == [["man", "blue", "shirts", "left"], ["a"]]
    torch.testing.assert_close(f.keywords[0, 2], f.tokens[0, 5:7].mean(0))  # shirt + ##s
    torch.testing.assert_close(f.keywords[0, 3], f.tokens[0, 10])
    torch.testing.assert_close(f.sentence[1], f.tokens[1, :3].mean(0))
    f.sentence.sum().backward()  # trainable
    assert enc.model.embeddings.word_embeddings.weight.grad is not None
    cut = _tiny_bert(tmp_path, max_length=6)(["the man in blue shirts"])
    assert cut.keyword_strings == [["man", "blue"]]  # "shirts" was cut off


def test_repeated_descriptions_are_encoded_once_at_inference(tmp_path) -> None:
    torch.manual_seed(0)
    enc = _tiny_bert(tmp_path).eval()
    texts = ["the man in blue", "a red hat", "the man in blue", "the man in blue"]
    calls = []
    compute = enc._compute
    enc._compute = lambda t: calls.append(list(t)) or compute(t)  # type: ignore[method-assign]
    f = enc(texts)
    assert calls == [["the man in blue", "a red hat"]]  # each sentence once
    ref = compute(texts)  # every row computed
    for name in ("tokens", "mask", "sentence", "keywords", "keyword_mask"):
        torch.testing.assert_close(getattr(f, name), getattr(ref, name))
    assert f.keyword_strings == ref.keyword_strings
    enc.train()
    calls.clear()
    enc(texts)
    assert calls == [texts]  # training: each row its own dropout draw


def test_hf_text_errors_name_the_culprit(tmp_path) -> None:
    with pytest.raises(ConfigError, match="vocab_size"):
        _tiny_bert(tmp_path, hf_config=tiny_bert_config(5))
    with pytest.raises(ConfigError, match="no-such/bert-xyz"):
        build_text(TextConfig(kind="hf", hf_name_or_path="no-such/bert-xyz"))


# ---------------------------------------------------------------------------------------------
# MiniLM


@pytest.fixture(scope="module")
def minilm():
    return build_text(TextConfig(kind="minilm", frozen=True))


def test_minilm_gives_real_sentence_embeddings(minilm) -> None:
    assert minilm.dim == 384
    e = minilm.encode_phrases(
        ["the man in the blue shirt", "the person in the blue shirt", "a red hat on the left"]
    )
    assert e.shape == (3, 384)
    cos = F.cosine_similarity
    assert cos(e[0], e[1], dim=0) > 0.7 > cos(e[0], e[2], dim=0) + 0.3
    f = minilm(["the man in the blue shirt"])
    torch.testing.assert_close(f.sentence[0], e[0], atol=1e-5, rtol=1e-4)
    assert f.keyword_strings == [["man", "blue", "shirt"]]


def test_minilm_frozen_caches_phrases(minilm, monkeypatch: pytest.MonkeyPatch) -> None:
    minilm.encode_phrases(["person", "ball"])
    calls = []
    original = minilm._sentences
    monkeypatch.setattr(minilm, "_sentences", lambda p: calls.append(list(p)) or original(p))
    e = minilm.encode_phrases(["ball", "chair", "person", "chair"])
    assert calls == [["chair"]]  # only the new phrase was encoded
    torch.testing.assert_close(e[1], e[3])
    assert minilm.encode_phrases([]).shape == (0, 384)
    minilm.float()  # a device / dtype move drops the cache
    assert not minilm._phrase_cache


# ---------------------------------------------------------------------------------------------
# location-semantic tokens


def _detections():
    one = [[0.1, 0.2, 0.5, 0.9], [0.6, 0.1, 0.8, 0.4], [0.0, 0.0, 0.0, 0.0]]
    boxes = torch.tensor([one, one])  # [2, 3, 4]
    scores = torch.tensor([[0.9, 0.8, 0.0], [0.9, 0.8, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    return boxes, scores, mask


def test_box_geometry_by_hand() -> None:
    g = box_geometry(torch.tensor([[[0.1, 0.2, 0.5, 0.9]]]), torch.tensor([[0.7]]))
    torch.testing.assert_close(
        g[0, 0], torch.tensor([0.1, 0.2, 0.5, 0.9, 0.3, 0.55, 0.4, 0.7, 0.7])
    )


def test_location_tokens_zero_padding_and_follow_the_category() -> None:
    torch.manual_seed(0)
    text = build_text(TextConfig(dim=32, heads=4, depth=1))
    loc = LocationSemanticEncoder(LocationConfig(hidden=32), text_dim=32, out_dim=24)
    boxes, scores, mask = _detections()
    cats = [["person", "ball", ""], ["person", "chair", ""]]
    tok = loc(boxes, scores, mask, cats, text)  # [2, 3, 24]
    assert tok.shape == (2, 3, 24)
    assert torch.all(tok[:, 2] == 0) and torch.all(tok[:, :2].abs().sum(-1) > 0)
    torch.testing.assert_close(tok[0, 0], tok[1, 0])  # same box, score and category
    assert (tok[0, 1] - tok[1, 1]).abs().max() > 1e-4  # same box, other category
    tok.sum().backward()  # trainable text encoder learns from the category names
    assert text.embed.weight.grad is not None and loc.mlp.net[0].weight.grad is not None

    only = LocationSemanticEncoder(LocationConfig(hidden=32, persons_only=True), 32, 24)
    only.load_state_dict(loc.state_dict())
    tok2 = only(boxes, scores, mask, cats, text)
    torch.testing.assert_close(tok2[:, 0], tok[:, 0])
    assert torch.all(tok2[:, 1:] == 0)

    empty = loc(boxes[:, :0], scores[:, :0], mask[:, :0], [[], []], text)
    assert empty.shape == (2, 0, 24)
    with pytest.raises(ValueError, match="det_categories"):
        loc(boxes, scores, mask, [["person"], ["person"]], text)


def test_location_tokens_with_minilm_categories(minilm) -> None:
    loc = LocationSemanticEncoder(LocationConfig(hidden=32), text_dim=minilm.dim, out_dim=16)
    boxes, scores, mask = _detections()
    tok = loc(boxes, scores, mask, [["person", "ball", ""], ["person", "cup", ""]], minilm)
    assert tok.shape == (2, 3, 16) and torch.all(tok[:, 2] == 0)
    assert (tok[0, 1] - tok[1, 1]).abs().max() > 1e-4
    tok.sum().backward()
    assert loc.mlp.net[0].weight.grad is not None
