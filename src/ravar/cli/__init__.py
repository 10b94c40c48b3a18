"""The `ravar` command line: one subcommand module per concern, wired here."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ravar import __version__
from ravar.errors import RavarError

SYNTH_SUBCOMMANDS = ("generate", "preview", "-h", "--help")


def build_parser() -> argparse.ArgumentParser:
    """The full `ravar` argument parser with every subcommand."""
    from ravar.cli import cache as cache_cmd
    from ravar.cli import checkpoint as checkpoint_cmd
    from ravar.cli import data as data_cmd
    from ravar.cli import demo as demo_cmd
    from ravar.cli import evaluate as eval_cmd
    from ravar.cli import labels as labels_cmd
    from ravar.cli import models as models_cmd
    from ravar.cli import predict as predict_cmd
    from ravar.cli import serve as serve_cmd
    from ravar.cli import synth as synth_cmd
    from ravar.cli import train as train_cmd

    parser = argparse.ArgumentParser(
        prog="ravar",
        description="Referring Atomic Video Action Recognition: say what the person a sentence "
        "describes is doing in a video, and where they are.",
    )
    parser.add_argument("--version", action="version", version=f"ravar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        demo_cmd,
        train_cmd,
        eval_cmd,
        predict_cmd,
        serve_cmd,
        cache_cmd,
        checkpoint_cmd,
        data_cmd,
        labels_cmd,
        models_cmd,
        synth_cmd,
    ):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ravar` console script; returns the process exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["synth"] and len(argv) > 1 and argv[1] not in SYNTH_SUBCOMMANDS:
        argv.insert(1, "generate")  # `ravar synth DIR ...` is short for `ravar synth generate DIR`
    try:
        args = parser.parse_args(argv)  # a --device this machine lacks raises RavarError here
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        return quiet_broken_pipe()
    except RavarError as e:
        print(f"ravar: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ravar: interrupted", file=sys.stderr)
        return 130


def quiet_broken_pipe() -> int:
    """The reader of stdout went away (`ravar labels | head -1`): no traceback, nothing more
    written, exit code 141 (128 + SIGPIPE), as a shell's own commands give."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush goes nowhere
    except (OSError, ValueError):  # stdout is not a file (captured by a test harness)
        pass
    return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
