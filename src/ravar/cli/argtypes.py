"""argparse value types with one-line errors naming the bound."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded(kind: type, minimum: float, strict: bool) -> Callable[[str], int | float]:
    """An argparse type: `kind` (int or float) that is > `minimum` (strict) or >= `minimum`."""
    noun = "an integer" if kind is int else "a number"
    relation = ">" if strict else ">="

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not (value > minimum if strict else value >= minimum):
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, got {text!r}")
        return value

    return parse


def device_arg(text: str) -> str:
    """`--device`: any torch device string (`cpu`, `cuda`, `cuda:1`, `mps`), normalised; an
    argparse error for a malformed one, RavarError (one line) for one this machine lacks."""
    from ravar.util.devices import check_device, parse_device

    try:
        device = parse_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return str(check_device(device))


def add_device_option(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """The `--device` option every command that runs a model shares."""
    when = f"default: {default}" if default else "default: cuda when available, else cpu"
    parser.add_argument(
        "--device",
        type=device_arg,
        default=default,
        metavar="DEVICE",
        help=f"torch device: cpu, cuda, cuda:N, mps, ... ({when})",
    )


def add_backbone_option(parser: argparse.ArgumentParser) -> None:
    """`--backbone [NAME=]DIR` (repeatable): local copies of backbones whose frozen weights a
    checkpoint left out; collected in `args.backbones` as {NAME: DIR} ("" for a bare DIR)."""
    parser.add_argument(
        "--backbone",
        dest="backbones",
        action="append",
        type=backbone_arg,
        metavar="[NAME=]DIR",
        help="local copy of a backbone whose frozen weights the checkpoint left out (NAME: its "
        "module, e.g. visual or text; default: the one left out); checked by hash",
    )


def backbone_arg(text: str) -> tuple[str, str]:
    """`NAME=DIR` -> (NAME, DIR); a bare `DIR` -> ("", DIR)."""
    name, sep, folder = text.partition("=")
    if not sep:
        return "", text
    if not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR or DIR, got {text!r}")
    return name, folder


def backbones_of(args: argparse.Namespace) -> dict[str, str]:
    """The {NAME: DIR} map of the `--backbone` options of `args`."""
    return dict(getattr(args, "backbones", None) or [])


positive_int = bounded(int, 0, strict=True)
non_negative_int = bounded(int, 0, strict=False)
positive_float = bounded(float, 0.0, strict=True)
non_negative_float = bounded(float, 0.0, strict=False)
