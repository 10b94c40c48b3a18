"""Untrusted JSON (annotation lines, descriptions, boxes files) that is nested 200k deep, not
UTF-8 or holds 5000-digit integers, and times that overflow frame arithmetic: one line naming
the file (and line, field), on the training path as in `ravar data validate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ravar.data.format import MAX_TIME, DatasetMeta, read_split
from ravar.data.validate import validate_dataset
from ravar.errors import DataFormatError, PredictError
from ravar.inference.detectors.boxes_file import read_boxes_file
from ravar.util.io import JSON_MAX_DEPTH, JsonProblem, decode_json, read_json
from test_hostile_pickles import run_ravar

GOOD = {
    "video_id": "v1",
    "time": 902,
    "person_id": 1,
    "text": "the man on the left",
    "box": [0.1, 0.2, 0.5, 0.9],
    "actions": [12],
}
DEEP = b"[" * 200_000 + b"]" * 200_000
BAD_LINES = {
    "deep": (DEEP, f"nested more than {JSON_MAX_DEPTH} levels deep"),
    "not_utf8": (b'{"video_id": "v\xff"}', "not valid UTF-8 (invalid start byte at byte 15)"),
    "digits": (b'{"person_id": ' + b"7" * 5000 + b"}", "an integer longer than 4300 digits"),
}


def _nest(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_decode_json_limits() -> None:
    assert decode_json(_nest(JSON_MAX_DEPTH)) is not None
    with pytest.raises(JsonProblem, match=f"nested more than {JSON_MAX_DEPTH} levels deep"):
        decode_json(_nest(JSON_MAX_DEPTH + 1))
    for raw, message in BAD_LINES.values():
        with pytest.raises(JsonProblem) as err:
            decode_json(raw)
        assert message in str(err.value)
    assert decode_json(b"7" * 4300) == int("7" * 4300)


def _dataset(root: Path, line: bytes) -> Path:
    DatasetMeta(name="t").save(root)
    (root / "annotations").mkdir()
    (root / "annotations" / "train.jsonl").write_bytes(json.dumps(GOOD).encode() + b"\n" + line)
    return root


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_training_path_and_validate_name_file_and_line(tmp_path: Path, case: str) -> None:
    raw, message = BAD_LINES[case]
    root = _dataset(tmp_path, raw + b"\n")
    with pytest.raises(DataFormatError) as err:
        read_split(root, "train")
    text = str(err.value)
    assert text.startswith(f"{root / 'annotations' / 'train.jsonl'}:2: not valid")
    assert message in text
    report = validate_dataset(root, check_frames=False)
    assert len(report.errors) == 1 and report.errors[0].startswith("train.jsonl:2: <line>: ")
    assert message in report.errors[0]


@pytest.mark.parametrize("time", [1e308, 1e20, MAX_TIME, -1.0])
def test_times_that_overflow_frame_arithmetic_are_refused(tmp_path: Path, time: float) -> None:
    root = _dataset(tmp_path, json.dumps({**GOOD, "time": time}).encode() + b"\n")
    with pytest.raises(DataFormatError, match=r"train\.jsonl:2: field 'time': must be a number"):
        read_split(root, "train")
    report = validate_dataset(root, check_frames=False)
    assert [e.split(": ")[1] for e in report.errors] == ["time"]
    dets = [{"box": [0.1, 0.1, 0.2, 0.2], "category": "cup", "time": time * 1e10 + 1}]
    root2 = _dataset(tmp_path / "d", json.dumps({**GOOD, "detections": dets}).encode())
    with pytest.raises(DataFormatError, match=r"field 'detections\[0\]\.time'"):
        read_split(root2, "train")


def test_largest_time_is_accepted(tmp_path: Path) -> None:
    root = _dataset(tmp_path, json.dumps({**GOOD, "time": MAX_TIME - 1}).encode())
    assert read_split(root, "train")[1].time == MAX_TIME - 1


def test_cli_validate_reports_deep_line_without_traceback(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", DEEP + b"\n")
    out = run_ravar(["data", "validate", str(root)])
    assert out.returncode != 0 and "Traceback" not in out.stderr + out.stdout
    assert f"train.jsonl:2: <line>: not valid JSON (nested more than {JSON_MAX_DEPTH}" in out.stdout


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_boxes_file_and_descriptions_json(tmp_path: Path, case: str) -> None:
    raw, message = BAD_LINES[case]
    path = tmp_path / "boxes.json"
    path.write_bytes(raw)
    with pytest.raises(PredictError) as err:
        read_boxes_file(path)
    assert str(err.value).startswith(f"{path}: not valid") and message in str(err.value)
    with pytest.raises(DataFormatError, match="desc.json: not valid"):
        (tmp_path / "desc.json").write_bytes(raw)
        read_json(tmp_path / "desc.json")


def test_boxes_file_time_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps([{"time": 1e308, "box": [0.1, 0.1, 0.2, 0.2]}]))
    with pytest.raises(
        PredictError, match=r"key 'time' must be a number of seconds in \[0, 1e\+07\)"
    ):
        read_boxes_file(path)


def test_cli_import_ava_deep_descriptions(tmp_path: Path) -> None:
    csv = tmp_path / "train.csv"
    csv.write_text("v1,0902,0.1,0.2,0.3,0.9,80,1\n")
    desc = tmp_path / "desc.json"
    desc.write_bytes(b'{"v1___902___1": ' + DEEP + b"}")
    out = run_ravar(
        ["data", "import-ava", str(tmp_path / "out"), "--split", f"train={csv}"]
        + ["--descriptions", str(desc), "--frames", str(tmp_path)]
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"ravar: error: {desc}: not valid JSON (nested more than {JSON_MAX_DEPTH} levels deep)"
    ]
