"""The packaged label space and the canonical annotation format."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from ravar.data.format import (
    DatasetMeta,
    FrameSourceSpec,
    Record,
    list_splits,
    load_meta,
    make_key,
    read_split,
    record_problems,
    write_split,
)
from ravar.errors import DataFormatError
from ravar.labels import (
    NUM_CLASSES,
    action_classes,
    action_id_by_name,
    action_name,
    ids_from_multi_hot,
    multi_hot,
)


def test_packaged_labels_match_the_shared_csv(shared_dir):
    with open(shared_dir / "data" / "ava_actions_v2.2.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(c.id, c.name, c.type) for c in action_classes()] == [
        (int(r["id"]), r["name"], r["type"]) for r in rows
    ]


def test_label_groups_and_lookup():
    classes = action_classes()
    assert len(classes) == NUM_CLASSES == 80
    assert {c.type for c in classes[:14]} == {"PERSON_MOVEMENT"}
    assert {c.type for c in classes[14:63]} == {"OBJECT_MANIPULATION"}
    assert {c.type for c in classes[63:]} == {"PERSON_INTERACTION"}
    assert action_name(14) == "walk" and action_id_by_name("run/jog") == 10
    v = multi_hot([1, 80, 12])
    assert v.shape == (80,) and v.sum() == 3 and v[0] == v[79] == v[11] == 1
    assert ids_from_multi_hot(v) == [1, 12, 80]
    for bad in (0, 81, "3", True):
        with pytest.raises(ValueError, match="AVA"):
            multi_hot([bad])
    with pytest.raises(ValueError, match="shape"):
        ids_from_multi_hot(torch.zeros(79))


def test_ava_frame_rule():
    spec = FrameSourceSpec()  # AVA defaults: 30 fps, offset 900
    assert spec.frame_index(902) == 60 and spec.frame_index(1798) == 26940
    assert spec.frame_index(902.5) == 75
    assert FrameSourceSpec(fps=2, time_offset=0).frame_index(0.75) == 2  # 1.5 rounds up


def test_key_format():
    assert make_key("abc", 902, 3) == "abc___902___3"
    assert make_key("abc", 902.0, "7") == "abc___902___7"
    assert make_key("abc", 1.5, 0) == "abc___1.5___0"


def test_records_round_trip(tmp_path):
    recs = [
        Record("v1", 902, 1, "the man on the left", [0.1, 0.2, 0.3, 0.4], [12, 79]),
        Record("v1", 903.5, "p2", "the tall woman", [0.5, 0.2, 0.9, 0.9], [14]),
    ]
    write_split(tmp_path, "train", recs)
    back = read_split(tmp_path, "train")
    assert back == recs
    assert list_splits(tmp_path) == ["train"]
    line = (tmp_path / "annotations" / "train.jsonl").read_text().splitlines()[0]
    assert json.loads(line)["actions"] == [12, 79]


def test_record_problems_name_every_field():
    bad = {
        "video_id": "a/b",
        "time": -1,
        "person_id": 1.5,
        "text": " ",
        "box": [0, 0, 2, 1],
        "actions": [0, 81],
        "detections": [{"box": [0, 0, 1, 1], "category": "", "score": 3}],
        "extra": 1,
    }
    fields = {f for f, _ in record_problems(bad)}
    assert fields == {
        "video_id",
        "time",
        "person_id",
        "text",
        "box",
        "actions",
        "detections[0].category",
        "detections[0].score",
        "<line>",
    }
    assert {f for f, _ in record_problems({})} == {
        "video_id",
        "time",
        "person_id",
        "text",
        "box",
        "actions",
    }


def test_read_split_reports_file_and_line(tmp_path):
    write_split(tmp_path, "val", [Record("v", 902, 1, "x", [0, 0, 1, 1], [1])])
    path = tmp_path / "annotations" / "val.jsonl"
    path.write_text(path.read_text() + '{"video_id": "v"\n')
    with pytest.raises(DataFormatError, match=r"val.jsonl:2: not valid JSON"):
        read_split(tmp_path, "val")
    with pytest.raises(DataFormatError, match="missing"):
        read_split(tmp_path, "test")


def test_meta_round_trip_and_errors(tmp_path):
    meta = DatasetMeta(name="d", image_size=(320, 240), extra={"seed": 1})
    meta.save(tmp_path)
    assert load_meta(tmp_path) == meta
    d = json.loads((tmp_path / "dataset.json").read_text())
    for key, value, needle in [
        ("format_version", 99, "format_version"),
        ("format", "other", "'format'"),
        ("image_size", [1], "image_size"),
        ("frame_source", {"kind": "webcam"}, "frame_source.kind"),
        ("frame_source", {"pattern": "x.jpg"}, "frame_source.pattern"),
        ("frame_source", {"fps": 0}, "fps"),
        ("frame_source", {"colour": 1}, "unknown keys"),
    ]:
        broken = dict(d, **{key: value})
        (tmp_path / "dataset.json").write_text(json.dumps(broken))
        with pytest.raises(DataFormatError, match=needle):
            load_meta(tmp_path)
    (tmp_path / "dataset.json").write_text("{")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        load_meta(tmp_path)
