"""Real-footage stand-ins the tests draw themselves: mp4 clips of people standing and walking,
shaped like ordinary camera footage (H.264, yuv420p, NTSC or odd frame rates, sizes that are no
multiple of 16), with every person's box known on every frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

SKIN = (224, 172, 140)


@dataclass(frozen=True)
class Walker:
    """A person seen from the front: standing `height` px tall, feet at `foot_y`, walking from
    `x0` to `x1` (centre, px) over the clip; colours RGB; `cap`: a cap of that colour."""

    x0: float
    x1: float
    foot_y: float
    height: float
    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    cap: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class ClipSpec:
    """A clip of `frames` frames at `fps`, `width` x `height`, with `people` on a plain room."""

    name: str
    width: int
    height: int
    fps: Fraction
    frames: int
    people: tuple[Walker, ...] = field(default_factory=tuple)

    @property
    def duration(self) -> float:
        return float(self.frames / self.fps)


# like the two clips the README's examples use: two players at 29.97 fps, 10.01 s, 426x240
TWO_PLAYERS = ClipSpec(
    "two_players.mp4",
    426,
    240,
    Fraction(30000, 1001),
    300,
    (
        Walker(110, 150, 212, 170, shirt=(240, 240, 240), trousers=(40, 40, 60)),
        Walker(310, 280, 212, 160, shirt=(30, 70, 200), trousers=(30, 30, 30)),
    ),
)
# three people at 28 fps, 10 s, 340x256; the one in the middle wears a white cap
THREE_PEOPLE = ClipSpec(
    "three_people.mp4",
    340,
    256,
    Fraction(28),
    280,
    (
        Walker(60, 70, 230, 160, shirt=(20, 20, 20), trousers=(90, 70, 50)),
        Walker(170, 175, 236, 170, (245, 245, 245), (30, 40, 90), cap=(250, 250, 250)),
        Walker(285, 270, 228, 150, shirt=(200, 40, 40), trousers=(40, 40, 40)),
    ),
)


def walker_box(w: Walker, t: float) -> list[float]:
    """[x1, y1, x2, y2] pixels of `w` at clip fraction `t` in [0, 1] (arms included)."""
    cx = w.x0 + (w.x1 - w.x0) * t
    u = w.height / 8.0  # one head height
    return [cx - 1.3 * u, w.foot_y - w.height, cx + 1.3 * u, w.foot_y]


def draw_walker(img: np.ndarray, w: Walker, t: float) -> None:
    """Draw `w` at clip fraction `t` into the RGB image `img` [H, W, 3] in place."""
    import cv2

    x1, top, _, foot = walker_box(w, t)
    cx, u = x1 + 1.3 * w.height / 8.0, w.height / 8.0
    swing = 0.25 * u * np.sin(2 * np.pi * 4 * t) if w.x0 != w.x1 else 0.0  # stride

    def poly(points: list[tuple[float, float]], colour: tuple[int, int, int]) -> None:
        cv2.fillConvexPoly(img, np.array(points, np.int32), colour, cv2.LINE_AA)

    head = (int(cx), int(top + 0.5 * u))
    cv2.ellipse(img, head, (int(0.38 * u), int(0.5 * u)), 0, 0, 360, SKIN, -1, cv2.LINE_AA)
    if w.cap is not None:
        cv2.ellipse(img, head, (int(0.42 * u), int(0.3 * u)), 0, 180, 360, w.cap, -1, cv2.LINE_AA)
    shoulders, hips = top + 1.15 * u, top + 4.0 * u
    poly([(cx - 0.95 * u, shoulders), (cx + 0.95 * u, shoulders),
          (cx + 0.75 * u, hips), (cx - 0.75 * u, hips)], w.shirt)  # fmt: skip
    for side in (-1, 1):
        poly([(cx + side * 0.95 * u, shoulders), (cx + side * 1.3 * u, shoulders + 0.3 * u),
              (cx + side * 1.25 * u, hips + 0.4 * u), (cx + side * 0.9 * u, hips + 0.4 * u)],
             w.shirt)  # fmt: skip
        step = side * swing
        poly([(cx + side * 0.05 * u, hips), (cx + side * 0.75 * u, hips),
              (cx + side * 0.85 * u + step, foot), (cx + side * 0.25 * u + step, foot)],
             w.trousers)  # fmt: skip


def clip_frame(spec: ClipSpec, index: int, rng: np.random.Generator) -> np.ndarray:
    """Frame `index` of `spec`: a wall, a floor, the people, camera noise. [H, W, 3] uint8."""
    img = np.empty((spec.height, spec.width, 3), np.uint8)
    floor = int(spec.height * 0.62)
    img[:floor] = (200, 200, 190)
    img[floor:] = (150, 140, 120)
    t = index / max(1, spec.frames - 1)
    for w in spec.people:
        draw_walker(img, w, t)
    noisy = img + rng.normal(0.0, 3.0, img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_clip(spec: ClipSpec, folder: Path, seed: int = 0) -> Path:
    """Write `spec` as `folder/spec.name` (H.264, yuv420p) and return its path."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.name
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for n in range(spec.frames):
            frame = av.VideoFrame.from_ndarray(clip_frame(spec, n, rng), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def boxes_at(spec: ClipSpec, index: int) -> list[list[float]]:
    """Every person's [x1, y1, x2, y2] pixel box on frame `index` of `spec`."""
    t = index / max(1, spec.frames - 1)
    return [walker_box(w, t) for w in spec.people]
