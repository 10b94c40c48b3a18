"""Simulated object detector output for the location-semantic stream: true boxes of people and
objects with jitter, missed detections and false positives."""

from __future__ import annotations

import numpy as np

from ravar.data.format import Detection
from ravar.synth.catalog import OBJECT_CATEGORY
from ravar.synth.figures import Segments
from ravar.synth.raster import segment_extent
from ravar.synth.render import ground_object_segments
from ravar.synth.scene import Scene

MISS_PROB = {"person": 0.06, "object": 0.2}
JITTER = 0.06  # box edge noise, as a fraction of the box size
FALSE_POSITIVES = 0.4  # mean number per frame
FP_CATEGORIES = ("person", "sports ball", "cup", "chair", "handbag", "bottle", "cell phone")


def _object_extent(seg: Segments, frame: int) -> np.ndarray | None:
    """Pixel box of the handled object (the last capsule when it is not body), or None."""
    if seg.is_body[-1]:
        return None
    lo = np.minimum(seg.p0[frame, -1], seg.p1[frame, -1]) - seg.radius[-1]
    hi = np.maximum(seg.p0[frame, -1], seg.p1[frame, -1]) + seg.radius[-1]
    return np.concatenate([lo, hi])


def true_objects(scene: Scene, frame: int) -> list[tuple[str, np.ndarray]]:
    """(category, pixel box) of every person, handled object, chair and floor object."""
    out: list[tuple[str, np.ndarray]] = []
    for p in scene.people:
        out.append(("person", segment_extent(p.segments, frame)))
        if p.obj is not None:
            box = _object_extent(p.segments, frame)
            if box is not None:
                out.append((OBJECT_CATEGORY[p.obj], box))
        if p.motion is not None and p.motion.chair_x is not None:
            chair = ~p.segments.is_body
            chair[np.flatnonzero(chair)[4:]] = False  # the first four capsules are the chair
            lo = np.minimum(p.segments.p0[frame, chair], p.segments.p1[frame, chair])
            hi = np.maximum(p.segments.p0[frame, chair], p.segments.p1[frame, chair])
            r = p.segments.radius[chair][:, None]
            out.append(("chair", np.concatenate([(lo - r).min(0), (hi + r).max(0)])))
    for obj in scene.ground_objects:
        seg = ground_object_segments(obj)
        out.append((OBJECT_CATEGORY[obj.name], segment_extent(seg, 0, only_body=False)))
    return out


def _clip_box(box: np.ndarray, width: int, height: int) -> list[float] | None:
    b = np.clip(box / [width, height, width, height], 0.0, 1.0)
    if b[2] - b[0] < 1e-3 or b[3] - b[1] < 1e-3:
        return None
    return [round(float(v), 4) for v in b]


def detect(
    scene: Scene, frame: int, rng: np.random.Generator, time: float | None = None
) -> list[Detection]:
    """Noisy detections on one frame (`time` None means the keyframe), highest score first."""
    dets = []
    for category, box in true_objects(scene, frame):
        group = "person" if category == "person" else "object"
        if rng.random() < MISS_PROB[group]:
            continue
        size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
        noisy = box + rng.normal(0, JITTER, 4) * size
        clipped = _clip_box(noisy, scene.width, scene.height)
        if clipped is None:
            continue
        score = float(np.clip(rng.normal(0.88 if group == "person" else 0.7, 0.08), 0.3, 1.0))
        dets.append(Detection(box=clipped, category=category, score=round(score, 3), time=time))
    for _ in range(int(rng.poisson(FALSE_POSITIVES))):
        w, h = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.4)
        x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        cat = FP_CATEGORIES[int(rng.integers(len(FP_CATEGORIES)))]
        score = round(float(rng.uniform(0.3, 0.6)), 3)
        box = [round(x, 4), round(y, 4), round(x + w, 4), round(y + h, 4)]
        dets.append(Detection(box=box, category=cat, score=score, time=time))
    dets.sort(key=lambda d: -d.score)
    return dets
