"""The page's prediction, free of web code: one video, one sentence, one keyframe time in;
the annotated keyframe, the top actions and the predictions.json entry out."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ravar.app.uploads import hide_upload_path
from ravar.errors import PredictError, RavarError
from ravar.inference.inputs import open_video
from ravar.inference.keyframes import Keyframe
from ravar.inference.predictor import Predictor
from ravar.inference.render import draw_results
from ravar.inference.results import KeyframeResult

NO_VIDEO = "video: no video given: upload one or pick an example"


@dataclass
class PageResult:
    """What the page shows for one submission."""

    image: np.ndarray  # [H, W, 3] uint8 RGB: the keyframe with the box and caption drawn
    actions: dict[str, float]  # top-k action name -> probability, most probable first
    entry: dict[str, Any]  # its predictions.json "results" entry ("video": the file's name)
    result: KeyframeResult


def parse_time(time: float | str | None) -> float | None:
    """The keyframe time in seconds, or None (the middle of the video) for an empty field."""
    if time is None or (isinstance(time, str) and not time.strip()):
        return None
    try:
        value = float(time)
    except (TypeError, ValueError):
        raise PredictError(f"time: expected a number of seconds, got {time!r}") from None
    if not math.isfinite(value):
        raise PredictError(f"time: expected a number of seconds, got {time!r}")
    return value


def video_duration(video: str | os.PathLike | None) -> float | None:
    """Length in seconds of `video`, or None when it is absent or unreadable."""
    if not video:
        return None
    try:
        return open_video(video).duration
    except Exception:  # the submission reports it, with its message
        return None


def predict_page(
    predictor: Predictor,
    video: str | os.PathLike | None,
    text: str | None,
    time: float | str | None = None,
    top_k: int = 5,
) -> PageResult:
    """Predict for sentence `text` at `time` seconds of `video` (None: the middle); errors are
    PredictError / FrameError with the messages the Python API and the CLI give, the video
    named by its file name only. The entry's "video" is the file's name too (an upload's path
    on the server means nothing to the user)."""
    if not video:
        raise PredictError(NO_VIDEO)
    keyframes: list[Keyframe] = []
    try:
        (result,) = predictor.predict(
            video,
            text if text is not None else "",
            time=parse_time(time),
            top_k=top_k,
            on_chunk=lambda found, _: keyframes.extend(found),
        )
    except RavarError as e:
        raise type(e)(hide_upload_path(str(e), video)) from None
    image = np.asarray(draw_results(keyframes[0].image, [result]))  # [H, W, 3]
    actions = {a.name: a.probability for a in result.actions}
    entry = result.to_dict()
    entry["video"] = Path(video).name  # the server's copy of an upload has a meaningless path
    return PageResult(image=image, actions=actions, entry=entry, result=result)
