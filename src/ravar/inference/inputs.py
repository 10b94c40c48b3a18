"""Checks of the video and sentences given for prediction, with errors naming the culprit."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ravar.data.frames import VideoReader
from ravar.errors import PredictError


def check_texts(text: str | Sequence[str], what: str = "text") -> list[str]:
    """`text` as a non-empty list of sentences; a PredictError for an empty or blank one."""
    texts = [text] if isinstance(text, str) else list(text)
    if not texts:
        raise PredictError(f"{what}: no sentence given")
    for i, t in enumerate(texts):
        name = what if len(texts) == 1 else f"{what} #{i + 1}"
        if not isinstance(t, str):
            raise PredictError(f"{name}: expected a string, got {type(t).__name__}")
        if not t.strip():
            raise PredictError(f"{name}: the sentence is empty or only whitespace")
    return texts


def open_video(video: str | os.PathLike | VideoReader) -> VideoReader:
    """A VideoReader for `video` (FrameError naming the file when it is missing or no video)."""
    if isinstance(video, VideoReader):
        return video
    reader = VideoReader(video)
    if reader.num_frames < 1:
        raise PredictError(f"{reader.path}: the video has no frames")
    return reader
