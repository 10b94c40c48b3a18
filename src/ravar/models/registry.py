"""Named model configs: ``create_model("refatomnet_tiny", dim=128, **{"loss.box_mse_weight": 2})``.

A family (e.g. "refatomnet") pairs a config dataclass with its model class; a name (e.g.
"refatomnet_tiny") is a family plus a config instance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ravar.config import ConfigError, apply_overrides, from_dict, to_dict
from ravar.models.base import RAVARModel

_FAMILIES: dict[str, type[RAVARModel]] = {}
_NAMED: dict[str, tuple[str, Callable[[], Any], str]] = {}  # name -> (family, config factory, doc)


def register_family(model_class: type[RAVARModel]) -> type[RAVARModel]:
    """Class decorator: make `model_class` (with `family` and `config_class` set) buildable."""
    if not model_class.family:
        raise ValueError(f"{model_class.__name__} has no family name")
    _FAMILIES[model_class.family] = model_class
    return model_class


def register_model(name: str, family: str, config: Callable[[], Any], doc: str = "") -> None:
    """Register a named config: `config` is a zero-argument factory of the config dataclass."""
    if name in _NAMED:
        raise ValueError(f"model name {name!r} is registered twice")
    _NAMED[name] = (family, config, doc)


def _ensure_loaded() -> None:
    # importing the zoo registers every family and named config
    import ravar.models.zoo  # noqa: F401


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _ensure_loaded()
    return sorted(_NAMED)


def model_doc(name: str) -> str:
    """One-line description of a registered model name."""
    _ensure_loaded()
    return _NAMED[name][2]


def model_config(name: str, **overrides: Any) -> Any:
    """The config dataclass of `name` with dotted-key `overrides` applied."""
    _ensure_loaded()
    if name not in _NAMED:
        raise ConfigError(f"unknown model {name!r}; registered: {', '.join(sorted(_NAMED))}")
    family, factory, _ = _NAMED[name]
    cfg = factory()
    return apply_overrides(cfg, overrides) if overrides else cfg


def model_family(name: str) -> str:
    """Family of a registered model name."""
    model_config(name)
    return _NAMED[name][0]


def build_model(family: str, config: Any) -> RAVARModel:
    """Build a model of `family` from its config dataclass (or a plain dict of it)."""
    _ensure_loaded()
    if family not in _FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; known: {sorted(_FAMILIES)}")
    cls = _FAMILIES[family]
    if isinstance(config, dict):
        config = from_dict(cls.config_class, config)
    return cls(config)


def create_model(name: str, **overrides: Any) -> RAVARModel:
    """Build the registered model `name`, with dotted-key config overrides."""
    cfg = model_config(name, **overrides)
    model = build_model(_NAMED[name][0], cfg)
    model.model_name = name
    return model


def describe_config(name: str) -> dict[str, Any]:
    """Plain-dict config of a registered model (for printing and checkpoints)."""
    return to_dict(model_config(name))
