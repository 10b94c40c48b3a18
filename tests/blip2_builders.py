"""A tiny random BLIP-2 with its stage-1 Q-Former text path, saved as a local Hugging Face folder
(as Salesforce/blip2-itm-vit-g is laid out) with a BERT WordPiece tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ravar.models.backbones import tiny_hf_config

WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "a",
    "man",
    "woman",
    "person",
    "in",
    "on",
    "at",
    "of",
    "left",
    "right",
    "red",
    "blue",
    "shirt",
    "white",
    "black",
    "hair",
    "##s",
    "##ing",
]


def tiny_blip2_config() -> dict[str, Any]:
    """`tiny_hf_config("blip2")` with a small text vocabulary and the Q-Former's text path."""
    cfg = tiny_hf_config("blip2")
    cfg["qformer_config"].update(
        vocab_size=64, max_position_embeddings=64, use_qformer_text_input=True
    )
    cfg["image_text_hidden_size"] = 16
    return cfg


def write_vocab(path: Path) -> Path:
    """A WordPiece vocab.txt of `WORDS`."""
    path.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return path


def save_tiny_blip2(folder: Path) -> Path:
    """Save a random `Blip2ForImageTextRetrieval` and its tokenizer to `folder`."""
    from transformers import BertTokenizerFast, Blip2Config, Blip2ForImageTextRetrieval

    folder.mkdir(parents=True, exist_ok=True)
    model = Blip2ForImageTextRetrieval(Blip2Config(**tiny_blip2_config()))
    model.save_pretrained(folder)
    vocab = write_vocab(folder.parent / f"{folder.name}_vocab.txt")
    BertTokenizerFast(str(vocab)).save_pretrained(folder)
    return folder
