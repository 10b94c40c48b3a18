"""Vectorised drawing of shaded capsules (thick line segments) into a stack of frames."""

from __future__ import annotations

import numpy as np

from ravar.synth.figures import Segments


def draw_segments(frames: np.ndarray, seg: Segments, shade: float = 0.3) -> None:
    """Paint the capsules of one layer into `frames` [T, H, W, 3] (float32, 0..255) in place.

    Later segments cover earlier ones; each capsule is darker towards its rim by `shade`.
    All T frames are drawn at once on a per-frame window around the layer.
    """
    n_t, height, width, _ = frames.shape
    keep = seg.radius > 0
    if not keep.any():
        return
    p0, p1 = seg.p0[:, keep].astype(np.float32), seg.p1[:, keep].astype(np.float32)  # [T, S, 2]
    radius = seg.radius[keep].astype(np.float32)  # [S]
    colour = seg.colour[keep].astype(np.float32)  # [S, 3]
    lo = np.floor(np.minimum(p0, p1) - radius[None, :, None]).min(axis=1)  # [T, 2]
    hi = np.ceil(np.maximum(p0, p1) + radius[None, :, None]).max(axis=1)  # [T, 2]
    lo = np.clip(lo, 0, [width, height]).astype(np.int64)  # [T, 2] window origin per frame
    hi = np.clip(hi, 0, [width, height]).astype(np.int64)
    pw, ph = int((hi - lo)[:, 0].max()), int((hi - lo)[:, 1].max())
    if pw <= 0 or ph <= 0:
        return
    xs = (lo[:, 0:1] + np.arange(pw)[None]).astype(np.float32) + 0.5  # [T, pw] pixel centres
    ys = (lo[:, 1:2] + np.arange(ph)[None]).astype(np.float32) + 0.5  # [T, ph]
    v = p1 - p0  # [T, S, 2]
    inv_vv = 1.0 / np.maximum((v * v).sum(-1), 1e-6)  # [T, S]
    wx = xs[:, None, None, :] - p0[..., 0, None, None]  # [T, S, 1, pw]
    wy = ys[:, None, :, None] - p0[..., 1, None, None]  # [T, S, ph, 1]
    vx, vy = v[..., 0, None, None], v[..., 1, None, None]  # [T, S, 1, 1]
    u = np.clip((wx * vx + wy * vy) * inv_vv[..., None, None], 0.0, 1.0)  # [T, S, ph, pw]
    dx, dy = wx - u * vx, wy - u * vy
    d2 = dx * dx + dy * dy  # [T, S, ph, pw]
    r2 = (radius * radius)[None, :, None, None]
    cover = d2 <= r2  # [T, S, ph, pw]
    n_s = cover.shape[1]
    top = n_s - 1 - np.argmax(cover[:, ::-1], axis=1)  # [T, ph, pw] last (front-most) segment
    hit = cover.any(axis=1)  # [T, ph, pw]
    rel = np.take_along_axis(d2 / r2, top[:, None], axis=1)[:, 0]  # [T, ph, pw] 0 centre, 1 rim
    rgb = colour[top] * (1.0 - shade * rel)[..., None]  # [T, ph, pw, 3]
    t_idx, y_idx, x_idx = np.nonzero(hit)
    yy, xx = lo[t_idx, 1] + y_idx, lo[t_idx, 0] + x_idx
    inside = (yy < height) & (xx < width)
    frames[t_idx[inside], yy[inside], xx[inside]] = rgb[t_idx[inside], y_idx[inside], x_idx[inside]]


def segment_extent(seg: Segments, frame: int, only_body: bool = True) -> np.ndarray:
    """Pixel box [x1, y1, x2, y2] enclosing the (body) capsules of one frame."""
    mask = (seg.radius > 0) & (seg.is_body if only_body else True)
    p0, p1, r = seg.p0[frame, mask], seg.p1[frame, mask], seg.radius[mask]  # [S, 2], [S, 2], [S]
    lo = np.minimum(p0, p1) - r[:, None]
    hi = np.maximum(p0, p1) + r[:, None]
    return np.concatenate([lo.min(axis=0), hi.max(axis=0)])
