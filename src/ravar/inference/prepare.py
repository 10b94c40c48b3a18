"""One group of keyframes made ready for the model: frames decoded once, detections found,
one sample per (keyframe, sentence) built as the dataset builds evaluation samples."""

from __future__ import annotations

import time as clock
from dataclasses import dataclass
from typing import Any

import numpy as np

from ravar.data.dataset import ClipConfig
from ravar.data.format import Detection
from ravar.data.frames import VideoReader
from ravar.inference.clips import clip_plan, keyframe_inputs
from ravar.inference.detectors import Detector
from ravar.inference.keyframes import Keyframe, frame_at


@dataclass
class PreparedChunk:
    """Model inputs of keyframes `times` x sentences, and how long decoding and detection took."""

    times: list[float]
    keyframes: list[Keyframe]  # one per time, with the keyframe's pixels
    clips: list[np.ndarray]  # one [T] array of frame numbers per time
    detections: list[list[Detection]]  # one list per time
    samples: list[dict[str, Any]]  # time-major: every sentence of time 0, then of time 1, ...
    owners: list[int]  # samples[i] belongs to keyframe owners[i]
    decode_ms: float  # per keyframe
    detect_ms: float  # per keyframe


def prepare_chunk(
    reader: VideoReader,
    times: list[float],
    texts: list[str],
    detector: Detector,
    config: ClipConfig,
) -> PreparedChunk:
    """Decode the union of the clips' frames of keyframe `times` with one read, detect on the
    keyframes, and build one sample per (time, sentence)."""
    n = reader.num_frames
    keys = [frame_at(t, reader.fps, n) for t in times]
    clips = [clip_plan(config, reader.fps, k, n) for k in keys]  # each [T]
    wanted = np.unique(np.concatenate([*clips, np.array(keys)]))  # sorted frame numbers
    t0 = clock.perf_counter()
    raw = reader.read(wanted.tolist())  # [F, H, W, 3] uint8 RGB
    decode_ms = (clock.perf_counter() - t0) * 1000 / len(times)
    rows = {int(f): i for i, f in enumerate(wanted)}

    keyframes = [Keyframe(raw[rows[k]], t, k, reader.fps) for t, k in zip(times, keys, strict=True)]
    t0 = clock.perf_counter()
    detections = detector.detect(keyframes)
    detect_ms = (clock.perf_counter() - t0) * 1000 / len(times)

    samples, owners = [], []
    for j, (k, clip) in enumerate(zip(keys, clips, strict=True)):
        base = keyframe_inputs(raw, rows, clip, k, detections[j], config)
        for text in texts:
            samples.append({**base, "text": text})
            owners.append(j)
    return PreparedChunk(times, keyframes, clips, detections, samples, owners, decode_ms, detect_ms)
