"""`ravar cache`: run a model's frozen backbones once over a dataset and store their outputs."""

from __future__ import annotations

import argparse

from ravar.cli.argtypes import add_device_option, non_negative_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add `cache` to the `ravar` sub-parsers `sub`."""
    p = sub.add_parser(
        "cache",
        help="store the outputs of a model's frozen backbones (visual tokens, text embeddings)",
        description="Run the frozen parts of MODEL (a visual backbone frozen whole, a frozen text "
        "encoder) over splits of DIR once and store their outputs (memory-mapped, float16 by "
        "default) under DIR/cache. `ravar train` and `ravar eval` read them when they match the "
        "model's weights and clip settings (cache=auto, the default; cache=require refuses to "
        "run without them). Pass the same model overrides (and, for random-weight backbones, "
        "the same seed) as the training run.",
        epilog="Pixel augmentations change the clip every epoch: a training run with "
        "model.clip.hflip_prob > 0 or model.clip.temporal_jitter=true reads the text cache "
        "but not the visual one.",
    )
    p.add_argument("data", metavar="DIR", help="dataset folder")
    p.add_argument("--model", metavar="NAME", help="registered model name (or model_name in YAML)")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML with a model: map (as for train)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="model.KEY=VALUE overrides")
    p.add_argument(
        "--split", nargs="+", default=["train", "val", "test"], help="splits (default all three)"
    )
    p.add_argument("--seed", type=int, metavar="S", help="seed the model is built with")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="B")
    p.add_argument("--workers", type=non_negative_int, default=0, metavar="N")
    p.add_argument("--chunk", type=positive_int, default=256, metavar="N", help="rows per file")
    p.add_argument("--cache-dir", metavar="DIR", help="default: DATA/cache")
    add_device_option(p)
    p.add_argument(
        "--allow-missing-detections",
        action="store_true",
        help="cache for a model that reads detections although a split has none",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_cache)


def run_cache(args: argparse.Namespace) -> int:
    """Build the stores; exit code 0."""
    import sys
    from pathlib import Path

    from ravar.cache import build_cache, store_size
    from ravar.data.format import annotation_path, load_meta
    from ravar.engine.config import resolve_run_config
    from ravar.engine.rng import seed_everything
    from ravar.errors import RavarError
    from ravar.models.registry import build_model
    from ravar.util.devices import resolve_device

    load_meta(args.data)  # a clear error for a folder that is not a dataset
    for split in args.split:
        if not annotation_path(args.data, split).is_file():
            raise RavarError(f"--split {split}: {annotation_path(args.data, split)} is missing")
    run = resolve_run_config(args.model, args.config, args.overrides, flags={"seed": args.seed})
    device = resolve_device(args.device)
    seed_everything(run.train.seed)
    model = build_model(run.family, run.model)
    folders = build_cache(
        args.data,
        model,
        args.split,
        cache_dir=args.cache_dir or run.train.cache_dir,
        dtype=args.dtype,
        batch_size=args.batch_size,
        workers=args.workers,
        chunk_rows=args.chunk,
        device=device,
        progress=not args.quiet and sys.stderr.isatty(),
        allow_missing_detections=args.allow_missing_detections
        or run.train.allow_missing_detections,
    )
    for folder in folders:
        print(f"{folder}: {store_size(Path(folder)) / 2**20:.1f} MiB")
    return 0
