"""Pluggable backbones: visual (frames -> spatial tokens per frame), text (descriptions -> token,
sentence and keyword embeddings) and location-semantic (detections -> tokens).

Hugging Face `transformers` is imported only when an "hf" / "minilm" backbone is built.
"""

from ravar.models.backbones.keywords import STOP_WORDS, extract_keywords, split_words
from ravar.models.backbones.location import LocationConfig, LocationSemanticEncoder
from ravar.models.backbones.text import (
    TextConfig,
    TextEncoder,
    TextFeatures,
    build_text,
    minilm_path,
    tiny_bert_config,
)
from ravar.models.backbones.visual import (
    VisualBackbone,
    VisualConfig,
    build_visual,
    paper_blip2_config,
    tiny_hf_config,
)

__all__ = [
    "STOP_WORDS",
    "LocationConfig",
    "LocationSemanticEncoder",
    "TextConfig",
    "TextEncoder",
    "TextFeatures",
    "VisualBackbone",
    "VisualConfig",
    "build_text",
    "build_visual",
    "extract_keywords",
    "minilm_path",
    "paper_blip2_config",
    "split_words",
    "tiny_bert_config",
    "tiny_hf_config",
]
