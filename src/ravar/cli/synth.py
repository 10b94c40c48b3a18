"""`ravar synth ...`: generate the RefAVA-Synth benchmark and preview it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="generate / preview RefAVA-Synth, a procedural benchmark")
    ssub = p.add_subparsers(dest="synth_command", metavar="SYNTH_COMMAND", required=True)
    g = ssub.add_parser("generate", help="write a RefAVA-Synth dataset in the canonical format")
    g.add_argument("dir", type=Path, help="output folder (new or empty)")
    g.add_argument("--preset", default="small", choices=["small", "standard", "hard"])
    g.add_argument("--seed", type=int, default=0, help="same preset + seed = same annotations")
    g.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per CPU core; results do not depend on it)",
    )
    g.add_argument("--frames", default="mp4", choices=["mp4", "jpg"], help="video files or JPEGs")
    g.set_defaults(func=run_generate)
    v = ssub.add_parser("preview", help="PNG grid of keyframes, sentences, actions and motion")
    v.add_argument("dir", type=Path, help="a RefAVA-Synth dataset folder")
    v.add_argument("--n", type=int, default=8, help="records to show")
    v.add_argument("--split", default=None, help="split to show (default: test)")
    v.add_argument("--out", type=Path, default=None, help="PNG path (default: DIR/preview.png)")
    v.set_defaults(func=run_preview)


def run_generate(args: argparse.Namespace) -> int:
    from ravar.errors import RavarError
    from ravar.synth.generate import generate

    if args.workers < 1:
        raise RavarError(f"--workers: must be at least 1, got {args.workers}")
    summary = generate(
        args.dir,
        preset=args.preset,
        seed=args.seed,
        workers=args.workers,
        frames=args.frames,
        say=lambda line: print(line, flush=True),
    )
    for split, c in summary["counts"].items():
        print(f"{split:>10}: {c['clips']:5d} clips  {c['records']:6d} records")
    print(f"wrote {args.dir} in {summary['seconds']} s (card: {args.dir / 'README.md'})")
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from ravar.synth.preview import write_preview

    out = args.out if args.out is not None else args.dir / "preview.png"
    path = write_preview(args.dir, out, n=args.n, split=args.split)
    print(f"wrote {path}")
    return 0
