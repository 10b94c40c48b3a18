"""`ClipConfig`: how referred instances become clips (frames, window, size, normalisation,
detections, augmentation). Models keep it in their config and checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ravar.data.transforms import normalization_stats


@dataclass
class ClipConfig:
    """How instances become clips. Models record it in their checkpoints so that inference
    samples clips exactly as training did."""

    num_frames: int = 8  # T
    window_seconds: float = 3.0  # T frames over +-window/2 around the keyframe (within the data)
    stride: float | None = None  # frames between slots; overrides window_seconds when set
    size: tuple[int, int] = (224, 224)  # (height, width) of every frame
    normalization: str = "imagenet"  # see ravar.data.transforms.NORMALIZATIONS
    max_detections: int = 16  # D: detections padded / cut to this many (highest scores kept)
    hflip_prob: float = 0.5  # training only: mirror clip, boxes and left/right words together
    temporal_jitter: bool = True  # training only
    num_clips: int = 1  # evaluation: K clips at K temporal phases (predictions are averaged)
    on_missing_frame: str = "raise"  # or "nearest": use the nearest good frame, with a warning
    jpeg_draft: bool = False  # JPEG frames: decode at a reduced scale still >= size (faster)

    def __post_init__(self) -> None:
        if isinstance(self.size, int):
            self.size = (self.size, self.size)
        self.size = (int(self.size[0]), int(self.size[1]))
        if self.num_frames < 1 or self.num_clips < 1 or self.max_detections < 0:
            raise ValueError(
                "ClipConfig: num_frames and num_clips must be >= 1, max_detections >= 0"
            )
        if not 0.0 <= self.hflip_prob <= 1.0:
            raise ValueError(f"ClipConfig: hflip_prob must be in [0, 1], got {self.hflip_prob}")
        normalization_stats(self.normalization)  # raises on an unknown name

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        return d
