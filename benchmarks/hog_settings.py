"""HOG people-detector settings: time per frame against recall on hand-drawn person boxes.

    .venv/bin/python benchmarks/hog_settings.py [--video FILE] [--boxes JSON]

The boxes (`benchmarks/data/two_players_basketball_persons.json`) mark every visible person on
14 frames of the shared 426x240 basketball clip: a `tune` set of ten frames and a held-out `check`
set of four. For each setting, per set: people found at IoU >= 0.3 and >= 0.5 (one detection per
person, greedily by IoU), detections that match nobody, the mean over people of their best IoU,
and the median milliseconds per frame.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch

from ravar.data.frames import VideoReader
from ravar.inference.detectors.hog import HOGPersonDetector
from ravar.util.box_ops import box_iou
from ravar.util.machine import describe_machine

HERE = Path(__file__).resolve().parent
DEFAULT_BOXES = HERE / "data" / "two_players_basketball_persons.json"
DEFAULT_VIDEO = HERE.parents[1] / "shared" / "videos" / "two_players_basketball.mp4"


def match(truth: torch.Tensor, found: torch.Tensor) -> list[float]:
    """Best IoU of each true box `[G, 4]` with a detection `[D, 4]`, each detection used once
    (pairs taken in order of IoU)."""
    best = [0.0] * len(truth)
    if len(found) == 0:
        return best
    iou = box_iou(truth, found)  # [G, D]
    used_t: set[int] = set()
    used_d: set[int] = set()
    for flat in torch.argsort(iou.flatten(), descending=True).tolist():
        g, d = divmod(flat, iou.shape[1])
        if g in used_t or d in used_d or iou[g, d] <= 0:
            continue
        best[g] = float(iou[g, d])
        used_t.add(g)
        used_d.add(d)
    return best


def evaluate(detector: HOGPersonDetector, frames: dict[int, torch.Tensor], images: dict) -> dict:
    """Counts and timings of `detector` on `images` (frame number -> [H, W, 3]) against `frames`
    (frame number -> [G, 4] pixel boxes)."""
    ious: list[float] = []
    ms: list[float] = []
    unmatched = 0
    for n, truth in frames.items():
        image = images[n]
        t0 = time.perf_counter()
        dets = detector.detect_image(image)
        ms.append((time.perf_counter() - t0) * 1000)
        h, w = image.shape[:2]
        found = torch.tensor([d.box for d in dets]).reshape(-1, 4) * torch.tensor([w, h, w, h])
        best = match(truth, found)
        ious += best
        unmatched += len(dets) - sum(v >= 0.3 for v in best)
    return {
        "people": len(ious),
        "r30": sum(v >= 0.3 for v in ious),
        "r50": sum(v >= 0.5 for v in ious),
        "unmatched": unmatched,
        "mean_iou": statistics.fmean(ious),
        "ms": statistics.median(ms),
    }


def load_hand_boxes(path: Path) -> dict[str, dict[int, torch.Tensor]]:
    """The hand-drawn boxes: {"tune" | "check": {frame number: boxes [N, 4]}}."""
    spec = json.loads(path.read_text())
    return {
        name: {int(n): torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for n, b in one.items()}
        for name, one in ((name, spec[name]) for name in ("tune", "check"))
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    p.add_argument("--boxes", type=Path, default=DEFAULT_BOXES)
    p.add_argument("--min-side", type=int, nargs="+", default=[240, 300, 360, 420, 480])
    p.add_argument("--scale", type=float, nargs="+", default=[1.05, 1.1, 1.2])
    p.add_argument("--win-stride", type=int, nargs="+", default=[4, 8])
    p.add_argument("--trim", type=float, nargs=2, action="append",
                   help="width and height fractions cut from each side (repeatable; default "
                   "0 0 and 0.125 0.0625)")  # fmt: skip
    args = p.parse_args(argv)
    if not args.video.is_file():
        raise SystemExit(f"{args.video}: no such video (give one with --video)")
    sets = load_hand_boxes(args.boxes)
    wanted = sorted({n for frames in sets.values() for n in frames})
    images = dict(zip(wanted, VideoReader(args.video).read(wanted), strict=True))
    trims = args.trim or [[0.0, 0.0], [0.125, 0.0625]]

    default = HOGPersonDetector()
    print(f"{args.video.name}; {describe_machine()}; default {default.describe()}\n")
    people = {name: sum(len(b) for b in frames.values()) for name, frames in sets.items()}
    columns = [f"{n} {c}" for n in sets for c in ("R@0.3", "R@0.5", "unmatched", "mean IoU")]
    print("| min_side | scale | stride | trim | ms/frame | " + " | ".join(columns) + " |")
    print("|---:|---:|---:|---|---:|" + "---:|" * len(columns))
    for side, scale, stride, trim in itertools.product(
        args.min_side, args.scale, args.win_stride, trims
    ):
        det = HOGPersonDetector(min_side=side, scale=scale, win_stride=stride, trim=tuple(trim))
        res = {name: evaluate(det, frames, images) for name, frames in sets.items()}
        ms = statistics.fmean(r["ms"] for r in res.values())
        cells = [
            f"{r['r30']}/{people[n]} | {r['r50']}/{people[n]} | {r['unmatched']} | "
            f"{r['mean_iou']:.3f}"
            for n, r in res.items()
        ]
        mark = "**" if det.describe() == default.describe() else ""
        print(f"| {mark}{side}{mark} | {scale} | {stride} | {trim[0]:g}, {trim[1]:g} | {ms:.0f} | "
              + " | ".join(cells) + " |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
