"""The BLIP-2 Q-Former's text path as a text encoder (`TextConfig.kind="qformer"`): word and
position embeddings, then the Q-Former's BERT layers without queries (self-attention and the
text feed-forward layers), as LAVIS's `blip2_feature_extractor` computes its text features (the
RefAtomNet papers' text stream). Token embeddings are the last hidden states (768-d for the
papers' BLIP-2), not the 256-d contrastive projection.

Weights come from a local BLIP-2 folder holding a stage-1 Q-Former with its text path (Hugging Face
`Blip2ForImageTextRetrieval` / `Blip2TextModelWithProjection` checkpoints, such as
Salesforce/blip2-itm-vit-g); the BLIP-2 + language-model checkpoints (blip2-opt-*, blip2-flan-t5-*)
keep only the query path and are refused. The tokenizer is the folder's (a BERT WordPiece), or
`TextConfig.tokenizer_path`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ravar.config import ConfigError
from ravar.models.backbones.text import HFTextEncoder, TextConfig, TextEncoder, _load_tokenizer

_TEXT_PREFIXES = ("embeddings.", "qformer.")


class Blip2QFormerText(nn.Module):
    """Embeddings + Q-Former layers on token ids: `(input_ids [B, L], attention_mask [B, L])` ->
    an output whose `last_hidden_state` is `[B, L, C]`."""

    def __init__(self, qformer_config: Any) -> None:
        from transformers.models.blip_2.modeling_blip_2 import (
            Blip2QFormerModel,
            Blip2TextEmbeddings,
        )

        super().__init__()
        cfg = copy.deepcopy(qformer_config)
        cfg.use_qformer_text_input = True  # the text feed-forward layers
        self.config = cfg
        self.embeddings = Blip2TextEmbeddings(cfg)
        self.qformer = Blip2QFormerModel(cfg)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,  # BERT tokenizers give them; unused
    ) -> Any:
        embedded = self.embeddings(input_ids=input_ids)  # [B, L, C]
        return self.qformer(
            query_embeds=embedded, query_length=0, attention_mask=attention_mask
        )  # last_hidden_state [B, L, C]

    def load_checkpoint(self, state: dict[str, torch.Tensor], folder: str) -> None:
        """Load the text embeddings and Q-Former weights out of a BLIP-2 state dict."""
        own = {}
        for key, value in state.items():
            if key.startswith("vision_model.") or ".vision_model." in key:
                continue
            for prefix in _TEXT_PREFIXES:
                at = key.find(prefix)
                if at == 0 or (at > 0 and key[at - 1] == "."):
                    own[key[at:]] = value
                    break
        missing, _ = self.load_state_dict(own, strict=False)
        if missing:
            raise ConfigError(
                f"TextConfig.hf_name_or_path {folder!r}: this BLIP-2 checkpoint has no Q-Former "
                f"text path ({len(missing)} weights missing, e.g. {missing[:2]}); use a stage-1 "
                "checkpoint with text embeddings (e.g. Salesforce/blip2-itm-vit-g)"
            )


class QFormerTextEncoder(HFTextEncoder):
    """`TextEncoder` on the BLIP-2 Q-Former's text path (see the module docstring)."""

    def __init__(self, config: TextConfig) -> None:
        TextEncoder.__init__(self, config)
        from transformers import Blip2Config

        if config.hf_name_or_path is None and config.hf_config is None:
            raise ConfigError(
                "TextConfig.kind='qformer' needs hf_name_or_path: the local BLIP-2 folder (e.g. "
                "Salesforce/blip2-itm-vit-g; model.text.hf_name_or_path=DIR), or hf_config"
            )
        if config.hf_config is not None:
            try:
                hf_cfg = Blip2Config(**config.hf_config)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"TextConfig.hf_config is not a valid BLIP-2 config: {e}") from e
            self.model = Blip2QFormerText(hf_cfg.qformer_config)
            folder = None
        else:
            from ravar.models.backbones.visual import _local_dir, _read_state_dict

            name = str(config.hf_name_or_path)
            try:
                folder = _local_dir(name)
                hf_cfg = Blip2Config.from_pretrained(str(folder), local_files_only=True)
            except Exception as e:
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ConfigError(
                    f"TextConfig.hf_name_or_path {name!r}: no BLIP-2 config in a local folder or "
                    f"the local Hugging Face cache (nothing is downloaded): {first}"
                ) from None
            self.model = Blip2QFormerText(hf_cfg.qformer_config)
            if torch.get_default_device().type != "meta":  # shape only: no weights to read
                self.model.load_checkpoint(_read_state_dict(folder), name)
        self.tokenizer = _load_tokenizer(config.tokenizer_path or str(folder))
        self._adopt_hf_model("the Q-Former's")
