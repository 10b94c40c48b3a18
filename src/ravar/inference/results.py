"""What video inference returns: per keyframe and sentence, a box and action probabilities."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ravar.data.format import Detection
from ravar.labels import NUM_CLASSES, action_name


@dataclass
class ActionScore:
    """One AVA action with its predicted probability."""

    id: int  # AVA v2.2 id, 1..80
    name: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "probability": round(self.probability, 6)}


def top_actions(probabilities: list[float], k: int) -> list[ActionScore]:
    """The `k` most probable actions of a `[80]` probability list, highest first (ties: lower
    id first)."""
    order = sorted(range(NUM_CLASSES), key=lambda i: (-probabilities[i], i))[:k]
    return [ActionScore(i + 1, action_name(i + 1), float(probabilities[i])) for i in order]


def _detection_dict(det: Detection, width: int, height: int) -> dict[str, Any]:
    scale = (width, height, width, height)
    pixels = [round(v * s, 3) for v, s in zip(det.box, scale, strict=True)]
    return {**det.to_dict(), "box_pixels": pixels}


@dataclass
class KeyframeResult:
    """The prediction for one sentence at one keyframe of a video."""

    video: str  # path of the video file
    time: float  # seconds from the start of the video
    frame_index: int  # decoded frame number of the keyframe (0 = first frame)
    text: str  # the referring sentence
    box: list[float]  # normalised xyxy on the keyframe
    box_pixels: list[float]  # the same box in pixels of the video's frames (x by W, y by H)
    image_size: tuple[int, int]  # (W, H) of the video's frames
    actions: list[ActionScore]  # top-k actions, most probable first
    probabilities: list[float]  # [80] sigmoid of the logits; entry i is AVA id i + 1
    detections: list[Detection] = field(default_factory=list)  # what the model was given
    clip_frames: list[int] = field(default_factory=list)  # [T] frame numbers of the clip
    timings_ms: dict[str, float] = field(default_factory=dict)  # decode, detect, model

    def above(self, threshold: float) -> list[ActionScore]:
        """Every action with probability >= `threshold`, most probable first."""
        n = sum(p >= threshold for p in self.probabilities)
        return top_actions(self.probabilities, n)

    def to_dict(self, threshold: float | None = None) -> dict[str, Any]:
        """A JSON-ready dict (the "results" entries of predictions.json)."""
        width, height = self.image_size
        d: dict[str, Any] = {
            "video": self.video,
            "time": self.time,
            "frame_index": self.frame_index,
            "text": self.text,
            "box": [round(v, 6) for v in self.box],
            "box_pixels": [round(v, 3) for v in self.box_pixels],
            "actions": [a.to_dict() for a in self.actions],
            "probabilities": [round(p, 6) for p in self.probabilities],
            "detections": [_detection_dict(det, width, height) for det in self.detections],
            "clip_frames": list(self.clip_frames),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }
        if threshold is not None:
            d["above_threshold"] = [a.to_dict() for a in self.above(threshold)]
        return d
