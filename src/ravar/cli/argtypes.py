"""argparse value types with one-line errors naming the bound."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded(kind: type, minimum: float, strict: bool) -> Callable[[str], int | float]:
    """An argparse type: `kind` (int or float) that is > `minimum` (strict) or >= `minimum`."""
    noun = "an integer" if kind is int else "a number"
    relation = ">" if strict else ">="

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not (value > minimum if strict else value >= minimum):
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, got {text!r}")
        return value

    return parse


positive_int = bounded(int, 0, strict=True)
non_negative_int = bounded(int, 0, strict=False)
positive_float = bounded(float, 0.0, strict=True)
non_negative_float = bounded(float, 0.0, strict=False)
