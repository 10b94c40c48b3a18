"""Loading third-party pickles without running their code: only plain data may come out.

A pickle names the callables that rebuild its objects ("globals"); a plain `pickle.load` imports and
calls whatever it names, so a crafted file runs arbitrary code. `safe_load_pickle` resolves only an
allow-list of data constructors (Python containers and numbers, `collections.OrderedDict`, numpy
arrays, scalars and dtypes, as numpy 1.x and 2.x name them) and refuses every other global before
anything is called.
"""

from __future__ import annotations

import _compat_pickle
import collections
import importlib
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ravar.errors import DataFormatError, UnsafePickleError

_ALLOWED_HINT = "only plain containers, numbers, strings and numpy arrays are allowed"

# Builtins that pickle protocols 0-5 reference for plain values.
_BUILTIN_NAMES = ("set", "frozenset", "bytearray", "bytes", "complex", "slice")

# numpy functions that rebuild arrays and scalars, by (submodule, name) under numpy._core (numpy 2)
# or numpy.core (numpy 1.x); pickles written by either version name either spelling.
_NUMPY_CORE_NAMES = (
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
)


def _no_size_argument(cls: type) -> Callable[..., Any]:
    """`cls` (bytes or bytearray) refusing an integer size, so a tiny pickle cannot ask for
    gigabytes of zeros; pickles only ever pass existing data."""

    def build(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(f"{cls.__name__}() with an integer size")
        return cls(*args)

    return build


def _latin1_encoder() -> Callable[..., bytes]:
    """`_codecs.encode` limited to what pickle protocols 0-2 use for bytes: latin-1 of a str."""

    def encode(text: Any, encoding: Any = "utf-8") -> bytes:
        if not (isinstance(text, str) and isinstance(encoding, str)) or encoding.replace(
            "-", ""
        ).lower() not in ("latin1", "latin"):
            raise pickle.UnpicklingError(f"_codecs.encode of {type(text).__name__}, {encoding!r}")
        return text.encode("latin-1")

    return encode


def _numpy_core() -> tuple[Any, Any]:
    """numpy's (multiarray, numeric) modules under whichever name this numpy version uses."""
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
        numeric = importlib.import_module("numpy._core.numeric")
    except ImportError:  # numpy < 1.26 has only numpy.core
        multiarray = importlib.import_module("numpy.core.multiarray")
        numeric = importlib.import_module("numpy.core.numeric")
    return multiarray, numeric


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Every (module, name) a safe pickle may reference, mapped to the object it stands for.

    Wrappers are made afresh for each load, so a pickle that sets attributes on one (BUILD) cannot
    affect another load. numpy 2 pickles of plain dtypes reference `numpy.dtype`, never the
    `numpy.dtypes.*DType` classes, so those are not needed and not allowed.
    """
    import builtins

    import numpy

    allowed: dict[tuple[str, str], Any] = {}
    for name in _BUILTIN_NAMES:
        obj: Any = getattr(builtins, name)
        if name in ("bytes", "bytearray"):
            obj = _no_size_argument(obj)
        allowed["builtins", name] = obj
    allowed["_codecs", "encode"] = _latin1_encoder()
    allowed["collections", "OrderedDict"] = collections.OrderedDict
    allowed["numpy", "ndarray"] = numpy.ndarray
    allowed["numpy", "dtype"] = numpy.dtype
    multiarray, numeric = _numpy_core()
    modules = {"multiarray": multiarray, "numeric": numeric}
    for sub, name in _NUMPY_CORE_NAMES:
        obj = getattr(modules[sub], name)
        allowed[f"numpy.core.{sub}", name] = obj
        allowed[f"numpy._core.{sub}", name] = obj
    return allowed


class _DataOnlyUnpickler(pickle.Unpickler):
    """An Unpickler whose globals come only from the allow-list; nothing else is imported."""

    def __init__(self, file: io.BufferedIOBase, where: str) -> None:
        super().__init__(file, encoding="latin1")
        self._where = where
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocols 0-2 written with fix_imports), e.g. __builtin__ -> builtins
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[module, name]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return self._allowed[module, name]
        except KeyError:
            raise UnsafePickleError(
                f"{self._where}: refuses to load '{module}.{name}': {_ALLOWED_HINT}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"{self._where}: refuses a persistent id ({pid!r}): {_ALLOWED_HINT}"
        )


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """The object stored in the pickle file `path`, which may hold only plain data.

    Raises UnsafePickleError (naming the file and the global) when the pickle references anything
    but plain containers, numbers, strings, bytes and numpy arrays/scalars/dtypes, and
    DataFormatError when the file is missing, truncated or not a pickle. Python 2 pickles load
    with latin-1 strings (numpy's recommendation).
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise DataFormatError(f"{where}: no such file")
    try:
        with open(path, "rb") as f:
            return _DataOnlyUnpickler(f, where).load()
    except UnsafePickleError:
        raise
    except OSError as e:
        raise DataFormatError(f"{where}: cannot read ({e.strerror or e})") from None
    except RecursionError:
        raise DataFormatError(f"{where}: not a usable pickle (nested too deeply)") from None
    except MemoryError:
        raise DataFormatError(f"{where}: not a usable pickle (asks for too much memory)") from None
    except Exception as e:  # pickle reports damage as many exception types
        raise DataFormatError(
            f"{where}: not a valid pickle, truncated or corrupt ({type(e).__name__}: {e})"
        ) from None
