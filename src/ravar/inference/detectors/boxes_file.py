"""Detections that a user wrote into a JSON file (`ravar predict --boxes FILE`).

Schema (an object; a bare list is read as the object's "detections" with normalised units)::

    {"units": "normalized",                # or "pixels" (of the video's frames); default normalized
     "detections": [
       {"time": 5.0,                       # seconds; applies to the keyframe at this frame
        "box": [0.12, 0.20, 0.35, 0.98],   # x1, y1, x2, y2 (x1 < x2, y1 < y2) in `units`
        "category": "person",              # optional, default "person"
        "score": 0.9,                      # optional, in [0, 1], default 1.0
        "video_id": "-5KQ66BBWC4"}         # only for `ravar data detect` (see below)
     ]}

An entry applies to a keyframe when both times fall on the same frame (round(time * fps)).

`ravar predict --boxes` reads the boxes of one video: its entries carry no "video_id". The same
file format serves `ravar data detect --detector boxes:FILE` for a whole dataset: there every
entry names its "video_id", its "time" is in the dataset's seconds (the records' `time`, e.g.
AVA second 902), and it applies to the keyframes of that video whose frame (the dataset's frame
source: round((time - time_offset) * fps)) is the entry's frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ravar.data.format import MAX_TIME, Detection, video_id_problem
from ravar.errors import PredictError
from ravar.inference.detectors import Detector
from ravar.inference.keyframes import Keyframe
from ravar.util.box_ops import box_problem
from ravar.util.io import read_json

UNITS = ("normalized", "pixels")
ENTRY_KEYS = {"time", "box", "category", "score", "video_id"}


@dataclass
class BoxEntry:
    """One checked entry of a boxes file."""

    number: int  # position in the file's "detections" list (0-based)
    time: float
    box: list[float]
    category: str
    score: float
    video_id: str | None = None

    def normalised(
        self, file: Path, units: str, width: int, height: int, image: str
    ) -> list[float]:
        """The box as normalised xyxy: as written, or pixels divided by the `width` x `height`
        of `image` (named in the error when the box reaches outside it)."""
        if units == "normalized":
            return list(self.box)
        x1, y1, x2, y2 = self.box
        if x2 > width or y2 > height:
            raise PredictError(
                f"{file}: detections[{self.number}]: key 'box' (pixels) {self.box} "
                f"reaches outside the {width}x{height} {image}"
            )
        return [x1 / width, y1 / height, x2 / width, y2 / height]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _parse_entry(file: Path, i: int, raw: Any, units: str) -> BoxEntry:
    where = f"{file}: detections[{i}]"
    if not isinstance(raw, dict):
        raise PredictError(f"{where}: expected an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - ENTRY_KEYS)
    if unknown:
        raise PredictError(f"{where}: unknown keys {unknown} (allowed: {sorted(ENTRY_KEYS)})")
    for key in ("time", "box"):
        if key not in raw:
            raise PredictError(f"{where}: key {key!r} is missing")
    time = raw["time"]
    if not _is_number(time) or not 0 <= time < MAX_TIME:
        raise PredictError(
            f"{where}: key 'time' must be a number of seconds in [0, {MAX_TIME:g}), got {time!r}"
        )
    box = raw["box"]
    if units == "normalized":
        problem = box_problem(box)
    elif not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        problem = f"expected 4 numbers [x1, y1, x2, y2], got {box!r}"
    elif min(box) < 0 or not (box[0] < box[2] and box[1] < box[3]):
        problem = f"pixel box must have 0 <= x1 < x2 and 0 <= y1 < y2, got {box}"
    else:
        problem = None
    if problem:
        raise PredictError(f"{where}: key 'box' ({units}): {problem}")
    category = raw.get("category", "person")
    if not isinstance(category, str) or not category.strip():
        raise PredictError(f"{where}: key 'category' must be a non-empty string, got {category!r}")
    score = raw.get("score", 1.0)
    if not _is_number(score) or not 0.0 <= score <= 1.0:
        raise PredictError(f"{where}: key 'score' must be a number in [0, 1], got {score!r}")
    video_id = raw.get("video_id")
    if video_id is not None and (problem := video_id_problem(video_id)) is not None:
        raise PredictError(f"{where}: key 'video_id' {problem}")
    return BoxEntry(i, float(time), [float(v) for v in box], category, float(score), video_id)


def read_boxes_file(path: str | Path) -> tuple[str, list[BoxEntry]]:
    """(units, entries) of a boxes file; a PredictError naming the file and entry otherwise."""
    file = Path(path)
    if not file.is_file():
        raise PredictError(f"--boxes {file}: no such file")
    data = read_json(file, error=PredictError)
    if isinstance(data, list):
        data = {"units": "normalized", "detections": data}
    if not isinstance(data, dict):
        raise PredictError(f"{file}: expected an object or a list, got {type(data).__name__}")
    unknown = sorted(set(data) - {"units", "detections"})
    if unknown:
        raise PredictError(f"{file}: unknown keys {unknown} (allowed: ['detections', 'units'])")
    units = data.get("units", "normalized")
    if units not in UNITS:
        raise PredictError(f"{file}: key 'units' must be one of {list(UNITS)}, got {units!r}")
    entries = data.get("detections")
    if not isinstance(entries, list):
        raise PredictError(f"{file}: key 'detections' must be a list of objects")
    return units, [_parse_entry(file, i, e, units) for i, e in enumerate(entries)]


class BoxesFileDetector(Detector):
    """The boxes of a user's JSON file (schema in the module docstring), matched to keyframes by
    frame number; entries below `min_score` are left out."""

    kind = "boxes"

    def __init__(self, path: str | Path, min_score: float = 0.0) -> None:
        self.path = Path(path)
        self.min_score = float(min_score)
        self.units, self.entries = read_boxes_file(self.path)
        keyed = next((e for e in self.entries if e.video_id is not None), None)
        if keyed is not None:
            raise PredictError(
                f"{self.path}: detections[{keyed.number}] names a video_id: a file keyed by "
                "video is for `ravar data detect --detector boxes:FILE`; for one video leave "
                "'video_id' out"
            )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "units": self.units,
            "entries": len(self.entries),
            "min_score": self.min_score,
        }

    def detect(self, keyframes: Sequence[Keyframe]) -> list[list[Detection]]:
        out = []
        for k in keyframes:
            height, width = k.image.shape[:2]
            frame = math.floor(k.time * k.fps + 0.5)
            dets = [
                Detection(
                    box=e.normalised(self.path, self.units, width, height, "frame"),
                    category=e.category,
                    score=e.score,
                )
                for e in self.entries
                if math.floor(e.time * k.fps + 0.5) == frame and e.score >= self.min_score
            ]
            out.append(sorted(dets, key=lambda d: -d.score))
        return out
