"""safe_load_pickle: plain data round-trips, anything that would run code is refused unexecuted."""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from ravar.data.importers.safe_pickle import safe_load_pickle
from ravar.errors import DataFormatError, RavarError, UnsafePickleError


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _plain_data() -> dict:
    return {
        "list": [1, 2.5, "three", None, True],
        "tuple": (1, ("nested", b"bytes")),
        "set": {1, 2, 3},
        "frozenset": frozenset({"a", "b"}),
        "bytes": b"\x00\xffabc",
        "empty_bytes": b"",
        "bytearray": bytearray(b"xyz"),
        "complex": 1 + 2j,
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "floats": np.array([[0.1, 0.2], [0.3, 0.4]], dtype=np.float32),
        "ints": np.arange(6, dtype=np.int64).reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "objects": np.array([[1, 2], [3, 4, 5], "text"], dtype=object),
        "scalar": np.float64(0.5),
        "int_scalar": np.int32(7),
        "dtype": np.dtype("f4"),
        "strings": np.array(["a", "bcd"]),
    }


def _assert_same(got: object, want: object) -> None:
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tolist() == want.tolist()
    elif isinstance(want, dict):
        assert type(got) is type(want) and list(got) == list(want)
        for k in want:
            _assert_same(got[k], want[k])
    else:
        assert type(got) is type(want) and got == want


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_plain_data_round_trips(tmp_path: Path, protocol: int) -> None:
    data = _plain_data()
    path = _write(tmp_path / "data.pkl", pickle.dumps(data, protocol=protocol))
    _assert_same(safe_load_pickle(path), data)


def test_numpy_1x_module_names_load_without_warning(tmp_path: Path) -> None:
    # numpy 1.x writes numpy.core.multiarray; protocol 2 names globals as newline-ended text.
    arr = np.arange(4.0)
    raw = pickle.dumps(arr, protocol=2)
    old = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old
    path = _write(tmp_path / "old.pkl", old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = safe_load_pickle(path)
    assert got.tolist() == [0.0, 1.0, 2.0, 3.0]


class _Evil:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _malicious_cases(marker: Path) -> dict[str, tuple[object, str]]:
    return {
        "os.system": (_Evil(os.system, (f"touch {marker}",)), "system"),
        "builtins.eval": (
            _Evil(builtins.eval, (f"open({str(marker)!r}, 'w').close()",)),
            "builtins.eval",
        ),
        "subprocess.Popen": (
            _Evil(subprocess.Popen, (["touch", str(marker)],)),
            "subprocess.Popen",
        ),
    }


@pytest.mark.parametrize("case", ["os.system", "builtins.eval", "subprocess.Popen"])
@pytest.mark.parametrize("protocol", [2, 5])
def test_code_running_pickles_are_refused_unexecuted(
    tmp_path: Path, case: str, protocol: int
) -> None:
    marker = tmp_path / "pwned"
    obj, culprit = _malicious_cases(marker)[case]
    path = _write(tmp_path / "train_label.pkl", pickle.dumps({"k": obj}, protocol=protocol))
    with pytest.raises(UnsafePickleError) as err:
        safe_load_pickle(path)
    msg = str(err.value)
    assert str(path) in msg and culprit in msg
    assert "only plain containers" in msg
    assert not marker.exists()


def test_hand_written_protocol_0_os_system_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    raw = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    path = _write(tmp_path / "evil.pkl", raw)
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl: refuses to load 'os\.system'"):
        safe_load_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["getattr", "exec", "open", "__import__", "compile"])
def test_callable_builtins_are_refused(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / "b.pkl", f"cbuiltins\n{name}\n.".encode())
    with pytest.raises(UnsafePickleError, match=f"'builtins.{name}'"):
        safe_load_pickle(path)


def test_persistent_ids_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.pkl", b"Pabc\n.")
    with pytest.raises(UnsafePickleError, match=r"p\.pkl: refuses a persistent id"):
        safe_load_pickle(path)


def test_bytearray_of_a_huge_size_is_refused(tmp_path: Path) -> None:
    # protocol 2: GLOBAL builtins.bytearray, BININT 2**30, TUPLE1, REDUCE, STOP
    raw = b"\x80\x02cbuiltins\nbytearray\nJ\x00\x00\x00\x40\x85R."
    path = _write(tmp_path / "big.pkl", raw)
    with pytest.raises(DataFormatError, match=r"big\.pkl: .*bytearray\(\) with an integer size"):
        safe_load_pickle(path)


def test_bytes_encoded_with_another_codec_are_refused(tmp_path: Path) -> None:
    raw = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00abX\x05\x00\x00\x00rot13\x86R."
    path = _write(tmp_path / "codec.pkl", raw)
    with pytest.raises(DataFormatError, match=r"codec\.pkl: .*'rot13'"):
        safe_load_pickle(path)


def test_truncated_pickle_gives_a_clear_error(tmp_path: Path) -> None:
    raw = pickle.dumps({"a": list(range(100)), "b": np.arange(50)}, protocol=4)
    path = _write(tmp_path / "train_keyframe.pkl", raw[: len(raw) // 2])
    with pytest.raises(DataFormatError) as err:
        safe_load_pickle(path)
    assert "train_keyframe.pkl" in str(err.value)
    assert "truncated or corrupt" in str(err.value)
    assert not isinstance(err.value, UnsafePickleError)


@pytest.mark.parametrize("content", [b"", b"this is not a pickle at all", b"\x80\x05\xff\xff"])
def test_garbage_gives_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = _write(tmp_path / "junk.pkl", content)
    with pytest.raises(RavarError, match=r"junk\.pkl: not a valid pickle"):
        safe_load_pickle(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"nothere\.pkl: no such file"):
        safe_load_pickle(tmp_path / "nothere.pkl")
