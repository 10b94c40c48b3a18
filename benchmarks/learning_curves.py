"""Learning curves: val Acc@0.5, mIoU and mAP (weighted) against optimizer steps, with the wall
time of training up to each point, from the `metrics.jsonl` of one or more runs.

    python benchmarks/learning_curves.py --run NAME=RUN_DIR [--run NAME=RUN_DIR ...] \
        --out docs/learning_curves.png [--table curves.md]

Each run evaluates val at the end of its epochs (train key `eval_every`), so each run gives one
point per evaluated epoch; the wall time is the sum of its epochs' training times (evaluation
excluded). A run still in progress is read as far as it has got.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = (("Acc@0.5", "Acc@0.5"), ("mIoU", "mIoU"), ("mAP_weighted", "mAP (w)"))


def read_curve(run_dir: Path) -> list[dict[str, float]]:
    """The val points of a run: step, cumulative training seconds and the three metrics
    (percent)."""
    points, seconds = [], 0.0
    path = run_dir / "metrics.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        seconds += float(row.get("epoch_time_s", 0.0))
        val = row.get("val")
        if not val:
            continue
        point = {"step": int(row["step"]), "seconds": seconds, "epoch": int(row["epoch"])}
        point.update({key: 100.0 * float(val[key]) for key, _ in METRICS})
        points.append(point)
    return points


def markdown(curves: dict[str, list[dict[str, float]]]) -> str:
    """One table row per (run, point)."""
    lines = [
        "| run | epoch | step | training time | val Acc@0.5 | val mIoU | val mAP (w) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, points in curves.items():
        for p in points:
            lines.append(
                f"| {name} | {p['epoch']} | {p['step']} | {p['seconds'] / 60:.1f} min | "
                f"{p['Acc@0.5']:.1f} | {p['mIoU']:.1f} | {p['mAP_weighted']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def plot(curves: dict[str, list[dict[str, float]]], out: Path) -> None:
    """Three panels (one per metric) of val against steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.4))
    for ax, (key, title) in zip(axes, METRICS, strict=True):
        for name, points in curves.items():
            ax.plot([p["step"] for p in points], [p[key] for p in points], marker="o", label=name)
        ax.set_title(f"val {title}")
        ax.set_xlabel("optimizer steps (batch 8)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR")
    parser.add_argument("--out", type=Path, required=True, help="the plot (.png)")
    parser.add_argument("--table", type=Path, help="also write the points as a markdown table")
    args = parser.parse_args()
    curves = {}
    for spec in args.run:
        name, sep, run_dir = spec.partition("=")
        if not sep:
            parser.error(f"--run {spec!r}: expected NAME=RUN_DIR")
        if not (Path(run_dir) / "metrics.jsonl").is_file():
            parser.error(f"--run {spec!r}: {run_dir} has no metrics.jsonl")
        curves[name] = read_curve(Path(run_dir))
    plot(curves, args.out)
    table = markdown(curves)
    print(table, end="")
    if args.table:
        args.table.write_text(table, encoding="utf-8")
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
