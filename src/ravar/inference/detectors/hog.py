"""OpenCV's HOG + linear SVM people detector (Dalal & Triggs): persons only, nothing to download."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ravar.data.format import Detection
from ravar.errors import PredictError
from ravar.inference.detectors import Detector
from ravar.inference.keyframes import Keyframe
from ravar.util.box_ops import nms, normalize_boxes


def _opencv() -> Any:
    try:
        import cv2
    except ImportError:
        raise PredictError(
            "detector 'hog' needs OpenCV 4 (pip install 'opencv-python-headless<5')"
        ) from None
    if not hasattr(cv2, "HOGDescriptor"):
        raise PredictError(
            f"detector 'hog': this OpenCV ({cv2.__version__}) has no HOGDescriptor; "
            "install OpenCV 4 (pip install 'opencv-python-headless<5')"
        )
    return cv2


class HOGPersonDetector(Detector):
    """Upright people, found by a sliding 64x128 window over an image pyramid.

    Frames whose short side is below `min_side` pixels are upscaled first (the window needs
    people about 100 pixels tall or more). Overlapping windows are merged by non-maximum
    suppression; a window's score is sigmoid(SVM margin). The window holds the person with a
    margin around them; `trim` (fractions of the window's width and height) is cut from each
    side of a window to give the person's box.

    The defaults were chosen on hand-drawn boxes of the shared 426x240 basketball clip
    (`benchmarks/hog_settings.py`): against the earlier 480 px / no trim they find more people
    at IoU 0.5 (15 instead of 11 of 26) in less than half the time.
    """

    kind = "hog"

    def __init__(
        self,
        min_score: float = 0.6,
        min_side: int = 360,
        scale: float = 1.05,
        win_stride: int = 8,
        nms_iou: float = 0.3,
        trim: tuple[float, float] = (0.125, 0.0625),
    ) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise PredictError(f"hog detector: min_score must be in [0, 1], got {min_score}")
        if len(trim) != 2 or not all(0.0 <= t < 0.5 for t in trim):
            raise PredictError(f"hog detector: trim must be two fractions in [0, 0.5), got {trim}")
        if scale <= 1.0:
            raise PredictError(f"hog detector: scale (pyramid step) must be > 1, got {scale}")
        cv2 = _opencv()
        self.min_score = float(min_score)
        self.min_side = int(min_side)
        self.scale = float(scale)
        self.win_stride = int(win_stride)
        self.nms_iou = float(nms_iou)
        self.trim = (float(trim[0]), float(trim[1]))
        self._cv2 = cv2
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "min_score": self.min_score,
            "min_side": self.min_side,
            "scale": self.scale,
            "win_stride": self.win_stride,
            "nms_iou": self.nms_iou,
            "trim": list(self.trim),
        }

    def detect_image(self, image: np.ndarray) -> list[Detection]:
        """Persons on one RGB image `[H, W, 3]` uint8, highest score first."""
        height, width = image.shape[:2]
        factor = max(1.0, self.min_side / min(height, width))
        if factor > 1.0:
            size = (round(width * factor), round(height * factor))
            image = self._cv2.resize(image, size, interpolation=self._cv2.INTER_LINEAR)
        rects, margins = self._hog.detectMultiScale(
            np.ascontiguousarray(image),
            winStride=(self.win_stride, self.win_stride),
            padding=(8, 8),
            scale=self.scale,
            groupThreshold=0,  # raw windows: merged below by NMS
        )
        if len(rects) == 0:
            return []
        boxes = torch.as_tensor(np.asarray(rects), dtype=torch.float32).reshape(-1, 4)  # xywh
        boxes[:, 2:] += boxes[:, :2]  # [N, 4] xyxy in the scaled image
        boxes = normalize_boxes(boxes, image.shape[1], image.shape[0]).clamp(0.0, 1.0)
        scores = torch.sigmoid(torch.as_tensor(np.ravel(margins), dtype=torch.float32))  # [N]
        keep = nms(boxes, scores, self.nms_iou)  # windows merged before trimming
        boxes, scores = boxes[keep], scores[keep]  # [K, 4], [K]
        margin = (boxes[:, 2:] - boxes[:, :2]) * torch.tensor(self.trim)  # [K, 2] per side
        boxes = torch.cat([boxes[:, :2] + margin, boxes[:, 2:] - margin], dim=1)  # [K, 4]
        out = []
        for i in range(len(keep)):
            box = [round(float(v), 6) for v in boxes[i]]
            score = float(scores[i])
            if score >= self.min_score and box[0] < box[2] and box[1] < box[3]:
                out.append(Detection(box=box, category="person", score=round(score, 6)))
        return out

    def detect(self, keyframes: Sequence[Keyframe]) -> list[list[Detection]]:
        return [self.detect_image(k.image) for k in keyframes]
