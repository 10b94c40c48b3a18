"""Keyframe detectors: where the people and objects are, for models with a location stream.

A detector maps keyframes to lists of `ravar.data.format.Detection` (normalised xyxy box,
category, score). `build_detector` picks one from a short name:

    "none"               no detections
    "hog"                OpenCV's HOG people detector (no download, persons only)
    "detr:NAME_OR_PATH"  a Hugging Face DETR from a local folder or the local HF cache
    "boxes:FILE"         boxes a user wrote into a JSON file (see boxes_file.py for the schema)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from ravar.data.format import Detection
from ravar.errors import PredictError
from ravar.inference.keyframes import Keyframe

DETECTOR_CHOICES = ("none", "hog", "detr:NAME_OR_PATH", "boxes:FILE")


class Detector(ABC):
    """Finds objects on keyframes. `kind` names the implementation in predictions.json."""

    kind: ClassVar[str] = ""

    @abstractmethod
    def detect(self, keyframes: Sequence[Keyframe]) -> list[list[Detection]]:
        """One list of detections (normalised xyxy boxes) per keyframe, in order."""

    def describe(self) -> dict[str, Any]:
        """What predictions.json records about this detector: its kind and settings."""
        return {"kind": self.kind}


class NoDetector(Detector):
    """No detections at all (for models without a location stream)."""

    kind = "none"

    def detect(self, keyframes: Sequence[Keyframe]) -> list[list[Detection]]:
        return [[] for _ in keyframes]


def build_detector(spec: str | Detector | None, min_score: float | None = None) -> Detector:
    """The detector that `spec` names (see the module docstring); a Detector is returned as it
    is. `min_score` overrides the detector's score threshold."""
    if isinstance(spec, Detector):
        return spec
    if spec is None or spec == "none":
        return NoDetector()
    if not isinstance(spec, str):
        raise PredictError(f"detector: expected a name, got {type(spec).__name__}")
    kw: dict[str, Any] = {} if min_score is None else {"min_score": min_score}
    if spec == "hog":
        from ravar.inference.detectors.hog import HOGPersonDetector

        return HOGPersonDetector(**kw)
    kind, sep, arg = spec.partition(":")
    if sep and arg and kind == "detr":
        from ravar.inference.detectors.detr import HFDetrDetector

        return HFDetrDetector(arg, **kw)
    if sep and arg and kind == "boxes":
        from ravar.inference.detectors.boxes_file import BoxesFileDetector

        return BoxesFileDetector(Path(arg), **kw)
    raise PredictError(f"detector: unknown detector {spec!r}; choose from {DETECTOR_CHOICES}")


__all__ = ["DETECTOR_CHOICES", "Detector", "NoDetector", "build_detector"]
