"""The progress file of a detection run: finished keyframes, appended and flushed as they come,
so that a killed run continues where it stopped.

``DIR/.detect/<split>.progress.jsonl``: a header line ``{"detector": {...settings}}``, then one
line per finished keyframe ``{"video_id", "time", "detections": [...]}``. A torn last line (the
run was killed while writing it) is ignored; a file of another detector is discarded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ravar.data.format import Detection
from ravar.detect.base import KeyframeId
from ravar.util.io import atomic_path, json_line

PROGRESS_DIR = ".detect"


def progress_path(dataset_dir: str | os.PathLike, split: str) -> Path:
    """Where the progress of `split` is kept while it is being detected."""
    return Path(dataset_dir) / PROGRESS_DIR / f"{split}.progress.jsonl"


def _detection(d: dict[str, Any]) -> Detection:
    return Detection(
        box=[float(v) for v in d["box"]],
        category=str(d["category"]),
        score=float(d.get("score", 1.0)),
        time=d.get("time"),
    )


def read_progress(path: Path, settings: dict[str, Any]) -> dict[KeyframeId, list[Detection]]:
    """Keyframes finished by an earlier run of the detector `settings` (empty for none, or for
    a file of another detector)."""
    if not path.is_file():
        return {}
    done: dict[KeyframeId, list[Detection]] = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        return {}
    if header.get("detector") != json.loads(json.dumps(settings)):
        return {}
    for line in lines[1:]:
        try:
            d = json.loads(line)
            done[(d["video_id"], float(d["time"]))] = [_detection(x) for x in d["detections"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            break  # a torn line: everything after it is redone
    return done


class ProgressWriter:
    """Appends finished keyframes to a progress file (rewritten with `done` first)."""

    def __init__(
        self, path: Path, settings: dict[str, Any], done: dict[KeyframeId, list[Detection]]
    ) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"detector": settings}) + "\n")
            for key, dets in done.items():
                f.write(_line(key, dets))
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def add(self, keys: Sequence[KeyframeId], found: Sequence[list[Detection]]) -> None:
        """Record finished keyframes durably (written, flushed and synced)."""
        self._file.write("".join(_line(k, d) for k, d in zip(keys, found, strict=True)))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _line(key: KeyframeId, dets: list[Detection]) -> str:
    d = {"video_id": key[0], "time": key[1], "detections": [x.to_dict() for x in dets]}
    return json_line(d)
