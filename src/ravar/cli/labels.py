"""`ravar labels`: list the 80 AVA v2.2 action classes."""

from __future__ import annotations

import argparse

from ravar.labels import ACTION_TYPES, action_classes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("labels", help="list the 80 AVA v2.2 action classes (id, type, name)")
    p.add_argument("--type", choices=ACTION_TYPES, help="only the classes of this group")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for c in action_classes():
        if args.type is None or c.type == args.type:
            print(f"{c.id:3d}  {c.type:<19}  {c.name}")
    return 0
