"""The example videos offered on the page: the video files of a folder."""

from __future__ import annotations

import os
from pathlib import Path

from ravar.errors import ServeError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def find_examples(folder: str | os.PathLike | None, what: str = "--examples") -> list[Path]:
    """The video files directly in `folder`, sorted by name (none for `folder` None); a
    ServeError naming the folder when it is missing or holds no video."""
    if folder is None:
        return []
    root = Path(folder)
    if not root.is_dir():
        raise ServeError(f"{what} {root}: not a folder")
    videos = sorted(
        p.resolve() for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
    )
    if not videos:
        raise ServeError(f"{what} {root}: no video files ({', '.join(VIDEO_SUFFIXES)}) in it")
    return videos
