"""`ravar checkpoint strip`: leave the frozen backbone weights out of an existing checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from ravar.cli.argtypes import add_backbone_option, backbones_of


def register(sub: argparse._SubParsersAction) -> None:
    """Add `checkpoint` to the `ravar` sub-parsers `sub`."""
    p = sub.add_parser("checkpoint", help="operations on a checkpoint directory")
    ops = p.add_subparsers(dest="checkpoint_command", metavar="OPERATION", required=True)
    s = ops.add_parser(
        "strip",
        help="leave out the frozen weights of backbones read from local folders",
        description="Rewrite CHECKPOINT without the frozen weights of its backbones read from "
        "local folders (or the packaged MiniLM), recording their hash: loading it then needs a "
        "local copy of each (the recorded folder, or --backbone NAME=DIR).",
    )
    s.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint directory")
    s.add_argument(
        "--out", metavar="DIR", help="write the stripped checkpoint here (default: in place)"
    )
    add_backbone_option(s)
    s.set_defaults(func=run_strip)


def _megabytes(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def run_strip(args: argparse.Namespace) -> int:
    """Strip the checkpoint and print what was left out; exit code 0."""
    from ravar.engine.checkpoint import (
        find_checkpoint,
        read_checkpoint_config,
        strip_frozen_weights,
    )

    before = _megabytes(find_checkpoint(args.checkpoint))
    out = strip_frozen_weights(args.checkpoint, args.out, backbones=backbones_of(args))
    records = read_checkpoint_config(out)["backbones"]
    left = [f"{name} ({r['source']})" for name, r in records.items() if r["left_out"]]
    print(f"wrote {out}: {before:.1f} MB -> {_megabytes(out):.1f} MB")
    print(f"left out the frozen weights of: {', '.join(left)}")
    return 0
