"""Rendering a sampled scene into RGB frames: textured room, floor objects, people (back to
front, so nearer people occlude farther ones), and mild camera noise."""

from __future__ import annotations

import numpy as np

from ravar.synth.appearance import chair_capsules, object_capsule
from ravar.synth.figures import Segments, to_pixels
from ravar.synth.raster import draw_segments
from ravar.synth.scene import GroundObject, Scene


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """[H, W] smooth random field in about [-1, 1] (bilinear upsampling of a coarse grid)."""
    grid = rng.uniform(-1, 1, (cells + 1, cells + 1))
    ys = np.linspace(0, cells, height)
    xs = np.linspace(0, cells, width)
    rows = np.stack([np.interp(xs, np.arange(cells + 1), g) for g in grid])  # [cells+1, W]
    return np.stack([np.interp(ys, np.arange(cells + 1), c) for c in rows.T], axis=1)  # [H, W]


def _muted(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """A desaturated RGB colour with brightness in [lo, hi]."""
    grey = rng.uniform(lo, hi)
    return np.clip(grey + rng.uniform(-30, 30, 3), 0, 255)


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """[H, W, 3] float32: a wall with panels, pictures and stains above a tiled floor."""
    horizon = int(rng.uniform(0.35, 0.55) * height)
    y = np.arange(height, dtype=np.float32)[:, None]  # [H, 1]
    x = np.arange(width, dtype=np.float32)[None, :]  # [1, W]
    img = np.empty((height, width, 3), np.float32)
    wall = _muted(rng, 90, 200)
    period = rng.uniform(0.08, 0.3) * width
    stripes = rng.uniform(4, 14) * np.sin(2 * np.pi * x / period + rng.uniform(0, 6.3))
    stains = rng.uniform(8, 22) * _smooth_noise(rng, height, width, int(rng.integers(3, 8)))
    img[:] = wall + (stripes + stains)[..., None]
    for _ in range(int(rng.integers(0, 4))):  # windows, doors, pictures
        w, h = rng.uniform(0.08, 0.3) * width, rng.uniform(0.08, 0.35) * height
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, max(1.0, horizon - h))
        img[int(y0) : int(y0 + h), int(x0) : int(x0 + w)] = _muted(rng, 40, 230)
    floor = _muted(rng, 60, 170)
    depth = (y - horizon + 2.0).clip(min=1.0)  # [H, 1] grows towards the camera
    u = (x - width / 2) / depth * rng.uniform(4, 9)  # perspective tile coordinates
    v = rng.uniform(20, 50) / depth
    tiles = ((np.floor(u) + np.floor(v * 3)) % 2) * rng.uniform(8, 25)
    floor_tex = floor + (tiles + 10 * _smooth_noise(rng, height, width, 5))[..., None]
    below = (y >= horizon)[..., 0]
    img[below] = floor_tex[below]
    img[horizon : horizon + 1] *= 0.7  # skirting line
    img += rng.normal(0, 4, (height, width, 1)).astype(np.float32)  # static grain
    return img


def ground_object_segments(obj: GroundObject) -> Segments:
    """Capsules (T = 1) of an object lying on the floor."""
    if obj.name == "chair":
        caps = chair_capsules()
        p0 = np.stack([c[0] for c in caps])[None]  # [1, S, 2]
        p1 = np.stack([c[1] for c in caps])[None]
        radius = np.array([c[2] for c in caps])
    else:
        ends, r = object_capsule(obj.name)
        centre = np.array([0.0, -r])
        p0, p1, radius = (
            (centre + ends[0])[None, None],
            (centre + ends[1])[None, None],
            np.array([r]),
        )
    n = radius.shape[0]
    return Segments(
        p0=to_pixels(p0, obj.centre, 1, obj.scale),
        p1=to_pixels(p1, obj.centre, 1, obj.scale),
        radius=radius * obj.scale,
        colour=np.tile(np.array(obj.rgb, np.float32), (n, 1)),
        is_body=np.zeros(n, bool),
    )


def render(scene: Scene, rng: np.random.Generator, noise: float = 3.0) -> np.ndarray:
    """[T, H, W, 3] uint8 RGB frames of the scene."""
    bg = background(rng, scene.width, scene.height)[None]  # [1, H, W, 3]
    for obj in sorted(scene.ground_objects, key=lambda o: o.centre[1]):
        draw_segments(bg, ground_object_segments(obj))
    frames = np.repeat(bg, len(scene.times), axis=0)  # [T, H, W, 3]
    for p in sorted(scene.people, key=lambda q: (q.ground_y, q.pid)):
        draw_segments(frames, p.segments)
    gain = 1.0 + rng.normal(0, 0.015, (len(scene.times), 1, 1, 1)).astype(np.float32)
    frames *= gain
    if noise > 0:
        fields = noise * rng.standard_normal((4, *frames.shape[1:3], 1), dtype=np.float32)
        pick = rng.integers(0, 4, len(frames))  # each frame gets one of 4 luma noise fields
        frames += fields[pick]  # [T, H, W, 1] broadcast over RGB
    return np.clip(frames + 0.5, 0, 255).astype(np.uint8)
