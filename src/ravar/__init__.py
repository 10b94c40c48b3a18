"""ravar: Referring Atomic Video Action Recognition."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`ravar.load(checkpoint)` returns a `ravar.inference.Predictor`; imported on first use so
    that `import ravar` stays light."""
    if name == "load":
        from ravar.inference.predictor import load

        return load
    raise AttributeError(f"module 'ravar' has no attribute {name!r}")
