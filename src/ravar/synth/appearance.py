"""Colour palettes of the attributes a sentence can name, and the capsules a person (with their
chair and object) is drawn from."""

from __future__ import annotations

import numpy as np

from ravar.synth.actions import CHAIR_SEAT_Y, Motion
from ravar.synth.figures import (
    OBJECT_HALF_LENGTH,
    OBJECT_RADIUS,
    PARTS,
    R_HEAD,
    Segments,
    body_capsules,
    to_pixels,
)

SHIRT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 35, 35),
    "green": (40, 155, 55),
    "blue": (40, 75, 210),
    "yellow": (240, 210, 40),
    "orange": (245, 135, 25),
    "purple": (135, 50, 175),
    "white": (242, 242, 242),
    "black": (28, 28, 28),
    "pink": (245, 135, 195),
}
TROUSER_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (32, 32, 36),
    "blue": (45, 70, 160),
    "brown": (120, 78, 40),
    "grey": (130, 130, 130),
    "white": (232, 232, 226),
    "green": (45, 115, 60),
}
HAT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 30, 30),
    "blue": (35, 70, 215),
    "yellow": (245, 215, 35),
    "black": (25, 25, 25),
    "white": (245, 245, 245),
    "green": (35, 160, 50),
}
SKIN_TONES = ((241, 204, 172), (214, 164, 124), (165, 114, 78), (104, 72, 48))
HAIR_COLOURS = ((30, 22, 16), (92, 58, 28), (205, 172, 95), (150, 150, 150))
OBJECT_COLOURS = {
    "ball": ((235, 120, 30), (245, 245, 245), (210, 40, 40)),
    "cup": ((245, 245, 240), (200, 40, 40), (60, 110, 200)),
    "box": ((175, 125, 72), (150, 105, 60)),
    "phone": ((22, 22, 26),),
    "chair": ((110, 70, 40), (90, 90, 95), (150, 110, 70)),
}
SIZE_SCALE = {"tall": 1.0, "short": 0.82, "child": 0.62}
CHILD_HEAD = 0.095  # children's heads are larger relative to their height


def _dark(rgb: tuple[int, int, int], f: float = 0.78) -> tuple[float, float, float]:
    return (rgb[0] * f, rgb[1] * f, rgb[2] * f)


def object_capsule(obj: str) -> tuple[np.ndarray, float]:
    """Offsets [2, 2] of the capsule ends from the object centre, and its radius (person units)."""
    half = OBJECT_HALF_LENGTH[obj]
    if obj == "box":
        return np.array([[-2.5 * half, 0.0], [2.5 * half, 0.0]]), OBJECT_RADIUS[obj]
    return np.array([[0.0, -half], [0.0, half]]), OBJECT_RADIUS[obj]


def chair_capsules() -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(start [2], end [2], radius) of a side-view chair whose seat is under the pelvis."""
    seat = CHAIR_SEAT_Y
    return [
        (np.array([-0.11, seat - 0.01]), np.array([-0.14, seat - 0.33]), 0.02),
        (np.array([-0.1, seat]), np.array([-0.1, -0.01]), 0.015),
        (np.array([0.13, seat]), np.array([0.13, -0.01]), 0.015),
        (np.array([-0.12, seat]), np.array([0.15, seat]), 0.025),
    ]


def person_segments(
    motion: Motion,
    colours: dict[str, tuple[int, int, int]],
    long_hair: bool,
    has_hat: bool,
    child: bool,
    anchor: tuple[float, float],
    facing: int,
    scale: float,
    object_rgb: tuple[int, int, int] | None = None,
    chair_rgb: tuple[int, int, int] | None = None,
) -> Segments:
    """Pixel capsules of one person over T frames: chair (if any), body parts, held object.

    `colours` maps "shirt", "trousers", "hat", "skin", "hair" to RGB.
    """
    n_t = motion.pose.pelvis.shape[0]
    palette = dict(colours)
    for k in ("shirt", "trousers", "skin"):
        palette[f"{k}_dark"] = _dark(colours[k])
    palette.setdefault("hat", (0, 0, 0))
    colour_of = dict(PARTS)
    starts, ends, radii, rgbs, body = [], [], [], [], []

    def add(p0: np.ndarray, p1: np.ndarray, r: float, rgb, is_body: bool) -> None:
        starts.append(np.broadcast_to(p0, (n_t, 2)))
        ends.append(np.broadcast_to(p1, (n_t, 2)))
        radii.append(r)
        rgbs.append(rgb)
        body.append(is_body)

    if motion.chair_x is not None and chair_rgb is not None:
        for p0, p1, r in chair_capsules():
            shift = np.array([motion.chair_x, 0.0])
            add(p0 + shift, p1 + shift, r, chair_rgb, False)
    head_r = CHILD_HEAD if child else R_HEAD
    for part, p0, p1, r in body_capsules(motion.pose, long_hair, has_hat, head_r):
        add(p0, p1, r, palette[colour_of[part]], True)
    if motion.obj is not None and motion.obj_pos is not None and object_rgb is not None:
        ends_off, r = object_capsule(motion.obj)
        add(motion.obj_pos + ends_off[0], motion.obj_pos + ends_off[1], r, object_rgb, False)
    p0 = to_pixels(np.stack(starts, axis=1), anchor, facing, scale)  # [T, S, 2]
    p1 = to_pixels(np.stack(ends, axis=1), anchor, facing, scale)  # [T, S, 2]
    return Segments(
        p0=p0,
        p1=p1,
        radius=np.array(radii) * scale,
        colour=np.array(rgbs, dtype=np.float32),
        is_body=np.array(body, dtype=bool),
    )
