"""`ravar demo`: the main job, end to end on a CPU in minutes."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from ravar.data.format import META_FILE
from ravar.errors import RavarError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="generate RefAVA-Synth, check it, load clips and show the baselines to beat"
    )
    p.add_argument("--out", default="runs/demo", help="working folder (default runs/demo)")
    p.add_argument("--preset", default="small", choices=("small", "standard", "hard"))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def ensure_synth(data_dir: Path, preset: str, seed: int) -> None:
    """Generate RefAVA-Synth into `data_dir` unless the same preset and seed are there already."""
    from ravar.synth.generate import generate

    meta_path = data_dir / META_FILE
    if meta_path.is_file():
        extra = json.loads(meta_path.read_text()).get("extra", {})
        if extra.get("preset") == preset and extra.get("seed") == seed:
            print(f"using the cached dataset in {data_dir}")
            return
        raise RavarError(f"{data_dir} holds another dataset; choose another --out")
    summary = generate(data_dir, preset=preset, seed=seed, workers=os.cpu_count() or 1)
    for split, c in summary["counts"].items():
        print(f"  {split:>10}: {c['clips']:5d} clips {c['records']:6d} referred people")
    print(f"generated in {summary['seconds']} s")


def run(args: argparse.Namespace) -> int:
    from ravar.data.dataset import ClipConfig, RAVARDataset, collate
    from ravar.data.validate import validate_dataset
    from ravar.metrics import format_metrics_table
    from ravar.synth.baselines import trivial_baselines

    out = Path(args.out)
    data_dir = out / f"synth-{args.preset}-{args.seed}"
    start = time.perf_counter()

    _step(f"1. RefAVA-Synth ({args.preset}, seed {args.seed}) in {data_dir}")
    ensure_synth(data_dir, args.preset, args.seed)

    _step("2. validate the dataset folder (records, boxes, action ids, frames of every clip)")
    report = validate_dataset(data_dir)
    for split, s in report.summary["splits"].items():
        print(f"  {split:>10}: {s['instances']:6d} instances, {s['classes_present']} classes, "
              f"{s['persons_per_keyframe']['mean']:.1f} referred people per keyframe")  # fmt: skip
    print("  OK" if report.ok else report.format())
    if not report.ok:
        return 1

    _step("3. load clips through RAVARDataset (8 frames spread over +-1.5 s, keyframe included)")
    ds = RAVARDataset(data_dir, "train", ClipConfig(num_frames=8, size=(64, 64)), train=True)
    batch = collate([ds[i] for i in range(4)])
    frames = batch["frames"]  # [B, T, 3, H, W]
    distinct = bool((frames[:, 1:] - frames[:, :-1]).abs().flatten(2).amax(-1).gt(0).all())
    shapes = {k: list(batch[k].shape) for k in ("frames", "labels", "box", "det_boxes")}
    print("  " + ", ".join(f"{k} {v}" for k, v in shapes.items()))
    print(
        f"  frame numbers of clip 0: {batch['frame_indices'][0].tolist()} "
        f"(keyframe slot {int(batch['key_slot'][0])}); consecutive frames differ: {distinct}"
    )
    print(f'  sentence 0: "{batch["text"][0]}"')

    _step("4. the floor to beat on test: baselines that ignore the sentence")
    print(format_metrics_table(trivial_baselines(data_dir, "test")))

    preview = data_dir / "preview.png"
    print(f"\npreview of test keyframes, sentences and actions: {preview}")
    print(f"dataset card: {data_dir / 'README.md'}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0
