"""RAVAR models behind one interface: ``create_model(name, **overrides)``."""

from ravar.models.base import RAVARModel
from ravar.models.registry import build_model, create_model, list_models, model_config

__all__ = ["RAVARModel", "build_model", "create_model", "list_models", "model_config"]
