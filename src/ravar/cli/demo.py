"""`ravar demo`: the main job, end to end on a CPU in minutes."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from ravar.cli.argtypes import positive_int
from ravar.data.format import META_FILE
from ravar.errors import RavarError
from ravar.util.io import read_json

DEMO_MODEL = "refatomnet_tiny_pick"  # the best tiny model on val at this budget (RESULTS.md)
DEMO_STEPS = 450  # optimizer steps of batch 8: a few minutes on 2 CPU cores


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="generate RefAVA-Synth, train a tiny RefAtomNet on the CPU, evaluate it on test "
        "next to the baselines that ignore the sentence, and draw test predictions",
    )
    p.add_argument("--out", default="runs/demo", help="working folder (default runs/demo)")
    p.add_argument("--preset", default="standard", choices=("small", "standard", "hard"))
    p.add_argument("--model", default=DEMO_MODEL, help=f"model to train (default {DEMO_MODEL})")
    p.add_argument(
        "--steps", type=positive_int, default=DEMO_STEPS,
        help=f"optimizer steps of batch 8 (default {DEMO_STEPS})",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--skip-train", action="store_true", help="data steps only (synth, validate, baselines)"
    )
    p.set_defaults(func=run)


def _say_now(line: str) -> None:
    print(line, flush=True)


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def ensure_synth(data_dir: Path, preset: str, seed: int) -> None:
    """Generate RefAVA-Synth into `data_dir` unless the same preset and seed are there already."""
    from ravar.synth.generate import generate

    meta_path = data_dir / META_FILE
    if meta_path.is_file():
        extra = read_json(meta_path).get("extra", {})
        if extra.get("preset") == preset and extra.get("seed") == seed:
            print(f"using the cached dataset in {data_dir}")
            return
        raise RavarError(f"{data_dir} holds another dataset; choose another --out")
    summary = generate(
        data_dir, preset=preset, seed=seed, workers=os.cpu_count() or 1, say=_say_now
    )
    for split, c in summary["counts"].items():
        print(f"  {split:>10}: {c['clips']:5d} clips {c['records']:6d} referred people")
    print(f"generated in {summary['seconds']} s")


def run(args: argparse.Namespace) -> int:
    from ravar.data.clip_config import ClipConfig
    from ravar.data.dataset import RAVARDataset, collate
    from ravar.data.validate import validate_dataset
    from ravar.engine.plots import plot_predictions
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

    _step("4. test split: baselines that ignore the sentence")
    baselines = trivial_baselines(data_dir, "test")
    print(format_metrics_table(baselines))
    print(
        "  random person: a random person of the clip, with its true box and actions (perfect\n"
        "  perception, no understanding of the sentence); clip mean: the mean box and actions of\n"
        "  everyone in the clip (true ones); prior: the training set's mean box and class rates"
    )
    if args.skip_train:
        print(f"done in {time.perf_counter() - start:.0f} s")
        return 0

    _step(f"5. train {args.model} on the CPU ({args.steps} steps of batch 8), then test once")
    run_dir = out / f"run-{args.model}-{args.preset}-{args.seed}"
    test = train_demo_model(args.model, data_dir, run_dir, args.steps, args.seed)

    _step("6. test split: the trained model next to the baselines")
    print(format_metrics_table({args.model: test, **baselines}))
    rows = [json.loads(line) for line in (run_dir / "test_predictions.jsonl").open()]
    png = plot_predictions(data_dir, "test", rows, out / "test_predictions.png")
    print(f"\ntest predictions (keyframes, true and predicted boxes, sentence, top actions): {png}")
    print(f"training curves: {run_dir / 'curves.png'}; checkpoint: {run_dir / 'best'}")
    print(f"dataset card: {data_dir / 'README.md'}; preview: {data_dir / 'preview.png'}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def train_demo_model(model: str, data_dir: Path, run_dir: Path, steps: int, seed: int) -> dict:
    """Train `model` for `steps` steps (one pass at most) into `run_dir` and return its test
    metrics; a finished run with the same configuration is reused."""
    import yaml

    from ravar.engine.config import resolve_run_config
    from ravar.engine.train import fit

    flags = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "seed": seed, "max_steps": steps,
             "workers": min(2, os.cpu_count() or 1)}  # fmt: skip
    run = resolve_run_config(model, flags=flags)
    run.data = str(data_dir.resolve())
    done = run_dir / "test_metrics.json"
    if done.is_file() and (run_dir / "config.yaml").is_file():
        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        if saved == json.loads(json.dumps(run.to_dict())):
            print(f"using the finished run in {run_dir} (delete it to train again)")
            return read_json(done)["metrics"]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    result = fit(run, data_dir, run_dir)
    if result.test is None:
        raise RavarError(f"{run_dir}: training ended without a test evaluation")
    return result.test
