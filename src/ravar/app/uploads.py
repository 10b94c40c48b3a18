"""Where `ravar serve` keeps uploads: a fresh folder of its own, removed when it stops, and
error messages that name an upload by its file name only."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ravar.errors import RavarError
from ravar.util.io import os_reason

GRADIO_TEMP_DIR = "GRADIO_TEMP_DIR"  # where Gradio stores uploads and its cache
FOLDER_PREFIX = "ravar-serve-"


@contextmanager
def upload_folder() -> Iterator[Path]:
    """A new folder for this server's uploads and Gradio's cache (`GRADIO_TEMP_DIR` points to
    it meanwhile; it is made inside the `GRADIO_TEMP_DIR` already set, else the system's
    temporary folder); removed with its contents, and the variable restored, at the end."""
    before = os.environ.get(GRADIO_TEMP_DIR)
    try:
        if before:  # Gradio creates the folder it is given: so does ravar
            Path(before).mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=before or None))
    except OSError as e:
        where = f"{GRADIO_TEMP_DIR}={before}" if before else "the temporary folder"
        raise RavarError(
            f"ravar serve: cannot make an upload folder in {where} ({os_reason(e)})"
        ) from None
    os.environ[GRADIO_TEMP_DIR] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(GRADIO_TEMP_DIR, None)
        else:
            os.environ[GRADIO_TEMP_DIR] = before
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`) stops the server like Ctrl+C does, so that its clean-up runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def hide_upload_path(message: str, video: str | os.PathLike | None) -> str:
    """`message` with the path of `video` (as given or resolved) replaced by its file name:
    the server's copy of an upload has a path that means nothing to the user and tells them
    about the server's folders."""
    if not video:
        return message
    path = Path(video)
    for form in sorted({str(path), str(path.resolve()), os.fspath(video)}, key=len, reverse=True):
        message = message.replace(form, path.name)
    return message
