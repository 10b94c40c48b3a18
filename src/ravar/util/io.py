"""Files written atomically, and JSON read and written one way.

Every file `ravar` writes in place (annotations, metrics, plots, configs, predictions) is first
written to a temporary sibling named `.<name>.tmp-<8 hex digits>`, flushed to disk, then renamed
over `<name>`: a reader, or a process killed at any moment, sees the previous complete file or
the new one, never a part. The same temporary name serves folders written whole (checkpoints,
feature stores): `temp_sibling` and `remove_stale_temps`. The temporary name ends in random
digits, so a leftover never matches a pattern such as `*.jsonl` or `*.npy`; writers that infer a
format from the file name (matplotlib, numpy) are given it explicitly.

Every JSON or JSON Lines file `ravar` reads from a user (annotations, dataset.json, descriptions,
boxes files, checkpoint configs) goes through `decode_json`: invalid UTF-8, invalid JSON, arrays
and objects nested deeper than `JSON_MAX_DEPTH` (64) levels and integers longer than Python's
4300-digit limit each give one line naming the file (and line), never a RecursionError or a
traceback. `read_json` reads a whole file, `json_lines` a JSON Lines file line by line.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ravar.errors import DataFormatError, RavarError

TEMP_MARK = ".tmp-"
JSON_MAX_DEPTH = 64  # arrays / objects inside one another in a JSON value read from a file


def temp_sibling(path: str | os.PathLike) -> Path:
    """A fresh temporary name next to `path`: `.<name>.tmp-<8 hex digits>`."""
    path = Path(path)
    return path.parent / f".{path.name}{TEMP_MARK}{uuid.uuid4().hex[:8]}"


def remove_stale_temps(path: str | os.PathLike) -> None:
    """Delete the temporary siblings of `path` (files or folders) that a killed writer left."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}{TEMP_MARK}*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


# what safetensors' SafetensorError says of a failed write: "... I/O error: <reason> (os error N)"
_WRAPPED_OS_ERROR = re.compile(r"(?:I/O error|IoError)[:(]\s*(.*?)\s*\(os error (\d+)\)")


def os_reason(error: BaseException) -> str:
    """The operating system's reason for a failed read or write, e.g. "No space left on device
    (ENOSPC)": from an OSError, or from a library error that wraps one (safetensors'
    SafetensorError); otherwise the error's first line."""
    code = getattr(error, "errno", None) if isinstance(error, OSError) else None
    text = error.strerror if isinstance(error, OSError) else None
    if code is None:
        found = _WRAPPED_OS_ERROR.search(str(error))
        if found:
            text, code = found.group(1), int(found.group(2))
    if text and code in errno.errorcode:
        return f"{text} ({errno.errorcode[code]})"
    if text:
        return text
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


def check_writable(
    folder: str | os.PathLike, what: str, *, error: type[RavarError] = RavarError
) -> Path:
    """Create `folder` when missing and write, then remove, a small probe file in it, so that a
    folder that cannot take files fails now (before any work) rather than at the first write;
    `error` names `what` (e.g. "--out run1") and the system's reason."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise error(f"{what}: cannot create the folder ({os_reason(e)})") from None
    probe = temp_sibling(folder / "write-probe")
    try:
        with open(probe, "wb") as f:
            f.write(b"ravar")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise error(f"{what}: cannot write into the folder ({os_reason(e)})") from None
    finally:
        with suppress(OSError):
            probe.unlink(missing_ok=True)
    return folder


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # folders cannot be opened on some platforms
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path` to write the file into (for libraries that write
    files themselves); when the block ends without an error the file is flushed (`fsync`) and
    renamed over `path`. On an error the temporary file is removed and `path` is untouched.
    The parent folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Replace the file `path` with `data`, atomically (see `atomic_path`)."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> Path:
    """Replace the file `path` with `text` as UTF-8, atomically (see `atomic_path`)."""
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """`data` as the text of a JSON file: indented by `indent` (None: one line with the default
    separators), ASCII-only (other characters escaped), keys in the given order, newline at the
    end."""
    return json.dumps(data, indent=indent) + "\n"


def json_line(data: Any, *, ensure_ascii: bool = True) -> str:
    """`data` as one compact line of a JSON Lines file (no spaces, newline at the end)."""
    return json.dumps(data, ensure_ascii=ensure_ascii, separators=(",", ":")) + "\n"


def write_json(
    path: str | os.PathLike, data: Any, *, indent: int | None = 2, fsync: bool = True
) -> Path:
    """Write `data` as the JSON file `path` (`json_text`), atomically (see `atomic_path`)."""
    return atomic_write_text(path, json_text(data, indent=indent), fsync=fsync)


class JsonProblem(ValueError):
    """Why a JSON text cannot be used (no file name: the caller adds where it came from)."""


def _nesting_over(value: Any, max_depth: int) -> bool:
    """True when `value` has arrays / objects nested more than `max_depth` levels deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > max_depth:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def decode_json(data: bytes | str, *, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """The value of one JSON text from an untrusted source; JsonProblem when it is not UTF-8,
    not JSON, nested more than `max_depth` levels deep, or holds an integer longer than Python
    converts (4300 digits by default)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JsonProblem(f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        value = json.loads(data)
    except json.JSONDecodeError as e:
        at = f"column {e.colno}" if e.lineno == 1 else f"line {e.lineno} column {e.colno}"
        raise JsonProblem(f"not valid JSON ({e.msg} at {at})") from None
    except RecursionError:
        raise JsonProblem(f"not valid JSON (nested more than {max_depth} levels deep)") from None
    except ValueError as e:  # an integer over sys.get_int_max_str_digits()
        if "digits" not in str(e):
            raise JsonProblem(f"not valid JSON ({e})") from None
        limit = sys.get_int_max_str_digits()
        raise JsonProblem(f"not valid JSON (an integer longer than {limit} digits)") from None
    if isinstance(value, (dict, list)) and _nesting_over(value, max_depth):
        raise JsonProblem(f"not valid JSON (nested more than {max_depth} levels deep)")
    return value


def read_json(path: str | os.PathLike, *, error: type[RavarError] = DataFormatError) -> Any:
    """The decoded JSON file `path` (`decode_json`); a missing, unreadable or invalid file raises
    `error` (a RavarError, DataFormatError unless the caller's domain has its own) naming the
    file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: missing") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return decode_json(data)
    except JsonProblem as e:
        problem = str(e)
        if not problem.startswith("not valid JSON"):
            problem = f"not valid JSON: {problem}"
        raise error(f"{path}: {problem}") from None


def json_lines(path: str | os.PathLike) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, value, None), or (line number, None, why not) when the line cannot be
    decoded (`decode_json`), for each non-blank line of the JSON Lines file `path`."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, decode_json(raw), None
            except JsonProblem as e:
                yield lineno, None, str(e)
