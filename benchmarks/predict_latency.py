"""Latency of `ravar predict` per keyframe, split into decode / detect / model, as a markdown table.

    .venv/bin/python benchmarks/predict_latency.py [--models refatomnet_tiny refatomnet_base]
        [--video FILE] [--keyframes 5] [--detector hog]

Each model is built from the registry with random weights (the `base` configs build the paper-size
BLIP-2 vision tower: about 1.1 B parameters, 4.5 GB in float32) and timed two ways:
- single query: one keyframe and one sentence at a time, as a user's single question would be
  (the video is opened and decoded from the keyframe before the clip each time); medians over
  `--keyframes` keyframes, after one warm-up query;
- video pass: `predict(every=--every, batch_size=--batch-size)` over the whole video, as
  `ravar predict VIDEO --every S` runs it (frames decoded in one pass, clips batched); stage
  times and the wall time divided by the number of keyframes, best of `--repeat` passes.
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from ravar.data.frames import VideoReader
from ravar.inference import Predictor
from ravar.models import create_model
from ravar.util.machine import describe_machine

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"
DEFAULT_VIDEO = SHARED_VIDEOS / "two_players_basketball.mp4"
TEXT = "the person in the blue shirt"
STAGES = ("decode", "detect", "model")


def measure(
    name: str,
    video: Path,
    keyframes: int,
    detector: str,
    every: float,
    batch_size: int,
    repeat: int,
) -> dict[str, object]:
    """Milliseconds per keyframe of each stage (and end to end) for model `name`: medians of
    single queries, and the best video pass."""
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = create_model(name)
    build_s = time.perf_counter() - t0
    predictor = Predictor(model, detector=detector, model_name=name)
    predictor.predict(video, TEXT, time=0.0)  # warm-up, not counted
    length = VideoReader(video).duration
    times = [round(length * (k + 1) / (keyframes + 1), 3) for k in range(keyframes)]
    stages: dict[str, list[float]] = {"decode": [], "detect": [], "model": [], "total": []}
    for t in times:
        t0 = time.perf_counter()
        (result,) = predictor.predict(video, TEXT, time=t, batch_size=1)
        stages["total"].append((time.perf_counter() - t0) * 1000)
        for stage in ("decode", "detect", "model"):
            stages[stage].append(result.timings_ms[stage])
        print(f"  {name} t={t:.2f}s: " + ", ".join(
            f"{k} {v[-1]:.0f} ms" for k, v in stages.items()), flush=True)  # fmt: skip
    passes = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        results = predictor.predict(video, TEXT, every=every, batch_size=batch_size)
        wall = (time.perf_counter() - t0) * 1000 / len(results)
        # decode and detect are per keyframe of a chunk; the model's per clip
        chunk = {k: statistics.fmean(r.timings_ms[k] for r in results) for k in STAGES}
        passes.append({"total": wall, **chunk, "keyframes": len(results)})
        print(f"  {name} video pass: " + ", ".join(f"{k} {v:.0f}" for k, v in passes[-1].items()))
    best = min(passes, key=lambda p: p["total"])
    clip = model.config.clip
    return {
        "name": name,
        "clip": f"{clip.num_frames}x{clip.size[0]}x{clip.size[1]}",
        "params": sum(p.numel() for p in model.parameters()),
        "build_s": build_s,
        **{k: statistics.median(v) for k, v in stages.items()},
        **{f"pass_{k}": v for k, v in best.items()},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["refatomnet_tiny", "refatomnet_base"])
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="default: the 426x240 clip")
    p.add_argument("--keyframes", type=int, default=5, help="timed keyframes per model")
    p.add_argument("--detector", default="hog", help="hog | none | detr:PATH (default hog)")
    p.add_argument("--every", type=float, default=1.0, help="video pass: seconds between keyframes")
    p.add_argument("--batch-size", type=int, default=8, help="video pass: clips per model call")
    p.add_argument("--repeat", type=int, default=3, help="video passes (the best is reported)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.video.is_file():
        raise SystemExit(f"{args.video}: no such video (give one with --video)")
    rows = [
        measure(
            name,
            args.video,
            args.keyframes,
            args.detector,
            args.every,
            args.batch_size,
            args.repeat,
        )
        for name in args.models
    ]
    print(
        f"\n{args.video.name}, one sentence; single query: median of {args.keyframes} keyframes; "
        f"video pass: every {args.every:g} s, batch {args.batch_size}, best of {args.repeat}; "
        f"detector {args.detector}; {describe_machine()}\n"
    )
    stages = ("decode", "detect", "model", "total")
    print("| model | clip (T x H x W) | params | build s | "
          + " | ".join(f"query {k} ms" for k in stages) + " | "
          + " | ".join(f"pass {k} ms" for k in stages) + " |")  # fmt: skip
    print("|---|---|---:|---:|" + "---:|" * 8)
    for r in rows:
        query = " | ".join(f"{r[k]:.0f}" for k in stages)
        video_pass = " | ".join(f"{r['pass_' + k]:.0f}" for k in stages)
        print(
            f"| {r['name']} | {r['clip']} | {r['params'] / 1e6:,.1f}M | {r['build_s']:.1f} | "
            f"{query} | {video_pass} |"
        )


if __name__ == "__main__":
    main()
