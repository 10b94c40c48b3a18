"""Loading third-party pickles without running their code: only plain data may come out, and
only as much of it as the limits allow.

A pickle names the callables that rebuild its objects ("globals"); a plain `pickle.load` imports and
calls whatever it names, so a crafted file runs arbitrary code. `safe_load_pickle` resolves only an
allow-list of data constructors (Python containers and numbers, `collections.OrderedDict`, numpy
arrays, scalars and dtypes, as numpy 1.x and 2.x name them) and refuses every other global before
anything is called.

A pickle can also reference one object many times through its memo, so a file of a few hundred
bytes can describe data that takes forever to hash, compare or print (a tuple holding the previous
tuple twice, 60 levels deep), or ask numpy for gigabytes. `PickleLimits` bounds what a load may
build; a pickle over any limit raises `PickleLimitError` (one line: the file, what it asked for,
the limit's name and value) before the costly step runs:

- ``max_file_bytes`` (512 MiB): size of the pickle file;
- ``max_records`` (2,000,000): entries of the top-level dict (or list, tuple, set);
- ``max_depth`` (32): containers nested inside one another, in the data and in every dict key,
  set item and constructor argument (a container that holds itself counts as too deep);
- ``max_objects`` (20,000,000): objects built plus objects visited when the data, its dict keys
  and constructor arguments are checked, where an object counts once per reference to it, so
  shared references cannot multiply the work;
- ``max_array_elements`` (100,000,000): elements of one numpy array;
- ``max_array_bytes`` (1 GiB): bytes of all numpy arrays of the file together.

The defaults are far above what the RefAVA releases need (a few objects and one 4-float array
per person) and far below what exhausts a workstation. `ravar data import-refava --pickle-limit
NAME=VALUE` changes one.
"""

from __future__ import annotations

import _compat_pickle
import collections
import dataclasses
import importlib
import io
import operator
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ravar.errors import DataFormatError, PickleLimitError, RavarError, UnsafePickleError
from ravar.util.text import short_repr

_ALLOWED_HINT = "only plain containers, numbers, strings and numpy arrays are allowed"


@dataclass(frozen=True)
class PickleLimits:
    """How much a pickle may ask for (see the module docstring); every field is a count > 0."""

    max_file_bytes: int = 512 * 2**20
    max_records: int = 2_000_000
    max_depth: int = 32
    max_objects: int = 20_000_000
    max_array_elements: int = 100_000_000
    max_array_bytes: int = 2**30

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise DataFormatError(
                    f"pickle limit {f.name} must be an integer > 0, got {value!r}"
                )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The limits' names, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))


class _OverLimit(Exception):
    """Raised inside a load: which limit was hit and what the pickle asked for."""

    def __init__(self, name: str, asked: str) -> None:
        super().__init__(name)
        self.name = name
        self.asked = asked


# objects without parts: nothing to visit inside them
_ATOMS = frozenset({str, bytes, int, float, bool, complex, type(None), bytearray, slice})

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


def _has_parts(obj: Any) -> bool:
    """Whether `obj` is a container whose parts `_parts` lists."""
    if type(obj) in _ATOMS:
        return False
    if isinstance(obj, (dict, list, tuple, set, frozenset)):
        return True
    return isinstance(obj, np.ndarray) and obj.dtype.hasobject


def _flat_count(obj: Any) -> int | None:
    """The objects `obj` expands to when it is an atom or a short tuple of atoms and tuples of
    atoms (most constructor arguments and array states); None otherwise."""
    if not _has_parts(obj):
        return 1
    if type(obj) is not tuple or len(obj) > 8:
        return None
    count = 1
    for part in obj:
        if not _has_parts(part):
            count += 1
        elif type(part) is tuple and len(part) <= 8 and not any(map(_has_parts, part)):
            count += 1 + len(part)
        else:
            return None
    return count


def _parts(obj: Any) -> list[Any]:
    """The objects inside a container: dict keys and values, items, an object array's elements."""
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, np.ndarray):
        return obj.reshape(-1).tolist()
    return list(obj)


def _elements(shape: Any, limit: int) -> int:
    """Elements of an array of `shape` (an int or a sequence of ints), counted up to just past
    `limit`; a shape that is not that raises UnpicklingError."""
    try:
        dims = [operator.index(shape)] if not isinstance(shape, (tuple, list)) else shape
        n = 1
        for d in dims:
            n *= max(operator.index(d), 0)
            if n > limit:
                return n
    except TypeError:
        raise pickle.UnpicklingError(f"array shape {short_repr(shape)} is not integers") from None
    return n


class _DataOnlyUnpickler(pickle._Unpickler):  # the Python unpickler: its steps can be checked
    """An Unpickler whose globals come only from the allow-list and whose loads stay within
    `limits`: containers built and memo entries are counted, dict keys, set items, constructor
    arguments and object states are visited (depth and count) before they are hashed or used,
    and numpy array sizes are checked before numpy allocates them."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: io.BufferedIOBase, where: str, limits: PickleLimits) -> None:
        super().__init__(file, encoding="latin1")
        self._where = where
        self._allowed = _allowed_globals()
        self._limits = limits
        self._objects = 0  # objects built or visited so far
        self._array_bytes = 0  # bytes of the arrays built so far
        multiarray, numeric = _numpy_core()
        # (constructor, check of its arguments), found by identity (a pickle's "callable" can
        # be any value, even one whose hash never ends)
        self._array_makers: list[tuple[Any, Callable[[tuple, dict], None]]] = [
            (multiarray._reconstruct, self._check_reconstruct),
            (multiarray.scalar, self._check_scalar),
            (numeric._frombuffer, self._check_frombuffer),
            (np.ndarray, self._check_ndarray_call),
        ]

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
            f"{self._where}: refuses a persistent id ({short_repr(pid)}): {_ALLOWED_HINT}"
        )

    def load(self) -> Any:
        data = super().load()
        self._visit(data, "data")
        containers = (dict, list, tuple, set, frozenset)
        if isinstance(data, containers) and len(data) > self._limits.max_records:
            raise _OverLimit("max_records", f"has {len(data):,} entries")
        return data

    # -- accounting

    def _spend(self, count: int) -> None:
        self._objects += count
        if self._objects > self._limits.max_objects:
            raise _OverLimit(
                "max_objects",
                f"asks for more than {self._limits.max_objects:,} objects "
                "(built, or reached again through shared references)",
            )

    def _visit(self, root: Any, what: str) -> None:
        """Count `root` as the objects it expands to (every reference to an object counts, so a
        tuple holding the previous tuple twice, 60 levels deep, counts 2**60) and refuse
        containers nested more than max_depth deep or holding themselves. The walk itself
        visits each distinct container once, so the count costs no more than the data's size."""
        if (count := _flat_count(root)) is not None:
            self._spend(count)
            return
        max_depth = self._limits.max_depth
        budget = self._limits.max_objects - self._objects
        size: dict[int, int] = {}  # id -> objects it expands to (finished containers)
        height: dict[int, int] = {}  # id -> containers nested in it, itself included
        parts: dict[int, list[Any]] = {}  # id -> its parts (containers being walked)
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:
            obj, finish = stack.pop()
            oid = id(obj)
            if finish:
                n, h = 1, 0
                for part in parts.pop(oid):
                    pid = id(part)
                    if pid in size:
                        n += size[pid]
                        h = max(h, height[pid])
                    else:
                        n += 1
                size[oid], height[oid] = n, h + 1
                if h + 1 > max_depth:
                    raise _OverLimit(
                        "max_depth", f"has {what} nested more than {max_depth} levels deep"
                    )
                if n > budget:
                    self._spend(n)
                continue
            if oid in size:
                continue
            if oid in parts:  # met again while its own parts are being walked: it holds itself
                raise _OverLimit("max_depth", f"has {what} that holds itself")
            if len(parts) >= max_depth:  # `parts` holds the containers on the path to `obj`
                raise _OverLimit(
                    "max_depth", f"has {what} nested more than {max_depth} levels deep"
                )
            own = _parts(obj)
            parts[oid] = own
            stack.append((obj, True))
            stack.extend((p, False) for p in own if id(p) not in size and _has_parts(p))
        self._spend(size[id(root)])

    def _visit_hashed(self, items: Any) -> None:
        """Visit the tuples and frozensets among `items` before they are hashed (hashing a
        tuple visits all of its parts, with no memory of shared ones)."""
        for item in items:
            if type(item) in (tuple, frozenset):
                self._visit(item, "a dict key or set item")

    def _add_array(self, shape: Any, dtype: Any) -> None:
        """Count an array of `shape` and `dtype` against the array limits before it exists."""
        limits = self._limits
        n = _elements(shape, limits.max_array_elements)
        if n > limits.max_array_elements:
            raise _OverLimit("max_array_elements", f"asks for an array of {n:,}+ elements")
        itemsize = np.dtype(dtype).itemsize
        self._array_bytes += n * itemsize
        if self._array_bytes > limits.max_array_bytes:
            raise _OverLimit(
                "max_array_bytes", f"asks for arrays of {self._array_bytes:,}+ bytes in all"
            )

    # -- numpy constructors: sizes checked before the call

    def _check_reconstruct(self, args: tuple, kwargs: dict) -> None:
        if len(args) >= 3:  # _reconstruct(subtype, shape, dtype)
            self._add_array(args[1], args[2])

    def _check_scalar(self, args: tuple, kwargs: dict) -> None:
        if args:  # scalar(dtype, data)
            self._add_array(1, args[0])

    def _check_frombuffer(self, args: tuple, kwargs: dict) -> None:
        if len(args) >= 3:  # _frombuffer(buffer, dtype, shape, order)
            self._add_array(args[2], args[1])

    def _check_ndarray_call(self, args: tuple, kwargs: dict) -> None:
        shape = args[0] if args else kwargs.get("shape", 0)
        dtype = args[1] if len(args) > 1 else kwargs.get("dtype", float)
        self._add_array(shape, dtype)

    def _call(self, func: Any, args: Any, kwargs: Any = None) -> Any:
        """`func(*args, **kwargs)` after the arguments are visited and array sizes checked."""
        kwargs = kwargs or {}
        self._visit(args, "constructor arguments")
        if kwargs:
            self._visit(kwargs, "constructor arguments")
        self._check_array_call(func, args, kwargs)
        return func(*args, **kwargs)

    def _check_array_call(self, func: Any, args: Any, kwargs: Any) -> None:
        for maker, check in self._array_makers:
            if func is maker:
                check(tuple(args), dict(kwargs))

    def _new(self, cls: Any, args: Any, kwargs: Any = None) -> Any:
        """`cls.__new__(cls, *args, **kwargs)` (NEWOBJ), checked as `_call` checks `cls(...)`."""
        kwargs = kwargs or {}
        self._visit(args, "constructor arguments")
        if kwargs:
            self._visit(kwargs, "constructor arguments")
        self._check_array_call(cls, args, kwargs)
        return cls.__new__(cls, *args, **kwargs)

    # -- the opcodes that hash, call or build

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    def _instantiate(self, klass: Any, args: list) -> None:
        self.append(self._call(klass, args))

    def load_build(self) -> None:
        state, inst = self.stack[-1], self.stack[-2]
        self._visit(state, "an object's state")
        if isinstance(inst, np.ndarray) and isinstance(state, tuple) and len(state) in (4, 5):
            shape, dtype = state[-4], state[-3]  # ([version,] shape, dtype, fortran, data)
            self._add_array(shape, dtype)
        pickle._Unpickler.load_build(self)

    def load_dict(self) -> None:
        self._visit_hashed(self.stack[::2])
        self._spend(1)
        pickle._Unpickler.load_dict(self)

    def load_setitem(self) -> None:
        self._visit_hashed(self.stack[-2:-1])
        pickle._Unpickler.load_setitem(self)

    def load_setitems(self) -> None:
        self._visit_hashed(self.stack[::2])
        pickle._Unpickler.load_setitems(self)

    def load_additems(self) -> None:
        self._visit_hashed(self.stack)
        pickle._Unpickler.load_additems(self)

    def load_frozenset(self) -> None:
        self._visit_hashed(self.stack)
        self._spend(1)
        pickle._Unpickler.load_frozenset(self)


def _counted(handler: Callable[[Any], None]) -> Callable[[Any], None]:
    """An opcode handler that counts one object (a new container or memo entry) first."""

    def run(self: _DataOnlyUnpickler) -> None:
        self._spend(1)
        handler(self)

    return run


_HANDLERS = {
    pickle.REDUCE: "load_reduce",
    pickle.NEWOBJ: "load_newobj",
    pickle.NEWOBJ_EX: "load_newobj_ex",
    pickle.BUILD: "load_build",
    pickle.DICT: "load_dict",
    pickle.SETITEM: "load_setitem",
    pickle.SETITEMS: "load_setitems",
    pickle.ADDITEMS: "load_additems",
    pickle.FROZENSET: "load_frozenset",
}
for _op, _name in _HANDLERS.items():
    _DataOnlyUnpickler.dispatch[_op[0]] = getattr(_DataOnlyUnpickler, _name)
for _op in (
    pickle.EMPTY_LIST,
    pickle.EMPTY_DICT,
    pickle.EMPTY_SET,
    pickle.LIST,
    pickle.TUPLE,
    pickle.TUPLE1,
    pickle.TUPLE2,
    pickle.TUPLE3,
    pickle.MEMOIZE,
    pickle.PUT,
    pickle.BINPUT,
    pickle.LONG_BINPUT,
):
    _DataOnlyUnpickler.dispatch[_op[0]] = _counted(pickle._Unpickler.dispatch[_op[0]])


def safe_load_pickle(path: str | os.PathLike, limits: PickleLimits | None = None) -> Any:
    """The object stored in the pickle file `path`, which may hold only plain data, within
    `limits` (default `PickleLimits()`).

    Raises UnsafePickleError (naming the file and the global) when the pickle references anything
    but plain containers, numbers, strings, bytes and numpy arrays/scalars/dtypes,
    PickleLimitError (naming the file and the limit) when it asks for more than `limits` allow,
    and DataFormatError when the file is missing, truncated or not a pickle. Python 2 pickles
    load with latin-1 strings (numpy's recommendation).
    """
    limits = limits or PickleLimits()
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise DataFormatError(f"{where}: no such file")
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise _OverLimit("max_file_bytes", f"is {size:,} bytes")
        with open(path, "rb") as f:
            return _DataOnlyUnpickler(f, where, limits).load()
    except RavarError:
        raise
    except _OverLimit as e:
        value = getattr(limits, e.name)
        raise PickleLimitError(
            f"{where}: refused: it {e.asked}, over the importer limit {e.name}={value:,} "
            f"(raise it with --pickle-limit {e.name}=N)"
        ) from None
    except OSError as e:
        raise DataFormatError(f"{where}: cannot read ({e.strerror or e})") from None
    except RecursionError:
        raise DataFormatError(f"{where}: not a usable pickle (nested too deeply)") from None
    except MemoryError:
        raise DataFormatError(f"{where}: not a usable pickle (asks for too much memory)") from None
    except Exception as e:  # pickle reports damage as many exception types
        raise DataFormatError(
            f"{where}: not a valid pickle, truncated or corrupt "
            f"({type(e).__name__}: {short_repr(str(e), 200)[1:-1]})"
        ) from None
