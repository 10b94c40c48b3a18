"""`ravar data ...`: validate, describe, import and detect datasets in the canonical format."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ravar.cli import data_check, data_detect, data_import

    p = sub.add_parser("data", help="validate, describe and import RAVAR datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    for module in (data_check, data_import, data_detect):
        module.register(dsub)
