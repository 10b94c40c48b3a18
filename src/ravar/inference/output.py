"""What `ravar predict` writes: predictions.json (schema in docs/predictions_schema.md), one PNG per
keyframe and optionally one MP4 per keyframe."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ravar import __version__
from ravar.data.frames import VideoReader
from ravar.inference.results import KeyframeResult

PREDICTIONS_FORMAT = "ravar-predictions"
PREDICTIONS_VERSION = 1
PREDICTIONS_FILE = "predictions.json"


def time_tag(time: float) -> str:
    """The `<time>` of file names: seconds with three decimals, e.g. "5.000"."""
    return f"{time:.3f}"


def png_name(time: float) -> str:
    return f"keyframe_{time_tag(time)}.png"


def mp4_name(time: float) -> str:
    return f"clip_{time_tag(time)}.mp4"


def video_info(reader: VideoReader) -> dict[str, Any]:
    """Path, frame rate, size, frame count and duration of a video."""
    return {
        "path": str(reader.path),
        "fps": reader.fps,
        "width": reader.width,
        "height": reader.height,
        "num_frames": reader.num_frames,
        "duration": reader.duration,
    }


def group_by_time(results: Sequence[KeyframeResult]) -> list[list[KeyframeResult]]:
    """Results grouped per keyframe time, in first-seen order (sentences keep their order)."""
    groups: dict[float, list[KeyframeResult]] = {}
    for r in results:
        groups.setdefault(r.time, []).append(r)
    return list(groups.values())


def predictions_document(
    results: Sequence[KeyframeResult],
    *,
    predictor: dict[str, Any],
    detector: dict[str, Any],
    video: dict[str, Any],
    top_k: int,
    threshold: float | None,
    files: dict[float, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The predictions.json object; `predictor` is `Predictor.describe()`, `files` maps a
    keyframe time to the files written for it."""
    entries = []
    for r in results:
        d = r.to_dict(threshold)
        if files and r.time in files:
            d["files"] = files[r.time]
        entries.append(d)
    return {
        "format": PREDICTIONS_FORMAT,
        "version": PREDICTIONS_VERSION,
        "ravar_version": __version__,
        "checkpoint": predictor["checkpoint"],
        "model": predictor["model"],
        "detector": detector,
        "video": video,
        "top_k": top_k,
        "threshold": threshold,
        "results": entries,
    }
