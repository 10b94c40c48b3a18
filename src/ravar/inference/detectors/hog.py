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
    suppression; a window's score is sigmoid(SVM margin).
    """

    kind = "hog"

    def __init__(
        self,
        min_score: float = 0.6,
        min_side: int = 480,
        scale: float = 1.05,
        win_stride: int = 8,
        nms_iou: float = 0.3,
    ) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise PredictError(f"hog detector: min_score must be in [0, 1], got {min_score}")
        cv2 = _opencv()
        self.min_score = float(min_score)
        self.min_side = int(min_side)
        self.scale = float(scale)
        self.win_stride = int(win_stride)
        self.nms_iou = float(nms_iou)
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
        out = []
        for i in nms(boxes, scores, self.nms_iou).tolist():
            box = [round(float(v), 6) for v in boxes[i]]
            score = float(scores[i])
            if score >= self.min_score and box[0] < box[2] and box[1] < box[3]:
                out.append(Detection(box=box, category="person", score=round(score, 6)))
        return out

    def detect(self, keyframes: Sequence[Keyframe]) -> list[list[Detection]]:
        return [self.detect_image(k.image) for k in keyframes]
