"""What a dataset-level detector sees (one keyframe of a dataset) and what it must do."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ravar.data.format import Detection, FrameSourceSpec
from ravar.inference.detectors import Detector
from ravar.inference.keyframes import Keyframe

KeyframeId = tuple[str, float]  # (video_id, time in the dataset's seconds)


@dataclass
class DatasetKeyframe:
    """One keyframe of a dataset: its video, its time (the records' seconds) and, for detectors
    that look at pixels, its RGB image `[H, W, 3]` uint8."""

    video_id: str
    time: float
    image: np.ndarray | None = None

    @property
    def id(self) -> KeyframeId:
        return (self.video_id, float(self.time))


class DatasetDetector(ABC):
    """Finds the objects of dataset keyframes. `needs_image`: the runner reads each keyframe's
    image through the dataset's frame source before calling `detect`."""

    needs_image: bool = False

    @abstractmethod
    def detect(self, keyframes: Sequence[DatasetKeyframe]) -> list[list[Detection]]:
        """One list of keyframe detections (normalised xyxy, highest score first) per keyframe."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The detector's kind and settings: two runs with equal descriptions give equal output."""

    def notes(self) -> list[str]:
        """Things the user should know after a run (e.g. keyframes a file had no entry for)."""
        return []


class ImageDetector(DatasetDetector):
    """A video-inference detector (`ravar.inference.detectors`: hog, detr) run on the images of
    dataset keyframes, `batch` keyframes per call."""

    needs_image = True

    def __init__(self, detector: Detector, spec: FrameSourceSpec) -> None:
        self.detector = detector
        self.spec = spec

    def describe(self) -> dict[str, Any]:
        return self.detector.describe()

    def detect(self, keyframes: Sequence[DatasetKeyframe]) -> list[list[Detection]]:
        frames = []
        for k in keyframes:
            assert k.image is not None, "ImageDetector needs the keyframe image"
            index = self.spec.frame_index(k.time)
            frames.append(
                Keyframe(image=k.image, time=float(k.time), index=index, fps=self.spec.fps)
            )
        return self.detector.detect(frames)
