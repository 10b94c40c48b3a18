"""`ravar data import-refava` and `ravar data import-ava`: convert released annotations into a
canonical dataset folder and print what was written, missing and skipped."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ravar.cli.data_detect import add_detector_argument, detect
from ravar.data.format import STANDARD_SPLITS
from ravar.data.importers import ImportProblemsError, ImportReport
from ravar.errors import RavarError

if TYPE_CHECKING:
    from ravar.data.importers.safe_pickle import PickleLimits


def register(dsub: argparse._SubParsersAction) -> None:
    """Add the import subcommands to the `ravar data` sub-parsers `dsub`."""
    p = dsub.add_parser(
        "import-refava",
        help="convert RefAVA / RefAVA++ pickles (loaded safely) into a ravar dataset folder",
    )
    p.add_argument("src", metavar="SRC", help="folder with the {split}_*.pkl files")
    p.add_argument("out", metavar="OUT", help="new (or empty) dataset folder to write")
    _add_common(p, default_name="refava")
    p.add_argument(
        "--splits",
        nargs="+",
        default=list(STANDARD_SPLITS),
        metavar="SPLIT",
        help="splits to import (default: train val test); also comma-separated",
    )
    p.add_argument(
        "--pickle-limit",
        action="append",
        default=[],
        type=_name_value,
        metavar="NAME=N",
        help="raise (or lower) one limit on what a pickle may ask for; repeat "
        "(max_file_bytes, max_records, max_depth, max_objects, max_array_elements, "
        "max_array_bytes)",
    )
    p.set_defaults(func=run_import_refava)

    q = dsub.add_parser(
        "import-ava",
        help="convert AVA CSV rows plus a file of referring sentences into a ravar dataset folder",
    )
    q.add_argument("out", metavar="OUT", help="new (or empty) dataset folder to write")
    q.add_argument(
        "--split",
        action="append",
        required=True,
        type=_name_value,
        metavar="NAME=CSV",
        help="a split and its AVA CSV (video_id,second,x1,y1,x2,y2,action_id,person_id); repeat",
    )
    q.add_argument(
        "--descriptions",
        action="append",
        required=True,
        metavar="FILE",
        help="CSV (video_id,second,person_id,text) or JSON (key -> text) for all splits, "
        "or NAME=FILE once per split",
    )
    _add_common(q, default_name="ava")
    q.set_defaults(func=run_import_ava)


def _add_common(p: argparse.ArgumentParser, *, default_name: str) -> None:
    p.add_argument(
        "--frames",
        required=True,
        metavar="FRAME_ROOT",
        help="folder of AVA frames <video_id>/image_%%06d.jpg (absolute, or relative to OUT)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (writing nothing) if any person is missing from a file or any entry is bad",
    )
    p.add_argument("--name", default=default_name, help=f"dataset name (default {default_name})")
    add_detector_argument(p, "--detect")


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, value


def _finish(run: Callable[[], ImportReport], detector: str | None = None) -> int:
    """Run an import thunk: print its report, then run `detector` (`--detect`) over every split
    written; a strict failure prints the report and the error and gives exit code 1."""
    if detector is not None:
        from ravar.detect import check_detector_spec

        check_detector_spec(detector, "--detect")  # before anything is written
    try:
        report = run()
    except ImportProblemsError as e:
        print(e.report.format())
        print(f"ravar: error: {e}", file=sys.stderr)
        return 1
    print(report.format())
    if detector is not None:
        return detect(report.out_dir, detector, list(report.splits))
    return 0


def run_import_refava(args: argparse.Namespace) -> int:
    """Run `ravar data import-refava`; exit code 0, or 1 when --strict found problems."""
    from ravar.data.importers.refava import import_refava

    limits = _pickle_limits(args.pickle_limit)
    splits = [s for item in args.splits for s in item.split(",") if s]
    return _finish(
        lambda: import_refava(
            args.src,
            args.out,
            frame_root=args.frames,
            splits=splits,
            name=args.name,
            strict=args.strict,
            limits=limits,
        ),
        args.detect,
    )


def _pickle_limits(pairs: list[tuple[str, str]]) -> PickleLimits:
    """`PickleLimits` with the `--pickle-limit NAME=N` values given (the defaults otherwise)."""
    from ravar.data.importers.safe_pickle import PickleLimits

    values: dict[str, int] = {}
    for name, text in pairs:
        if name not in PickleLimits.names():
            raise RavarError(
                f"--pickle-limit {name}: unknown limit (one of {', '.join(PickleLimits.names())})"
            )
        try:
            values[name] = int(text.replace("_", ""))
        except ValueError:
            raise RavarError(f"--pickle-limit {name}={text}: expected an integer") from None
    return PickleLimits(**values)


def run_import_ava(args: argparse.Namespace) -> int:
    """Run `ravar data import-ava`; exit code 0, or 1 when --strict found problems."""
    from ravar.data.importers.ava_csv import import_ava_csv

    split_csvs: dict[str, str] = {}
    for name, path in args.split:
        if name in split_csvs:
            raise RavarError(f"--split: split {name!r} given twice")
        split_csvs[name] = path
    descriptions: str | dict[str, str]
    if len(args.descriptions) == 1 and args.descriptions[0].partition("=")[0] not in split_csvs:
        descriptions = args.descriptions[0]
    else:
        descriptions = {}
        for item in args.descriptions:
            name, sep, path = item.partition("=")
            if not sep or name not in split_csvs or name in descriptions:
                raise RavarError(
                    f"--descriptions: with several files, give NAME=FILE once per --split "
                    f"({', '.join(split_csvs)}); got {item!r}"
                )
            descriptions[name] = path
    return _finish(
        lambda: import_ava_csv(
            split_csvs,
            descriptions,
            args.out,
            frame_root=args.frames,
            name=args.name,
            strict=args.strict,
        ),
        args.detect,
    )
