"""`curves.png`: training loss parts and validation metrics per epoch."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ravar.metrics import TABLE_COLUMNS
from ravar.util.io import atomic_path


def _series(rows: Sequence[dict[str, Any]], section: str, key: str) -> tuple[list, list]:
    xs, ys = [], []
    for r in rows:
        value = (r.get(section) or {}).get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(r["epoch"])
            ys.append(value)
    return xs, ys


def plot_curves(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write a PNG with the per-epoch train losses (left) and val metrics in percent (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    keys = {k for r in rows for k in (r.get("train") or {})}
    loss_keys = (["loss"] if "loss" in keys else []) + sorted(keys - {"loss"})
    for key in loss_keys:
        xs, ys = _series(rows, "train", key)
        if xs:
            ax_loss.plot(xs, ys, marker="o", lw=2.2 if key == "loss" else 1.2, label=key)
    ax_loss.set(title="train loss", xlabel="epoch", ylabel="loss")
    for key, label in TABLE_COLUMNS.items():
        xs, ys = _series(rows, "val", key)
        if xs:
            ax_val.plot(xs, [100 * y for y in ys], marker="o", label=label)
    ax_val.set(title="validation", xlabel="epoch", ylabel="%")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.9, wspace=0.22)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def plot_predictions(
    dataset_dir: str | os.PathLike,
    split: str,
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    n: int = 8,
    top_k: int = 3,
) -> Path:
    """Write a PNG of `n` test instances: the keyframe with the true (green) and predicted (red)
    boxes, the sentence, the true actions and the top predicted actions with probabilities.
    `rows` are the per-instance dicts of `ravar.engine.evaluate.prediction_rows`."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from ravar.data.format import load_meta, read_split
    from ravar.data.frames import open_frame_source
    from ravar.labels import action_name

    path = Path(path)
    records = read_split(dataset_dir, split)
    meta = load_meta(dataset_dir)
    source = open_frame_source(dataset_dir, meta)
    chosen = list(rows)[:: max(1, len(rows) // n)][:n]
    cols = min(4, max(1, len(chosen)))
    nrows = (len(chosen) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 4.3 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row in zip(axes.ravel(), chosen, strict=False):
        rec = records[int(row["index"])]
        img = source.read(rec.video_id, [meta.frame_source.frame_index(rec.time)])[0]
        h, w = img.shape[:2]
        ax.imshow(img, interpolation="nearest")
        for box, colour in ((rec.box, "lime"), (row["box"], "red")):
            x1, y1, x2, y2 = box
            ax.add_patch(
                Rectangle((x1 * w, y1 * h), (x2 - x1) * w, (y2 - y1) * h, fill=False, ec=colour)
            )
        truth = ", ".join(action_name(a) for a in rec.actions)
        top = "; ".join(f"{a['name']} {a['prob']:.2f}" for a in row["top_actions"][:top_k])
        ax.set_title(
            textwrap.fill(f'"{rec.text}"', 40)
            + "\n"
            + textwrap.fill(f"true: {truth}", 46)
            + "\n"
            + textwrap.fill(f"predicted: {top}", 46),
            fontsize=6.5,
        )
    fig.suptitle("test predictions: true box green, predicted box red", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
