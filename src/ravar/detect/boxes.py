"""The `boxes:FILE` detector for a dataset: the JSON of `ravar predict --boxes`, keyed by video.

Every entry names its "video_id"; its "time" is in the dataset's seconds (as the records' `time`);
it applies to the keyframes of that video on the same frame of the dataset's frame source. Pixel
boxes ("units": "pixels") are divided by the size of the keyframe image. See
`ravar.inference.detectors.boxes_file` for the rest of the schema.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ravar.data.format import Detection, FrameSourceSpec
from ravar.detect.base import DatasetDetector, DatasetKeyframe
from ravar.errors import DataFormatError
from ravar.inference.detectors.boxes_file import BoxEntry, read_boxes_file


class DatasetBoxesDetector(DatasetDetector):
    """Boxes a user wrote for the keyframes of a dataset (schema in the module docstring);
    entries below `min_score` are left out."""

    def __init__(
        self, path: str | os.PathLike, spec: FrameSourceSpec, min_score: float = 0.0
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataFormatError(f"boxes:{self.path}: no such file")
        self.spec = spec
        self.min_score = float(min_score)
        self.units, entries = read_boxes_file(self.path)
        self.by_frame: dict[tuple[str, int], list[BoxEntry]] = {}
        for e in entries:
            if e.video_id is None:
                raise DataFormatError(
                    f"{self.path}: detections[{e.number}]: key 'video_id' is missing (for a "
                    "dataset every entry names its video; times are the records' seconds)"
                )
            self.by_frame.setdefault((e.video_id, spec.frame_index(e.time)), []).append(e)
        self.needs_image = self.units == "pixels"

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "boxes",
            "path": str(self.path.resolve()),
            "units": self.units,
            "min_score": self.min_score,
        }

    def _box(self, entry: BoxEntry, keyframe: DatasetKeyframe) -> list[float]:
        if self.units == "normalized":
            return list(entry.box)
        assert keyframe.image is not None
        height, width = keyframe.image.shape[:2]
        return entry.normalised(
            self.path, self.units, width, height, f"keyframe of {keyframe.video_id}"
        )

    def detect(self, keyframes: Sequence[DatasetKeyframe]) -> list[list[Detection]]:
        out = []
        for k in keyframes:
            entries = self.by_frame.get((k.video_id, self.spec.frame_index(k.time)), [])
            dets = [
                Detection(box=self._box(e, k), category=e.category, score=e.score)
                for e in entries
                if e.score >= self.min_score
            ]
            out.append(sorted(dets, key=lambda d: -d.score))
        return out
