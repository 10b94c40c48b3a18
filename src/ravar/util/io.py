"""Files written atomically, and JSON read and written one way.

Every file `ravar` writes in place (annotations, metrics, plots, configs, predictions) is first
written to a temporary sibling named `.<name>.tmp-<8 hex digits>`, flushed to disk, then renamed
over `<name>`: a reader, or a process killed at any moment, sees the previous complete file or
the new one, never a part. The same temporary name serves folders written whole (checkpoints,
feature stores): `temp_sibling` and `remove_stale_temps`. The temporary name ends in random
digits, so a leftover never matches a pattern such as `*.jsonl` or `*.npy`; writers that infer a
format from the file name (matplotlib, numpy) are given it explicitly.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ravar.errors import DataFormatError, RavarError

TEMP_MARK = ".tmp-"


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


def read_json(path: str | os.PathLike, *, error: type[RavarError] = DataFormatError) -> Any:
    """The decoded JSON file `path`; a missing, unreadable or invalid file raises `error` (a
    RavarError, DataFormatError unless the caller's domain has its own) naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
