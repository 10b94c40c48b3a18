"""The `ava-proposals:FILE` detector: person boxes that AVA codebases ship for each keyframe.

Two files are read:

- the dense proposals pickle (e.g. ``ava_dense_proposals_val.FAIR.recall_93.9.pkl``): a dict keyed
  ``"<video_id>,<second %04d>"`` whose values are float arrays of rows ``x1, y1, x2, y2, score``
  (normalised; rows of 4 numbers get score 1). It is loaded with `safe_load_pickle`: a pickle
  that holds anything but plain data is refused.
- the predicted-boxes CSV (e.g. ``ava_val_predicted_boxes.csv``): rows
  ``video_id,second,x1,y1,x2,y2,action_id,person_id,score`` (9 columns) or, as SlowFast writes
  them, ``video_id,second,x1,y1,x2,y2,action_id,score`` (8 columns); action and person ids may be
  empty. A box repeated on several rows (one per action) is one detection, with its highest score.

Which one a file is: ``.pkl`` / ``.pickle`` is a pickle, ``.csv`` a CSV, anything else is told
apart by its first byte (pickles of protocol 2 and later start with 0x80). Boxes are clipped to
[0, 1]; boxes empty after clipping and rows below `min_score` are left out. A keyframe without an
entry gets no detections (counted in `missed`).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ravar.data.format import Detection, video_id_problem
from ravar.data.importers import parse_time
from ravar.data.importers.safe_pickle import safe_load_pickle
from ravar.detect.base import DatasetDetector, DatasetKeyframe, KeyframeId
from ravar.errors import DataFormatError
from ravar.util.box_ops import box_problem

PICKLE_SUFFIXES = (".pkl", ".pickle")
DIGITS = 6

Row = tuple[list[float], float]  # (normalised box, score)


def _clip_box(values: Sequence[float]) -> list[float] | None:
    box = [round(min(max(float(v), 0.0), 1.0), DIGITS) for v in values]
    return box if box_problem(box) is None else None


def _keyframe_id(video_id: str, second: str, where: str) -> KeyframeId:
    if (problem := video_id_problem(video_id)) is not None:
        raise DataFormatError(f"{where}: video id {problem}")
    try:
        return (video_id, float(parse_time(second)))
    except ValueError as e:
        raise DataFormatError(f"{where}: {e}") from None


def _score(value: Any, where: str) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise DataFormatError(f"{where}: score {value!r} is not a number") from None
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise DataFormatError(f"{where}: score {value!r} is not in [0, 1]")
    return score


def read_proposals_pickle(path: Path) -> dict[KeyframeId, list[Row]]:
    """(video_id, second) -> rows of the dense proposals pickle `path` (safely unpickled)."""
    data = safe_load_pickle(path)
    if not isinstance(data, dict):
        raise DataFormatError(
            f"{path}: expected a dict keyed 'video_id,second', got {type(data).__name__}"
        )
    out: dict[KeyframeId, list[Row]] = {}
    for key, value in data.items():
        where = f"{path}: key {key!r}"
        video_id, sep, second = key.rpartition(",") if isinstance(key, str) else ("", "", "")
        if not sep:
            raise DataFormatError(f"{where}: expected a key 'video_id,second'")
        try:
            rows = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataFormatError(f"{where}: value is not an array of numbers") from None
        if rows.size == 0:
            rows = rows.reshape(0, 5)
        if rows.ndim != 2 or rows.shape[1] not in (4, 5):
            raise DataFormatError(
                f"{where}: expected rows of x1, y1, x2, y2[, score], got shape {list(rows.shape)}"
            )
        found = out.setdefault(_keyframe_id(video_id, second, where), [])
        for row in rows:
            score = _score(row[4], where) if len(row) == 5 else 1.0
            if (box := _clip_box(row[:4])) is not None:
                found.append((box, score))
    return out


def read_predicted_boxes_csv(path: Path) -> dict[KeyframeId, list[Row]]:
    """(video_id, second) -> rows of the predicted-boxes CSV `path`, one per distinct box."""
    out: dict[KeyframeId, dict[tuple[float, ...], float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for lineno, cells in enumerate(csv.reader(f), start=1):
                cells = [c.strip() for c in cells]
                if not any(cells):
                    continue
                where = f"{path}:{lineno}"
                if len(cells) not in (8, 9):
                    if lineno == 1 and cells and not cells[-1].replace(".", "", 1).isdigit():
                        continue  # a header line
                    raise DataFormatError(
                        f"{where}: expected 9 columns video_id,second,x1,y1,x2,y2,action_id,"
                        f"person_id,score (or 8 without person_id), got {len(cells)}"
                    )
                try:
                    values = [float(v) for v in cells[2:6]]
                except ValueError:
                    if lineno == 1:
                        continue  # a header line
                    raise DataFormatError(f"{where}: box {cells[2:6]} is not 4 numbers") from None
                key = _keyframe_id(cells[0], cells[1], where)
                score = _score(cells[-1], where)
                box = _clip_box(values)
                if box is not None:
                    boxes = out.setdefault(key, {})
                    boxes[tuple(box)] = max(score, boxes.get(tuple(box), 0.0))
                else:
                    out.setdefault(key, {})
    except OSError as e:
        raise DataFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not a UTF-8 text CSV") from None
    return {k: [(list(b), s) for b, s in v.items()] for k, v in out.items()}


def is_pickle(path: Path) -> bool:
    """True for a pickle (by suffix, else by its first byte), False for a CSV."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    if path.suffix.lower() == ".csv":
        return False
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


class AVAProposalsDetector(DatasetDetector):
    """Person boxes of an AVA proposals pickle or predicted-boxes CSV (module docstring)."""

    def __init__(self, path: str | os.PathLike, min_score: float = 0.0) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataFormatError(f"ava-proposals:{self.path}: no such file")
        if not 0.0 <= min_score <= 1.0:
            raise DataFormatError(f"--min-score: must be in [0, 1], got {min_score}")
        self.min_score = float(min_score)
        self.format = "pickle" if is_pickle(self.path) else "csv"
        read = read_proposals_pickle if self.format == "pickle" else read_predicted_boxes_csv
        self.rows = read(self.path)
        self.missed = 0

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "ava-proposals",
            "path": str(self.path.resolve()),
            "format": self.format,
            "min_score": self.min_score,
        }

    def notes(self) -> list[str]:
        if not self.missed:
            return []
        return [f"{self.missed} keyframes have no entry in {self.path} (no detections there)"]

    def detect(self, keyframes: Sequence[DatasetKeyframe]) -> list[list[Detection]]:
        out = []
        for k in keyframes:
            rows = self.rows.get(k.id)
            if rows is None:
                self.missed += 1
                rows = []
            dets = [
                Detection(box=list(box), category="person", score=score)
                for box, score in rows
                if score >= self.min_score
            ]
            out.append(sorted(dets, key=lambda d: -d.score))
        return out
