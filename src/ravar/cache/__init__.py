"""Feature cache for frozen backbones: build once (`ravar cache`), read transparently in
training and evaluation (`cache=auto|off|require`)."""

from ravar.cache.features import (
    CACHE_MODES,
    FeatureCache,
    attach_cache,
    build_cache,
    cache_root,
    store_size,
    text_identity,
    visual_identity,
)
from ravar.cache.store import CacheError, TextStore, VisualSplit, VisualStore, module_fingerprint

__all__ = [
    "CACHE_MODES",
    "CacheError",
    "FeatureCache",
    "TextStore",
    "VisualSplit",
    "VisualStore",
    "attach_cache",
    "build_cache",
    "cache_root",
    "module_fingerprint",
    "store_size",
    "text_identity",
    "visual_identity",
]
