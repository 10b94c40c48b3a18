"""dataset.json: every key's type and range is checked by `load_meta`, and `ravar data validate`
refuses a bad one with one line naming the file and the key (no traceback later on)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ravar.cli import main
from ravar.data.format import DatasetMeta, FrameSourceSpec, load_meta
from ravar.errors import DataFormatError

GOOD = DatasetMeta(name="d", frame_source=FrameSourceSpec(), image_size=(320, 240)).to_dict()
INF, NAN = math.inf, math.nan

# (where the key is: "" top level or "frame_source", key, bad value, words the error must hold)
BAD = [
    ("frame_source", "pattern", 5, "must be a string"),
    ("frame_source", "pattern", "{video_id}/{index:06d}{x}.jpg", "may only use"),
    ("frame_source", "pattern", "{video_id.__class__}/{index}.jpg", "may only use"),
    ("frame_source", "pattern", "{video_id}/{index:0999999999d}.jpg", "may only use"),
    ("frame_source", "pattern", "{video_id}/{index!r}.jpg", "may only use"),
    ("frame_source", "pattern", "{video_id}/{index:06d", "not a format string"),
    ("frame_source", "pattern", "{video_id}/image.jpg", "{index"),
    ("frame_source", "pattern", "image_{index}.jpg", "{video_id}"),
    ("frame_source", "kind", 5, "one of"),
    ("frame_source", "kind", ["frames"], "one of"),
    ("frame_source", "root", 5, "non-empty path"),
    ("frame_source", "root", "", "non-empty path"),
    ("frame_source", "fps", INF, "fps' must be a number > 0"),
    ("frame_source", "fps", NAN, "fps' must be a number > 0"),
    ("frame_source", "fps", -30, "fps' must be a number > 0"),
    ("frame_source", "fps", 1e300, "<= 1000"),
    ("frame_source", "fps", "30", "got '30'"),
    ("frame_source", "fps", True, "got True"),
    ("frame_source", "time_offset", 1e308, "time_offset' must be a number >= 0"),
    ("frame_source", "time_offset", -INF, "time_offset"),
    ("frame_source", "time_offset", None, "time_offset"),
    ("frame_source", "first_index", 0.5, "first_index' must be an integer"),
    ("frame_source", "first_index", -1, "first_index"),
    ("frame_source", "first_index", 10**40, "first_index"),
    ("frame_source", "first_index", False, "first_index"),
    ("frame_source", "keyframe_window", -1, "keyframe_window"),
    ("frame_source", "keyframe_window", INF, "keyframe_window"),
    ("frame_source", "keyframe_window", 1e9, "keyframe_window"),
    ("frame_source", "keyframe_window", "1.5", "keyframe_window"),
    ("frame_source", "colour", 1, "unknown keys in 'frame_source'"),
    ("", "frame_source", [1, 2], "'frame_source' must be an object"),
    ("", "image_size", [0, 5], "image_size"),
    ("", "image_size", [320.0, 240.0], "image_size"),
    ("", "image_size", [True, 5], "image_size"),
    ("", "image_size", [10**6, 5], "image_size"),
    ("", "image_size", {"w": 1}, "image_size"),
    ("", "image_size", [1, 2, 3], "image_size"),
    ("", "name", 5, "'name' must be a string"),
    ("", "name", None, "'name' must be a string"),
    ("", "extra", 5, "'extra' must be an object"),
    ("", "extra", [1], "'extra' must be an object"),
    ("", "description", 5, "'description' must be a string"),
    ("", "num_classes", 5, "'num_classes' must be 80"),
    ("", "num_classes", 80.0, "'num_classes' must be 80"),
    ("", "num_classes", "80", "'num_classes' must be 80"),
    ("", "labels", "ava_v2.1", "'labels'"),
    ("", "format_version", True, "format_version"),
    ("", "format_version", 1.0, "format_version"),
    ("", "frame_sorce", {}, "unknown keys ['frame_sorce']"),
]
IDS = [f"{where or 'top'}.{key}={value!r}"[:60] for where, key, value, _ in BAD]


def _write_meta(folder: Path, where: str, key: str, value: object) -> Path:
    d = json.loads(json.dumps(GOOD))
    (d[where] if where else d)[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    # NaN and Infinity as Python's json writes them (JSON has no such numbers, json reads them)
    (folder / "dataset.json").write_text(json.dumps(d), encoding="utf-8")
    (folder / "annotations").mkdir(exist_ok=True)
    (folder / "annotations" / "train.jsonl").write_text("", encoding="utf-8")
    return folder


def test_good_meta_round_trips(tmp_path):
    meta = DatasetMeta(name="d", image_size=(320, 240), extra={"seed": 1}, description="x")
    meta.save(tmp_path)
    assert load_meta(tmp_path) == meta
    d = dict(GOOD, frame_source=dict(GOOD["frame_source"], keyframe_window=None, fps=25))
    _write_meta(tmp_path, "", "frame_source", d["frame_source"])
    fs = load_meta(tmp_path).frame_source
    assert fs.keyframe_window is None and fs.fps == 25.0 and isinstance(fs.fps, float)


@pytest.mark.parametrize(("where", "key", "value", "words"), BAD, ids=IDS)
def test_bad_key_is_refused_by_load_meta_naming_file_and_key(tmp_path, where, key, value, words):
    folder = _write_meta(tmp_path / "ds", where, key, value)
    with pytest.raises(DataFormatError) as info:
        load_meta(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'dataset.json'}: ")
    assert words in message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize(("where", "key", "value", "words"), BAD, ids=IDS)
def test_bad_key_makes_data_validate_exit_1_with_one_line(
    tmp_path, capsys, where, key, value, words
):
    folder = _write_meta(tmp_path / "ds", where, key, value)
    assert main(["data", "validate", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ravar: error: ")
    assert str(folder / "dataset.json") in err and words in err


def test_data_validate_in_a_fresh_process_prints_no_traceback(tmp_path):
    folder = _write_meta(tmp_path / "ds", "frame_source", "fps", INF)
    src = Path(__file__).resolve().parents[1] / "src"
    proc = subprocess.run(
        [sys.executable, "-m", "ravar", "data", "validate", str(folder)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"ravar: error: {folder / 'dataset.json'}: key 'frame_source.fps' must be a number "
        "> 0 and <= 1000, got inf"
    ]
