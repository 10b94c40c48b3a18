"""Crafted pickles that ask for far more than their size (memo DAGs, deep nesting, huge numpy
shapes) end at once with one line naming the file and the limit, in the library and the CLI."""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pickle_bombs import BOMBS, KEY, list_dag_value, tuple_dag_key
from ravar.data.importers.refava import import_refava
from ravar.data.importers.safe_pickle import PickleLimits, safe_load_pickle
from ravar.errors import DataFormatError, PickleLimitError
from ravar.util.text import short_repr

SRC = Path(__file__).resolve().parents[1] / "src"
MEMORY_CAP = 2 * 2**30  # address space of a CLI run: a regression fails instead of swapping
CLI_TIMEOUT = 60


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_ravar(args: list[str]) -> subprocess.CompletedProcess[str]:
    """`python -m ravar ARGS` with this checkout's sources, a time limit and a memory cap."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "ravar", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=env,
        preexec_fn=_cap_memory,
    )


def _split_with(src: Path, role: str, raw: bytes) -> Path:
    """RefAVA++ pickles of split 'train' holding KEY, with `role`'s file replaced by `raw`."""
    src.mkdir(parents=True, exist_ok=True)
    good = {
        "keyframe": {KEY: [[0.1, 0.2, 0.5, 0.9]]},
        "label": {KEY: [12]},
        "description": {KEY: ["the man on the left"]},
    }
    for name, data in good.items():
        (src / f"train_{name}.pkl").write_bytes(pickle.dumps(data, protocol=2))
    (src / f"train_{role}.pkl").write_bytes(raw)
    return src / f"train_{role}.pkl"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_cli_import_refava_refuses_each_bomb_in_one_line(tmp_path: Path, name: str) -> None:
    build, limit = BOMBS[name]
    bomb = _split_with(tmp_path / "src", "keyframe", build())
    start = time.monotonic()
    out = run_ravar(
        ["data", "import-refava", str(tmp_path / "src"), str(tmp_path / "out")]
        + ["--frames", str(tmp_path), "--splits", "train"]
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(bomb) in lines[0] and f"limit {limit}=" in lines[0]
    assert f"--pickle-limit {limit}=N" in lines[0]
    assert not (tmp_path / "out" / "annotations").exists()
    assert time.monotonic() - start < CLI_TIMEOUT


@pytest.mark.parametrize("name", ["tuple_dag_key_30", "list_dag_value_30", "deep_value"])
def test_bombs_refused_in_process_before_the_costly_step(tmp_path: Path, name: str) -> None:
    build, limit = BOMBS[name]
    path = tmp_path / "x.pkl"
    path.write_bytes(build())
    start = time.monotonic()
    with pytest.raises(PickleLimitError, match=f"x\\.pkl: refused: .* limit {limit}="):
        safe_load_pickle(path)
    assert time.monotonic() - start < 10  # 2**30 hashes or visits would take minutes


@pytest.mark.slow
def test_cli_pickle_limit_flag_moves_the_limit(tmp_path: Path) -> None:
    # 2**11 - 1 lists: loads under the defaults (the record is then dropped: not a box) ...
    _split_with(tmp_path / "src", "keyframe", list_dag_value(10))
    base = ["data", "import-refava", str(tmp_path / "src")]
    rest = ["--frames", str(tmp_path), "--splits", "train"]
    ok = run_ravar([*base, str(tmp_path / "o1"), *rest])
    assert ok.returncode == 0, ok.stderr
    assert "bad box" in ok.stdout
    # ... and is refused with a lower limit, one line naming it
    low = run_ravar([*base, str(tmp_path / "o2"), *rest, "--pickle-limit", "max_objects=1000"])
    assert low.returncode != 0 and "Traceback" not in low.stderr
    assert "limit max_objects=1,000" in low.stderr
    bad = run_ravar([*base, str(tmp_path / "o3"), *rest, "--pickle-limit", "max_bytes=5"])
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "--pickle-limit max_bytes: unknown limit" in bad.stderr


def _dump(tmp_path: Path, data: object, name: str = "d.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("limits", "ok", "over"),
    [
        # records: entries of the top-level dict
        ({"max_records": 4}, {str(i): i for i in range(4)}, {str(i): i for i in range(5)}),
        # depth: lists inside lists, the outer one included
        ({"max_depth": 4}, {"k": _nested(3)}, {"k": _nested(4)}),
        # array elements, per array
        ({"max_array_elements": 10}, np.zeros(10, np.int8), np.zeros(11, np.int8)),
        # array bytes, all arrays together: 2 x 8 bytes over 12
        (
            {"max_array_bytes": 12},
            [np.zeros(8, np.int8)],
            [np.zeros(8, np.int8), np.ones(8, np.int8)],
        ),
        # file size
        ({"max_file_bytes": 200}, b"x" * 100, b"x" * 300),
    ],
)
def test_each_limit_refuses_just_over_it(
    tmp_path: Path, limits: dict, ok: object, over: object
) -> None:
    name = next(iter(limits))
    settings = PickleLimits(**limits)
    got = safe_load_pickle(_dump(tmp_path, ok), settings)
    assert pickle.dumps(got) == pickle.dumps(ok)
    with pytest.raises(PickleLimitError, match=f"over the importer limit {name}="):
        safe_load_pickle(_dump(tmp_path, over, "over.pkl"), settings)


def test_objects_count_every_reference_to_a_shared_object(tmp_path: Path) -> None:
    shared = list(range(100))
    # 50 references to one 101-object list expand to over 5,000 objects: refused at 5,000 ...
    path = _dump(tmp_path, {"k": [shared] * 50})
    with pytest.raises(PickleLimitError, match="max_objects=5,000"):
        safe_load_pickle(path, PickleLimits(max_objects=5_000))
    # ... loaded at 20,000, sharing kept (the memo's one list, not 50 copies)
    got = safe_load_pickle(path, PickleLimits(max_objects=20_000))
    assert got["k"][0] == shared and got["k"][0] is got["k"][49]


def test_limits_must_be_positive_integers() -> None:
    with pytest.raises(DataFormatError, match="max_depth must be an integer > 0"):
        PickleLimits(max_depth=0)
    with pytest.raises(DataFormatError, match="max_objects must be an integer > 0"):
        PickleLimits(max_objects=1.5)  # type: ignore[arg-type]


def test_import_refava_takes_limits(tmp_path: Path) -> None:
    _split_with(tmp_path / "src", "label", pickle.dumps({KEY: list(range(1, 81))}, protocol=2))
    with pytest.raises(PickleLimitError, match=r"train_label\.pkl: .*max_objects=50"):
        import_refava(
            tmp_path / "src",
            tmp_path / "out",
            frame_root=tmp_path,
            splits=["train"],
            limits=PickleLimits(max_objects=50),
        )
    report = import_refava(tmp_path / "src", tmp_path / "o2", frame_root=tmp_path, splits=["train"])
    assert report.splits["train"].dropped == []


def test_short_repr_is_bounded_for_shared_and_huge_values() -> None:
    dag: list = []
    for _ in range(60):
        dag = [dag, dag]
    start = time.monotonic()
    text = short_repr(dag)
    assert len(text) <= 80 and text.startswith("[[[")
    assert short_repr(10**5000) == f"<int of {(10**5000).bit_length()} bits>"
    assert short_repr(np.zeros((1000, 1000))) == "array(shape=(1000, 1000), dtype=float64)"
    long = short_repr("x" * 10**6)
    assert "..." in long and len(long) <= 80
    assert time.monotonic() - start < 1


def test_tuple_dag_file_matches_the_report_size() -> None:
    # the report's files: 775 and 789 bytes; ours differ by a few opcodes, the same shape
    assert 700 < len(tuple_dag_key()) < 900 and 900 < len(list_dag_value()) < 1100
