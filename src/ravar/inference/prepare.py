"""Groups of keyframes made ready for the model: the frames of all groups decoded in one forward
pass, detections found, one sample per (keyframe, sentence) made by `build_sample`, as the
dataset makes its evaluation samples."""

from __future__ import annotations

import time as clock
from dataclasses import dataclass
from typing import Any

import numpy as np

from ravar.data.clip_config import ClipConfig
from ravar.data.format import Detection
from ravar.data.frames import FrameStream, VideoReader
from ravar.data.sample import build_sample
from ravar.inference.clips import clip_plan
from ravar.inference.detectors import Detector
from ravar.inference.keyframes import Keyframe, frame_at


@dataclass
class ChunkPlan:
    """Which frames a group of keyframes needs: keyframe numbers, clips, their union."""

    times: list[float]
    keys: list[int]  # keyframe number per time
    clips: list[np.ndarray]  # one [T] array of frame numbers per time
    frames: list[int]  # sorted union of the clips' frames and the keyframes


def plan_chunk(reader: VideoReader, times: list[float], config: ClipConfig) -> ChunkPlan:
    """The frames that keyframe `times` of `reader`'s video need under clip settings `config`."""
    n = reader.num_frames
    keys = [frame_at(t, reader.fps, n) for t in times]
    clips = [clip_plan(config, reader.fps, k, n) for k in keys]  # each [T]
    frames = np.unique(np.concatenate([*clips, np.array(keys)]))  # sorted frame numbers
    return ChunkPlan(list(times), keys, clips, [int(f) for f in frames])


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
    frames: FrameStream,
    group: int,
    texts: list[str],
    detector: Detector,
    config: ClipConfig,
    uint8: bool = False,
) -> PreparedChunk:
    """Decode the frames of chunk `group` of `frames` (planned with `plan_chunk`), detect on the
    keyframes, and build one sample per (time, sentence); `uint8` leaves the pixels for
    `to_device` to normalise."""
    plan = frames.plans[group]
    t0 = clock.perf_counter()
    wanted, raw = frames.read(group)  # [F, H, W, 3] uint8 RGB
    decode_ms = (clock.perf_counter() - t0) * 1000 / len(plan.times)
    rows = {f: i for i, f in enumerate(wanted)}
    fps = frames.reader.fps

    keys = zip(plan.times, plan.keys, strict=True)
    keyframes = [Keyframe(raw[rows[k]], t, k, fps) for t, k in keys]
    t0 = clock.perf_counter()
    detections = detector.detect(keyframes)
    detect_ms = (clock.perf_counter() - t0) * 1000 / len(plan.times)

    samples, owners = [], []
    for j, (k, clip) in enumerate(zip(plan.keys, plan.clips, strict=True)):
        # no flip at inference: a keyframe's samples differ only in their sentence, so the
        # pixels and detections are made once and shared
        base = build_sample(raw, wanted, clip, k, texts[0], detections[j], config, uint8=uint8)
        for text in texts:
            samples.append({**base, "text": text})
            owners.append(j)
    return PreparedChunk(
        plan.times, keyframes, plan.clips, detections, samples, owners, decode_ms, detect_ms
    )


class KeyframeFrames(FrameStream):
    """The frames of a video's keyframe chunks, read in one forward pass (see `FrameStream`)."""

    def __init__(self, reader: VideoReader, plans: list[ChunkPlan]) -> None:
        super().__init__(reader, [p.frames for p in plans])
        self.plans = plans


def chunk_frames(
    reader: VideoReader, chunks: list[list[float]], config: ClipConfig
) -> KeyframeFrames:
    """A frame stream over keyframe time groups `chunks` (each one `prepare_chunk` call)."""
    return KeyframeFrames(reader, [plan_chunk(reader, c, config) for c in chunks])
