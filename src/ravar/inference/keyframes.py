"""Keyframe times of a video: checking them, turning them into frame numbers, spacing them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ravar.errors import PredictError


@dataclass
class Keyframe:
    """One keyframe handed to a detector: its pixels, time and frame number in its video."""

    image: np.ndarray  # [H, W, 3] uint8 RGB, the video's original resolution
    time: float  # seconds from the start of the video
    index: int  # decoded frame number (0 = first frame)
    fps: float  # frame rate of the video


def frame_at(time: float, fps: float, num_frames: int) -> int:
    """Frame number shown at `time` seconds: round(time * fps), halves rounded up as the dataset
    format does, and kept inside the video (0 .. num_frames - 1)."""
    return min(max(math.floor(time * fps + 0.5), 0), num_frames - 1)


def check_times(times: Sequence[float], duration: float, what: str = "time") -> list[float]:
    """`times` as floats, each within [0, duration]; otherwise a PredictError naming the value."""
    out = []
    for t in times:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise PredictError(f"{what}: expected a number of seconds, got {t!r}")
        if t < 0:
            raise PredictError(f"{what}: {t:g} s is negative (times count from the video's start)")
        if t > duration:
            raise PredictError(
                f"{what}: {t:g} s is beyond the end of the video ({duration:.2f} s long)"
            )
        out.append(float(t))
    return out


def every_times(every: float, duration: float, what: str = "every") -> list[float]:
    """Keyframe times 0, every, 2 * every, ... strictly before the end of the video."""
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not math.isfinite(every):
        raise PredictError(f"{what}: expected a number of seconds, got {every!r}")
    if every <= 0:
        raise PredictError(f"{what}: must be > 0 seconds, got {every:g}")
    count = math.ceil(duration / every - 1e-9)
    return [round(k * every, 6) for k in range(max(count, 1))]


def keyframe_times(
    duration: float,
    time: float | Sequence[float] | None,
    every: float | None,
    prefix: str = "",
) -> list[float]:
    """The keyframe times asked for: `time` (one or several, each once), every `every` seconds,
    or, with neither, the middle of a video `duration` seconds long. Errors name the argument
    as `prefix` + "time" / "every"."""
    if time is not None and every is not None:
        raise PredictError(f"{prefix}time and {prefix}every: give one of them, not both")
    if every is not None:
        return every_times(every, duration, what=f"{prefix}every")
    if time is None:
        return [round(duration / 2, 6)]
    times = [time] if isinstance(time, (int, float)) else list(time)
    if not times:
        raise PredictError(f"{prefix}time: no keyframe time given")
    times = check_times(times, duration, what=f"{prefix}time")
    return list(dict.fromkeys(times))  # each time once, in the order given
