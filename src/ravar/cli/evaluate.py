"""`ravar eval`: metrics and per-instance predictions of a checkpoint on a split."""

from __future__ import annotations

import argparse

from ravar.cli.argtypes import (
    add_backbone_option,
    add_device_option,
    backbones_of,
    non_negative_int,
    positive_int,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `eval` to the `ravar` sub-parsers `sub`."""
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint: metrics table, metrics.json and predictions.jsonl",
        description="Evaluate CHECKPOINT on a split of DIR, sampling clips as the model was "
        "trained. Under `torchrun` the split is sharded over the processes (no instance "
        "duplicated or dropped).",
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="e.g. RUN_DIR/best")
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument(
        "--multi-clip",
        type=positive_int,
        metavar="K",
        help="K clips per instance at K temporal phases, predictions averaged",
    )
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="B")
    p.add_argument("--workers", type=non_negative_int, default=0, metavar="N")
    p.add_argument(
        "--out", metavar="DIR", help="default: RUN_DIR/eval-<checkpoint>-<split> beside it"
    )
    p.add_argument(
        "--cache",
        choices=("auto", "off", "require"),
        default="auto",
        help="read frozen-backbone features stored by `ravar cache` (default: when they match)",
    )
    p.add_argument("--cache-dir", metavar="DIR", help="feature stores (default: DATA/cache)")
    add_device_option(p)
    p.add_argument(
        "--allow-missing-detections",
        action="store_true",
        help="evaluate a model that reads detections on a split that has none",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backbone_option(p)
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics table (rank 0); exit code 0."""
    import sys

    from ravar.engine.distributed import distributed_session
    from ravar.engine.evaluate import evaluate_checkpoint

    with distributed_session(args.device) as ctx:
        result = evaluate_checkpoint(
            args.checkpoint,
            args.data,
            args.split,
            num_clips=args.multi_clip,
            batch_size=args.batch_size,
            out_dir=args.out,
            workers=args.workers,
            ctx=ctx,
            progress=not args.quiet and sys.stderr.isatty(),
            cache=args.cache,
            cache_dir=args.cache_dir,
            allow_missing_detections=args.allow_missing_detections,
            backbones=backbones_of(args),
        )
        if ctx.is_main:
            print(result.table)
            print(
                f"{len(result.predictions)} instances, {ctx.world_size} process(es); wrote "
                f"metrics.json and predictions.jsonl to {result.out_dir}"
            )
    return 0
