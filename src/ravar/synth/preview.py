"""`ravar synth preview`: a PNG grid of keyframes with the referred person's box, sentence and
actions, plus a strip of frames of one clip showing its motion."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from ravar.data.format import list_splits, load_meta, read_split
from ravar.data.frames import open_frame_source
from ravar.errors import DataFormatError, RavarError
from ravar.labels import action_name

STRIP_FRAMES = 8


def read_clip(dataset_dir: Path, video_id: str) -> np.ndarray:
    """All frames [T, H, W, 3] uint8 of a clip of a RefAVA-Synth dataset."""
    meta = load_meta(dataset_dir)
    spec = meta.frame_source
    source = open_frame_source(dataset_dir, meta)
    n = source.num_frames(video_id)
    if n is None:  # JPEG frames: a synth clip spans twice its keyframe time
        n = spec.frame_index(2 * meta.extra["keyframe_time"]) - spec.first_index + 1
    return source.read(video_id, list(range(spec.first_index, spec.first_index + n)))


def write_preview(
    dataset_dir: str | Path, out: str | Path, n: int = 8, split: str | None = None
) -> Path:
    """Draw `n` records of `split` (default: test, else the first split) into a PNG at `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    dataset_dir = Path(dataset_dir)
    if n < 1:
        raise RavarError(f"--n: must be at least 1, got {n}")
    splits = list_splits(dataset_dir)
    if not splits:
        raise DataFormatError(f"{dataset_dir}: no annotation files in annotations/")
    split = split or ("test" if "test" in splits else splits[0])
    records = read_split(dataset_dir, split)
    if not records:
        raise DataFormatError(f"{dataset_dir}: split {split!r} has no records")
    spec = load_meta(dataset_dir).frame_source
    step = max(1, len(records) // n)
    chosen = records[::step][:n]
    cols = min(4, len(chosen))
    rows = (len(chosen) + cols - 1) // cols
    fig = plt.figure(figsize=(3.2 * max(cols, 4), 3.6 * rows + 2.0), dpi=100)
    grid = fig.add_gridspec(rows + 1, max(cols, STRIP_FRAMES), height_ratios=[3.6] * rows + [2.0])
    per_row = max(cols, STRIP_FRAMES) // cols
    for i, rec in enumerate(chosen):
        frames = read_clip(dataset_dir, rec.video_id)
        key = min(spec.frame_index(rec.time), len(frames) - 1)
        img = frames[key]
        h, w = img.shape[:2]
        ax = fig.add_subplot(grid[i // cols, (i % cols) * per_row : (i % cols + 1) * per_row])
        ax.imshow(img, interpolation="nearest")
        x1, y1, x2, y2 = rec.box
        ax.add_patch(
            Rectangle((x1 * w, y1 * h), (x2 - x1) * w, (y2 - y1) * h, fill=False, ec="lime", lw=2)
        )
        acts = ", ".join(action_name(a) for a in rec.actions)
        caption = textwrap.fill(f'"{rec.text}"', 38) + "\n" + textwrap.fill(acts, 44)
        ax.set_title(caption, fontsize=7)
        ax.axis("off")
    rec = chosen[0]
    frames = read_clip(dataset_dir, rec.video_id)
    picks = np.linspace(0, len(frames) - 1, STRIP_FRAMES).round().astype(int)
    for j, f in enumerate(picks):
        ax = fig.add_subplot(grid[rows, j])
        ax.imshow(frames[f], interpolation="nearest")
        ax.set_title(f"{rec.video_id} t={f / spec.fps:.1f}s", fontsize=6)
        ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
