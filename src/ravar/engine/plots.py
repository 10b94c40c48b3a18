"""`curves.png`: training loss parts and validation metrics per epoch."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ravar.metrics import TABLE_COLUMNS


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
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
