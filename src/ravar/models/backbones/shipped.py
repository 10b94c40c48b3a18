"""Backbone descriptions that travel inside a checkpoint, so that a Hugging Face backbone first
read from a local folder can be rebuilt where that folder does not exist.

While `use_shipped` is active, a Hugging Face backbone whose source (its `hf_name_or_path`, or
"minilm" for the packaged MiniLM) has a `ShippedBackbone` is built from the shipped config (and
tokenizer) instead of the folder, with random or empty weights: the checkpoint's weights follow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

MINILM_SOURCE = "minilm"  # the source name of the packaged MiniLM


@dataclass(frozen=True)
class ShippedBackbone:
    """What rebuilds one backbone's architecture: its Hugging Face config as a dict, and for a
    text backbone the folder of its tokenizer files."""

    hf_config: dict[str, Any]
    tokenizer: str | None = None


_SHIPPED: ContextVar[Mapping[tuple[str, str], ShippedBackbone] | None] = ContextVar(
    "ravar_shipped_backbones", default=None
)


@contextmanager
def use_shipped(backbones: Mapping[tuple[str, str], ShippedBackbone]) -> Iterator[None]:
    """Build the backbones keyed `(kind, source)` ("visual" / "text", hf_name_or_path or
    "minilm") from their shipped descriptions while the context is active."""
    token = _SHIPPED.set(dict(backbones))
    try:
        yield
    finally:
        _SHIPPED.reset(token)


def shipped(kind: str, source: str | None) -> ShippedBackbone | None:
    """The shipped description of the `kind` backbone read from `source`, if one is active."""
    if source is None:
        return None
    return (_SHIPPED.get() or {}).get((kind, str(source)))
