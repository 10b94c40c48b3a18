"""`ravar.util.io`: a write that fails midway leaves the previous file intact and no temporary
file; JSON read errors are one line naming the file; the files' formats stay byte for byte."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from ravar.cache.store import CacheError, StoreWriter
from ravar.data.format import (
    DatasetMeta,
    FrameSourceSpec,
    Record,
    load_meta,
    read_split,
    write_split,
)
from ravar.engine.runlog import append_log, read_log, truncate_log
from ravar.errors import DataFormatError, RavarError
from ravar.util import io
from ravar.util.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    json_line,
    read_json,
    remove_stale_temps,
    temp_sibling,
    write_json,
)


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_temporary_names_follow_one_scheme_and_match_no_data_pattern(tmp_path):
    path = tmp_path / "train.jsonl"
    a, b = temp_sibling(path), temp_sibling(path)
    assert a != b and a.parent == tmp_path
    assert re.fullmatch(r"\.train\.jsonl\.tmp-[0-9a-f]{8}", a.name), a.name
    a.write_text("left by a killed writer")
    (tmp_path / "keep").mkdir()
    stale_dir = temp_sibling(tmp_path / "keep")
    stale_dir.mkdir()
    (stale_dir / "x.npy").write_bytes(b"")
    other = temp_sibling(tmp_path / "val.jsonl")
    other.write_text("")
    assert list(tmp_path.glob("*.jsonl")) == []  # a leftover is never taken for a data file
    remove_stale_temps(path)
    remove_stale_temps(tmp_path / "keep")
    assert _names(tmp_path) == sorted(["keep", other.name])  # only the named files' leftovers


@pytest.mark.parametrize("fail_at", ["writing", "replace"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "metrics.json"
    path.write_text("old\n", encoding="utf-8")
    if fail_at == "replace":

        def refuse(src, dst):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(io.os, "replace", refuse)
        with pytest.raises(OSError, match="No space"):
            atomic_write_text(path, "new\n")
    else:
        with pytest.raises(RuntimeError, match="midway"), atomic_path(path) as tmp:
            tmp.write_text("half of the ne", encoding="utf-8")
            raise RuntimeError("killed midway")
    assert path.read_text(encoding="utf-8") == "old\n"
    assert _names(tmp_path) == ["metrics.json"]


def test_a_writer_that_fails_midway_keeps_the_previous_annotation_file(tmp_path):
    rec = Record("v1", 902.0, 1, "the man in red", [0.1, 0.2, 0.5, 0.9], [12, 80])
    write_split(tmp_path, "train", [rec])
    before = (tmp_path / "annotations" / "train.jsonl").read_bytes()

    def records():
        yield rec
        yield rec
        raise RuntimeError("source failed after two records")

    with pytest.raises(RuntimeError):
        write_split(tmp_path, "train", records())
    assert (tmp_path / "annotations" / "train.jsonl").read_bytes() == before
    assert _names(tmp_path / "annotations") == ["train.jsonl"]
    assert read_split(tmp_path, "train") == [rec]


def test_atomic_writes_replace_the_file(tmp_path):
    path = tmp_path / "sub" / "blob.bin"  # the folder is made
    atomic_write_bytes(path, b"\x00\x01")
    atomic_write_bytes(path, b"\x02")
    assert path.read_bytes() == b"\x02"
    with atomic_path(tmp_path / "a.npy") as tmp, open(tmp, "wb") as f:  # a library's own writer
        np.save(f, np.arange(3))
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2]
    assert _names(tmp_path) == ["a.npy", "sub"] and _names(tmp_path / "sub") == ["blob.bin"]


def test_json_formats_are_stable(tmp_path):
    data = {"name": "café", "n": [1, 2.5], "none": None}
    write_json(tmp_path / "a.json", data)
    assert (tmp_path / "a.json").read_bytes() == (
        b'{\n  "name": "caf\\u00e9",\n  "n": [\n    1,\n    2.5\n  ],\n  "none": null\n}\n'
    )
    write_json(tmp_path / "b.json", data, indent=None)
    assert (tmp_path / "b.json").read_bytes() == (
        b'{"name": "caf\\u00e9", "n": [1, 2.5], "none": null}\n'
    )
    assert json_line(data) == '{"name":"caf\\u00e9","n":[1,2.5],"none":null}\n'
    assert json_line(data, ensure_ascii=False) == '{"name":"café","n":[1,2.5],"none":null}\n'
    assert read_json(tmp_path / "a.json") == data


def test_dataset_files_keep_their_bytes(tmp_path):
    rec = Record("v1", 902.0, 1, "the man in the café", [0.1, 0.2, 0.5, 0.9], [12])
    path = write_split(tmp_path, "val", [rec])
    line = path.read_text(encoding="utf-8")
    assert line.endswith("\n") and line.count("\n") == 1
    assert '"text":"the man in the café"' in line and ", " not in line  # compact, UTF-8 kept
    meta = DatasetMeta(name="ds", frame_source=FrameSourceSpec(), image_size=(64, 48))
    meta_path = meta.save(tmp_path)
    text = meta_path.read_text(encoding="utf-8")
    assert text.startswith('{\n  "name": "ds",\n  "frame_source": {\n    "kind": "frames",\n')
    assert text == json.dumps(meta.to_dict(), indent=2) + "\n"  # indent 2, newline at the end
    assert load_meta(tmp_path) == meta


def test_metrics_log_lines_stay_compact(tmp_path):
    log = tmp_path / "metrics.jsonl"
    for epoch in (1, 2, 3):
        append_log(log, {"epoch": epoch, "loss": float("nan") if epoch == 2 else 0.5})
    assert log.read_text().splitlines()[1] == '{"epoch":2,"loss":null}'
    assert truncate_log(log, 2) == [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": None}]
    assert log.read_text() == '{"epoch":1,"loss":0.5}\n{"epoch":2,"loss":null}\n'
    assert read_log(log) == truncate_log(log, 5) and _names(tmp_path) == ["metrics.jsonl"]


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "missing"),
        ("{not json", "not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
        ("folder", "cannot read"),
    ],
)
@pytest.mark.parametrize("error", [DataFormatError, CacheError])
def test_json_read_errors_are_one_line_naming_the_file(tmp_path, content, message, error):
    path = tmp_path / "thing.json"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(error) as err:
        read_json(path, error=error)
    msg = str(err.value)
    assert isinstance(err.value, RavarError) and "\n" not in msg
    assert msg.startswith(f"{path}: {message}"), msg


def test_load_meta_names_the_file(tmp_path):
    (tmp_path / "dataset.json").write_text("[1,", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"dataset\.json: not valid JSON"):
        load_meta(tmp_path)


def test_a_feature_store_build_removes_what_a_killed_build_left(tmp_path):
    folder = tmp_path / "visual-abc"
    left = temp_sibling(folder)
    left.mkdir()
    (left / "chunk-00000.npy").write_bytes(b"")
    writer = StoreWriter(folder, {"kind": "visual"}, "float16")
    writer.save("val/frames.npy", np.zeros((2, 1, 2), dtype=np.int64))
    writer.save_json("texts.json", {"texts": ["a"]})
    assert writer.commit() == folder
    assert _names(tmp_path) == ["visual-abc"]
    assert _names(folder) == ["manifest.json", "texts.json", "val"]
    assert json.loads((folder / "manifest.json").read_text())["identity"] == {"kind": "visual"}
    assert os.path.getsize(folder / "texts.json") > 0
