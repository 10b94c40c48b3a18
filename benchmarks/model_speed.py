"""Forward+backward time per clip of every registered `tiny` model, as a markdown table.

    .venv/bin/python benchmarks/model_speed.py [--batch 8] [--reps 5] [--filter refatomnet]

Each model runs on a random batch at the clip size of its own config (frames, sentences, three
detections), in training mode, with the optimizer step excluded. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ravar.data.dummy import dummy_batch
from ravar.models import create_model, list_models
from ravar.util.machine import describe_machine


def time_model(name: str, batch_size: int, reps: int) -> tuple[float, int, int, str]:
    """(median seconds per forward+backward of one batch, total params, trainable, clip shape)."""
    torch.manual_seed(0)
    model = create_model(name).train()
    criterion = model.criterion()
    clip = model.config.clip
    batch = dummy_batch(batch_size, clip.num_frames, clip.size, num_detections=8)
    times = []
    for i in range(reps + 1):  # the first pass warms up
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        criterion(model(batch), batch).total.backward()
        if i:
            times.append(time.perf_counter() - t0)
    total, trainable = model.param_counts()
    shape = f"{clip.num_frames}x{clip.size[0]}x{clip.size[1]}"
    return statistics.median(times), total, trainable, shape


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="clips per batch (default 8)")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (default 5)")
    p.add_argument("--filter", default="", help="only model names containing this")
    args = p.parse_args(argv)
    names = [n for n in list_models() if "_tiny" in n and args.filter in n]
    rows = []
    for name in names:
        sec, total, trainable, shape = time_model(name, args.batch, args.reps)
        rows.append((name, shape, total, trainable, sec))
        print(f"  {name}: {1000 * sec / args.batch:.1f} ms per clip", flush=True)
    print(f"\nForward+backward, batch {args.batch}, median of {args.reps}; {describe_machine()}\n")
    print("| model | clip (T x H x W) | params | trainable | ms per clip | clips/s |")
    print("|---|---|---:|---:|---:|---:|")
    for name, shape, total, trainable, sec in rows:
        per_clip = sec / args.batch
        print(f"| {name} | {shape} | {total / 1e6:.1f}M | {trainable / 1e6:.2f}M | "
              f"{1000 * per_clip:.1f} | {1 / per_clip:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
