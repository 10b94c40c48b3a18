"""Tiny crafted pickles that ask for far more than their size: written opcode by opcode, as an
attacker would, so no test ever builds the structures they describe.

Opcodes used (protocol 2): ``}`` EMPTY_DICT, ``]`` EMPTY_LIST, ``)`` EMPTY_TUPLE, ``(`` MARK,
``q i`` BINPUT (memo slot i), ``h i`` BINGET, ``\\x85``/``\\x86``/``\\x87`` TUPLE1/2/3,
``a`` APPEND, ``e`` APPENDS, ``s`` SETITEM, ``0`` POP, ``K`` BININT1, ``J`` BININT,
``U`` SHORT_BINSTRING, ``X`` BINUNICODE, ``C`` SHORT_BINBYTES, ``c`` GLOBAL, ``R`` REDUCE,
``b`` BUILD, ``\\x89`` NEWFALSE, ``t`` TUPLE, ``.`` STOP.

At 100 levels the DAGs are refused for their depth; at 30 levels (within max_depth) for the
2**31 objects they expand to.
"""

from __future__ import annotations

import struct

KEY = "v___902___1"  # a well-formed RefAVA key
_PROTO = b"\x80\x02"
_KEY = b"X" + struct.pack("<I", len(KEY)) + KEY.encode()
HUGE = 2_000_000_000  # elements asked of numpy (2 GB of int8)


def tuple_dag_key(levels: int = 100) -> bytes:
    """{t: 1} where t0 = () and t(i) = (t(i-1), t(i-1)) through the memo: hashing t visits
    2**levels tuples (the report's 775-byte file; 812 bytes here)."""
    out = [_PROTO, b"}q\x00", b")q\x010"]
    for i in range(1, levels + 1):
        out.append(b"h%ch%c\x86q%c" % (i, i, i + 1) + (b"0" if i < levels else b""))
    out.append(b"K\x01s.")
    return b"".join(out)


def list_dag_value(levels: int = 100) -> bytes:
    """{KEY: l} where l0 = [] and l(i) = [l(i-1), l(i-1)] through the memo: printing l writes
    2**levels lists."""
    out = [_PROTO, b"}q\x00", _KEY, b"]q\x010"]
    for i in range(1, levels + 1):
        out.append(b"](h%ch%ceq%c" % (i, i, i + 1) + (b"0" if i < levels else b""))
    out.append(b"s.")
    return b"".join(out)


def ndarray_direct() -> bytes:
    """numpy.ndarray((HUGE,), "i1"): 30 bytes asking for 2 GB."""
    return _PROTO + b"cnumpy\nndarray\nJ" + struct.pack("<i", HUGE) + b"\x85U\x02i1\x86R."


def ndarray_reconstruct() -> bytes:
    """numpy.core.multiarray._reconstruct(ndarray, (HUGE,), b"b"): numpy 1.x's name."""
    return (
        _PROTO
        + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ"
        + struct.pack("<i", HUGE)
        + b"\x85U\x01b\x87R."
    )


def ndarray_setstate() -> bytes:
    """An empty array from _reconstruct whose __setstate__ (BUILD) asks for shape (HUGE,)."""
    return (
        _PROTO
        + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        + b"(K\x01J"
        + struct.pack("<i", HUGE)
        + b"\x85cnumpy\ndtype\nU\x02i1\x85R\x89C\x00tb."
    )


def deep_key(depth: int = 200_000) -> bytes:
    """{((((1,),),)...): 2}: a key `depth` tuples deep (hashing it recurses in C)."""
    return _PROTO + b"}K\x01" + b"\x85" * depth + b"K\x02s."


def deep_value(depth: int = 200_000) -> bytes:
    """{KEY: [[[...]]]}: a value `depth` lists deep."""
    return _PROTO + b"}" + _KEY + b"]" * depth + b"a" * (depth - 1) + b"s."


def self_holding_list() -> bytes:
    """{KEY: l} where l = [l]."""
    return _PROTO + b"}" + _KEY + b"]q\x01h\x01as."


BOMBS = {
    "tuple_dag_key": (tuple_dag_key, "max_depth"),
    "tuple_dag_key_30": (lambda: tuple_dag_key(30), "max_objects"),
    "list_dag_value": (list_dag_value, "max_depth"),
    "list_dag_value_30": (lambda: list_dag_value(30), "max_objects"),
    "ndarray_direct": (ndarray_direct, "max_array_elements"),
    "ndarray_reconstruct": (ndarray_reconstruct, "max_array_elements"),
    "ndarray_setstate": (ndarray_setstate, "max_array_elements"),
    "deep_key": (deep_key, "max_depth"),
    "deep_value": (deep_value, "max_depth"),
    "self_holding_list": (self_holding_list, "max_depth"),
}
"""name -> (builder, the PickleLimits field that refuses it with the defaults)."""
