"""Video inference: a checkpoint, a video and sentences in; boxes and actions per keyframe out.

    predictor = ravar.load("runs/r1/best")
    results = predictor.predict("video.mp4", "the person in the blue shirt", time=5.0)

`Predictor` (predictor.py) samples clips exactly as training did (`prepare.py` makes each sample
with `ravar.data.sample.build_sample`, as the dataset does), `detectors/` supplies the
keyframe detections that location-aware models read, `render.py` draws results and
`output.py` writes `predictions.json`.
"""

from __future__ import annotations

from ravar.inference.keyframes import Keyframe
from ravar.inference.predictor import Predictor, load
from ravar.inference.results import ActionScore, KeyframeResult

__all__ = ["ActionScore", "Keyframe", "KeyframeResult", "Predictor", "load"]
