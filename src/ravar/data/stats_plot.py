"""A PNG of a dataset's action histogram: one panel of 80 bars per split, coloured by group."""

from __future__ import annotations

import os
from pathlib import Path

from ravar.data.validate import ValidationReport
from ravar.errors import DataFormatError, RavarError
from ravar.labels import ACTION_TYPES, NUM_CLASSES, action_classes

GROUP_COLOURS = dict(zip(ACTION_TYPES, ("tab:blue", "tab:orange", "tab:green"), strict=True))


def plot_action_histogram(
    report: ValidationReport, path: str | os.PathLike, *, log_scale: bool = False
) -> Path:
    """Write the per-split AVA action histogram of `report` as a PNG at `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    splits = report.summary.get("splits", {})
    if not splits:
        raise DataFormatError(f"{report.dataset_dir}: no split could be read, nothing to plot")
    classes = action_classes()
    ids = list(range(1, NUM_CLASSES + 1))
    colours = [GROUP_COLOURS[c.type] for c in classes]

    height = 1.2 + 2.6 * len(splits)  # inches: 0.7 on top for the title, 0.5 below the x label
    fig = Figure(figsize=(14, height))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.07, right=0.99, top=1 - 0.7 / height, bottom=0.5 / height)
    axes = fig.subplots(len(splits), 1, squeeze=False, gridspec_kw={"hspace": 0.45})[:, 0]
    for ax, (name, sp) in zip(axes, splits.items(), strict=True):
        counts = [int(sp["actions"].get(i, 0)) for i in ids]
        ax.bar(ids, counts, width=0.8, color=colours)
        if log_scale and any(counts):
            ax.set_yscale("log", nonpositive="clip")
            ax.set_ylim(bottom=0.5)  # a count of 1 still shows as a bar
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        else:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.3, NUM_CLASSES + 0.7)
        ax.set_xticks([1, *range(5, NUM_CLASSES + 1, 5)])
        ax.set_ylabel("instances")
        ax.set_title(
            f"{name}: {sp['instances']} instances, {sp['classes_present']}/{NUM_CLASSES} classes",
            loc="left",
            fontsize=10,
        )
    axes[-1].set_xlabel("AVA v2.2 action id")
    fig.legend(
        handles=[
            Patch(color=c, label=t.lower().replace("_", " ")) for t, c in GROUP_COLOURS.items()
        ],
        loc="upper right",
        ncol=len(GROUP_COLOURS),
        fontsize=8,
        frameon=False,
    )
    name = report.summary.get("dataset") or Path(report.dataset_dir).name
    title = f"{name}: AVA action histogram per split" + (" (log scale)" if log_scale else "")
    fig.suptitle(title, x=0.07, ha="left")
    out = Path(path)
    try:
        fig.savefig(out, format="png", dpi=100)
    except OSError as e:
        raise RavarError(f"{out}: cannot write the plot ({e})") from None
    return out
