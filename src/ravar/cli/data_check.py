"""`ravar data validate` and `ravar data stats`: check a dataset folder and describe it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ravar.cli.argtypes import non_negative_float, non_negative_int
from ravar.data.validate import ValidationReport, validate_dataset
from ravar.errors import DataFormatError, RavarError
from ravar.util.io import write_json


def register(dsub: argparse._SubParsersAction) -> None:
    """Add `validate` and `stats` to the `ravar data` sub-parsers `dsub`."""
    p = dsub.add_parser(
        "validate", help="check a dataset folder: records, duplicate keys, frames of every clip"
    )
    p.add_argument("dir", metavar="DIR", help="dataset folder (with dataset.json)")
    p.add_argument("--splits", nargs="+", metavar="SPLIT", help="only these splits")
    p.add_argument(
        "--window",
        type=non_negative_float,
        default=None,
        metavar="SECONDS",
        help="length of the window around each keyframe whose frames must exist (default: "
        "the frames training and evaluation read, +- dataset.json's frame_source."
        "keyframe_window; 3 s when it is null)",
    )
    p.add_argument("--deep", action="store_true", help="also decode keyframes and window ends")
    p.add_argument("--no-frames", action="store_true", help="skip the frame checks")
    p.add_argument(
        "--max-errors",
        type=non_negative_int,
        default=50,
        metavar="N",
        help="print at most N errors (default 50; --json gets all)",
    )
    _add_outputs(p)
    p.set_defaults(func=run_validate)

    s = dsub.add_parser("stats", help="describe a dataset folder (sizes, actions, texts, boxes)")
    s.add_argument("dir", metavar="DIR", help="dataset folder (with dataset.json)")
    s.add_argument("--splits", nargs="+", metavar="SPLIT", help="only these splits")
    _add_outputs(s)
    s.set_defaults(func=run_stats)


def _add_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plot", metavar="FILE.png", help="write the action histogram as a PNG")
    p.add_argument("--log", action="store_true", help="log-scale counts in the --plot")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")


def _write_outputs(report: ValidationReport, args: argparse.Namespace) -> None:
    if args.json:
        path = Path(args.json)
        try:
            write_json(path, report.to_dict())
        except OSError as e:
            raise RavarError(f"--json {path}: cannot write ({e})") from None
        print(f"report written to {path}")
    if args.plot and report.summary.get("splits"):
        from ravar.data.stats_plot import plot_action_histogram

        print(f"plot written to {plot_action_histogram(report, args.plot, log_scale=args.log)}")


def run_validate(args: argparse.Namespace) -> int:
    """Validate; exit code 1 when any error was found, else 0. A folder whose dataset.json
    cannot be read raises (one line: the file, the key and why)."""
    report = validate_dataset(
        args.dir,
        splits=args.splits,
        window_seconds=args.window,
        check_frames=not args.no_frames,
        deep=args.deep,
    )
    if report.meta is None:
        _write_outputs(report, args)
        raise DataFormatError(report.errors[0])
    print(report.format(max_errors=args.max_errors))
    _write_outputs(report, args)
    return 0 if report.ok else 1


def run_stats(args: argparse.Namespace) -> int:
    """Describe (no frame checks); raises when the folder cannot be read, else exit code 0."""
    report = validate_dataset(args.dir, splits=args.splits, check_frames=False)
    if report.meta is None or not report.summary["splits"]:
        raise DataFormatError(report.errors[0] if report.errors else f"{args.dir}: no splits")
    print(report.format(max_errors=10))
    if not report.ok:
        print(f"(run `ravar data validate {args.dir}` for the full list of problems)")
    _write_outputs(report, args)
    return 0
