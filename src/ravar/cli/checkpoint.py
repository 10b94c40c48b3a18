"""`ravar checkpoint`: `strip` leaves the frozen backbone weights out of an existing checkpoint,
`card` writes its model card README.md, `push` uploads it to a Hugging Face Hub model repo."""

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

    c = ops.add_parser(
        "card",
        help="write the model card README.md of a checkpoint",
        description="Write CHECKPOINT/README.md: Hub front matter (library_name, license, tags, "
        "dataset, metrics with values) and a body with the model, its parameters, config, "
        "training data and metrics. A checkpoint inside a training run (RUN_DIR/best) takes "
        "the dataset name and test metrics from the run.",
    )
    c.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint directory")
    c.add_argument("--run", metavar="RUN_DIR", help="training run it came from (default: parent)")
    c.add_argument("--repo-id", metavar="ID", help="Hub repo id shown in the loading example")
    c.add_argument("--license", default="apache-2.0", help="license id (default apache-2.0)")
    c.set_defaults(func=run_card)

    u = ops.add_parser(
        "push",
        help="upload a checkpoint to a Hugging Face Hub model repo",
        description="Upload CHECKPOINT (without trainer_state.pt, with a model card when it has "
        "no README.md) to the Hub model repo REPO_ID, created if needed. Uses the token of "
        "`hf auth login` or HF_TOKEN; refused while HF_HUB_OFFLINE is set.",
    )
    u.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint directory")
    u.add_argument("repo_id", metavar="REPO_ID", help="e.g. your-name/refatomnet-pp-tiny")
    u.add_argument("--private", action="store_true", default=None, help="create it private")
    u.add_argument("--message", metavar="TEXT", help="commit message")
    u.set_defaults(func=run_push)


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


def run_card(args: argparse.Namespace) -> int:
    """Write the card and say where; exit code 0."""
    from ravar.engine.model_card import card_facts, write_card

    path = write_card(args.checkpoint, repo_id=args.repo_id, run_dir=args.run, license=args.license)
    facts = card_facts(args.checkpoint, run_dir=args.run)
    splits = ", ".join(facts.metrics) or "none"
    print(f"wrote {path} (dataset: {facts.dataset or 'not recorded'}; metrics: {splits})")
    return 0


def run_push(args: argparse.Namespace) -> int:
    """Upload the checkpoint and print the commit URL; exit code 0."""
    from ravar.engine.hub import push_checkpoint

    url = push_checkpoint(
        args.checkpoint, args.repo_id, private=args.private, commit_message=args.message
    )
    print(f"pushed {args.checkpoint} to {args.repo_id}: {url}")
    return 0
