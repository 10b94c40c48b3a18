"""The command line: every subcommand is listed with a one-line description and has --help."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from ravar.cli import build_parser, main


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield prefix + (name,), helps.get(name), sub
                yield from _subcommands(sub, prefix + (name,))


def test_every_subcommand_has_a_one_line_help(capsys):
    found = list(_subcommands(build_parser()))
    names = {" ".join(p) for p, _, _ in found}
    assert {
        "data",
        "data validate",
        "data stats",
        "data import-refava",
        "data detect",
        "labels",
    } <= names
    for path, help_text, _ in found:
        assert help_text and "\n" not in help_text, path
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0
        assert "usage: ravar " + " ".join(path) in capsys.readouterr().out


def test_console_script_runs_and_errors_are_one_line(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "ravar", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "labels" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "ravar", "data", "stats", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "nope" in bad.stderr


def test_labels_command_lists_80(capsys):
    assert main(["labels"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 80 and lines[13].split()[-1] == "walk"


def test_output_into_a_closed_pipe_ends_quietly():
    """`ravar labels | head -1`: the reader is gone before the output is written (here: before
    the command starts, so the write surely fails); no traceback, exit code 141 as for SIGPIPE."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ravar", "labels"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write_end)
    assert done.stderr == "" and done.returncode == 141


def test_output_into_a_pipe_read_to_the_end_is_unchanged():
    done = subprocess.run([sys.executable, "-m", "ravar", "labels"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    assert len(done.stdout.splitlines()) == 80
