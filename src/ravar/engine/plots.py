"""`curves.png`: training loss parts per optimizer step (per epoch for runs without a
steps.csv) and validation metrics per epoch."""

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


def loss_series(
    rows: Sequence[dict[str, Any]], steps: Sequence[dict[str, float]] | None = None
) -> tuple[str, dict[str, tuple[list, list]]]:
    """The train loss curves to draw: ("step", {name: (steps, values)}) from the step log
    `steps` (rows of steps.csv) when it has rows, else ("epoch", ...) from the metrics.jsonl
    `rows`. "loss" comes first, then the loss terms."""
    if steps:
        keys = {k for r in steps for k in r} - {"step", "epoch", "lr", "clips_per_s"}
        keys = {k for k in keys if not k.startswith("lr/")}
        order = (["loss"] if "loss" in keys else []) + sorted(keys - {"loss"})
        out = {}
        for key in order:
            points = [(r["step"], r[key]) for r in steps if math.isfinite(r.get(key, math.nan))]
            out[key] = ([x for x, _ in points], [y for _, y in points])
        return "step", out
    keys = {k for r in rows for k in (r.get("train") or {})}
    order = (["loss"] if "loss" in keys else []) + sorted(keys - {"loss"})
    return "epoch", {key: _series(rows, "train", key) for key in order}


def plot_curves(
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    steps: Sequence[dict[str, float]] | None = None,
) -> Path:
    """Write a PNG with the train losses (left; per optimizer step from `steps`, the rows of
    steps.csv, else per epoch) and the val metrics per epoch in percent (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    axis, curves = loss_series(rows, steps)
    marker = "o" if axis == "epoch" else None
    for key, (xs, ys) in curves.items():
        if xs:
            ax_loss.plot(xs, ys, marker=marker, lw=1.8 if key == "loss" else 1.0, label=key)
    if axis == "step":  # epoch ends, from metrics.jsonl
        for r in rows:
            if isinstance(r.get("step"), int):
                ax_loss.axvline(r["step"], color="0.7", lw=0.6, ls=":")
    ax_loss.set(
        title="train loss",
        xlabel=f"{axis} (dotted: epoch ends)" if axis == "step" else axis,
        ylabel="loss",
    )
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
