"""`ravar models`: the registered model names, their parameter counts and configs."""

from __future__ import annotations

import argparse

import torch
import yaml

from ravar.models import create_model, list_models
from ravar.models.registry import describe_config, model_doc, model_family


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the registered models with parameter counts")
    p.add_argument("--filter", metavar="TEXT", help="only names containing TEXT")
    p.add_argument("--no-params", action="store_true", help="skip counting parameters (fast)")
    p.add_argument("--show", metavar="NAME", help="print the full config of one model as YAML")
    p.set_defaults(func=run)


def count_params(name: str) -> tuple[int, int]:
    """(total, trainable) parameters of a registered model, built without allocating weights."""
    with torch.device("meta"):
        model = create_model(name)
    return model.param_counts()


def _millions(n: int) -> str:
    return f"{n / 1e6:,.1f}M"


def run(args: argparse.Namespace) -> int:
    if args.show:
        print(yaml.safe_dump(describe_config(args.show), sort_keys=False).rstrip())
        return 0
    names = [n for n in list_models() if not args.filter or args.filter in n]
    rows = []
    for name in names:
        total = trainable = "-"
        if not args.no_params:
            t, tr = count_params(name)
            total, trainable = _millions(t), _millions(tr)
        rows.append((name, model_family(name), total, trainable, model_doc(name)))
    header = ("name", "family", "params", "trainable", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for r in [header, *rows]:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]),
                 r[3].rjust(widths[3]), r[4]]  # fmt: skip
        print("  ".join(cells))
    return 0
