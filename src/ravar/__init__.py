"""ravar: Referring Atomic Video Action Recognition.

    import ravar
    model = ravar.create_model("refatomnet_tiny")     # a registered model, random weights
    ravar.list_models()                               # the registered names
    model = ravar.load_model("RUN_DIR/best")          # a checkpoint folder or a cached Hub repo id
    predictor = ravar.load("RUN_DIR/best")            # video + sentence -> actions and box

Each name is imported on first use (a module `__getattr__`), so `import ravar` stays light.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute), imported on first access
_LAZY = {
    "load": ("ravar.inference.predictor", "load"),
    "create_model": ("ravar.models.registry", "create_model"),
    "list_models": ("ravar.models.registry", "list_models"),
    "load_model": ("ravar.engine.hub", "load_pretrained"),
    "RAVARModel": ("ravar.models.base", "RAVARModel"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """The lazily imported public names of `_LAZY`."""
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ravar' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
