"""Short, bounded text of values for one-line messages."""

from __future__ import annotations

import reprlib
from typing import Any


class _BoundedRepr(reprlib.Repr):
    """`reprlib.Repr` that also bounds numpy arrays, OrderedDicts and huge integers, so the text
    of any value costs time and memory independent of the value's size or shared references."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 6
        self.maxdeque = self.maxarray = 6
        self.maxstring = self.maxother = self.maxlong = limit

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)

    def repr_OrderedDict(self, x: Any, level: int) -> str:  # noqa: N802 (reprlib's naming)
        return f"OrderedDict({self.repr_dict(dict(x), level)})"

    def repr_ndarray(self, x: Any, level: int) -> str:
        if x.size <= 6 and not x.dtype.hasobject:
            return repr(x)
        return f"array(shape={x.shape}, dtype={x.dtype})"


def short_repr(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to at most `limit` characters ("..." at the end when cut); nested and
    long containers are abbreviated first, so this is cheap for any value."""
    text = _BoundedRepr(limit).repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
