"""Forward+backward time per clip of every registered `tiny` model, as a markdown table.

    .venv/bin/python benchmarks/model_speed.py [--batch 8] [--reps 5] [--filter refatomnet]

Each model runs on a random batch at the clip size of its own config (frames, sentences, three
detections), in training mode, with the optimizer step excluded. Nothing is downloaded.

    .venv/bin/python benchmarks/model_speed.py --models A B C --interleave

times the named models in rounds (one pass of each per round), so that a machine busy with
other work slows them alike, and adds each one's time relative to the first.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ravar.data.dummy import dummy_batch
from ravar.models import create_model, list_models
from ravar.util.machine import describe_machine


def build(name: str, batch_size: int) -> tuple[Any, Callable[[], float]]:
    """The model `name` in training mode and a function timing one forward+backward (seconds)."""
    torch.manual_seed(0)
    model = create_model(name).train()
    criterion = model.criterion()
    clip = model.config.clip
    batch = dummy_batch(batch_size, clip.num_frames, clip.size, num_detections=8)

    def one_pass() -> float:
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        criterion(model(batch), batch).total.backward()
        return time.perf_counter() - t0

    return model, one_pass


def time_models(
    names: list[str], batch_size: int, reps: int, interleave: bool
) -> list[tuple[str, str, int, int, float]]:
    """Per model: (name, clip shape, total params, trainable, median seconds per batch); the
    first round warms up. One model at a time, or (`interleave`) all of them built first and
    timed in rounds."""
    rows = []
    for group in [names] if interleave else [[n] for n in names]:
        built = {name: build(name, batch_size) for name in group}
        times: dict[str, list[float]] = {name: [] for name in group}
        for i in range(reps + 1):
            for name, (_, one_pass) in built.items():
                sec = one_pass()
                if i:
                    times[name].append(sec)
        for name, (model, _) in built.items():
            total, trainable = model.param_counts()
            clip = model.config.clip
            shape = f"{clip.num_frames}x{clip.size[0]}x{clip.size[1]}"
            sec = statistics.median(times[name])
            rows.append((name, shape, total, trainable, sec))
            print(f"  {name}: {1000 * sec / batch_size:.1f} ms per clip", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="clips per batch (default 8)")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (default 5)")
    p.add_argument("--filter", default="", help="only model names containing this")
    p.add_argument("--models", nargs="+", help="these models, in this order (not --filter)")
    p.add_argument("--interleave", action="store_true", help="time the models in rounds")
    args = p.parse_args(argv)
    names = args.models or [n for n in list_models() if "_tiny" in n and args.filter in n]
    unknown = [n for n in names if n not in list_models()]
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)} (ravar models lists them)")
    rows = time_models(names, args.batch, args.reps, args.interleave)
    first = rows[0][4]
    print(f"\nForward+backward, batch {args.batch}, median of {args.reps}"
          f"{', interleaved' if args.interleave else ''}; {describe_machine()}\n")  # fmt: skip
    print("| model | clip (T x H x W) | params | trainable | ms per clip | clips/s | x first |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, shape, total, trainable, sec in rows:
        per_clip = sec / args.batch
        print(f"| {name} | {shape} | {total / 1e6:.1f}M | {trainable / 1e6:.2f}M | "
              f"{1000 * per_clip:.1f} | {1 / per_clip:.1f} | {sec / first:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
