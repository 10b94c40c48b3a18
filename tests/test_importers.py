"""RefAVA pickle and AVA CSV importers: join by key, reporting, path safety, the CLI."""

from __future__ import annotations

import argparse
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from ravar.cli.data_import import register
from ravar.data.format import load_meta, read_split, record_problems
from ravar.data.importers import ImportProblemsError, parse_key
from ravar.data.importers.ava_csv import import_ava_csv
from ravar.data.importers.refava import import_refava
from ravar.errors import DataFormatError, UnsafePickleError

PLUS = "{split}_{role}.pkl"
REFAVA = "{split}_set_{role}_crr_final.pkl"

# key -> (box, actions, text); boxes are exact in float32 so numpy round trips compare exactly.
PERSONS = {
    "vidB___905___2": ([0.5, 0.25, 0.75, 1.0], [80], "the child in the red coat"),
    "vidA___910___1": ([0.0, 0.0, 0.5, 0.5], [12, 17], "the man on the left"),
    "vidA___902___10": ([0.125, 0.25, 0.375, 0.5], [1, 79], "the woman with a hat"),
    "vidA___902___2": ([0.25, 0.5, 0.75, 0.875], [14], "the person at the back"),
}
SORTED_KEYS = ["vidA___902___2", "vidA___902___10", "vidA___910___1", "vidB___905___2"]


def _dump(path: Path, data: dict) -> None:
    path.write_bytes(pickle.dumps(data, protocol=4))


def write_refava(
    src: Path,
    split: str,
    persons: dict,
    *,
    style: str = PLUS,
    drop: dict[str, list[str]] | None = None,
) -> None:
    """The three pickles of a split, each dict in a DIFFERENT key order (keyframe: as given,
    label: reversed, description: rotated by one), optionally without some keys per role."""
    drop = drop or {}
    keys = list(persons)
    orders = {
        "keyframe": keys,
        "label": keys[::-1],
        "description": keys[1:] + keys[:1],
    }
    values = {
        "keyframe": lambda i, k: (
            [np.array(persons[k][0] + [0.9], dtype=np.float32)]
            if i % 2
            else [list(persons[k][0]) + [0.9]]
        ),
        "label": lambda i, k: np.array(persons[k][1]) if i % 2 else list(persons[k][1]),
        "description": lambda i, k: [persons[k][2], "another caption"],
    }
    src.mkdir(parents=True, exist_ok=True)
    for role, order in orders.items():
        data = {k: values[role](i, k) for i, k in enumerate(order) if k not in drop.get(role, [])}
        _dump(src / style.format(split=split, role=role), data)


def _records_by_key(out: Path, split: str) -> dict:
    return {r.key: r for r in read_split(out, split)}


def _assert_canonical(out: Path, split: str) -> None:
    lines = (out / "annotations" / f"{split}.jsonl").read_text().splitlines()
    assert lines
    for line in lines:
        assert record_problems(json.loads(line)) == []


def test_refava_joins_the_three_dicts_by_key_not_by_order(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_refava(src, "train", PERSONS)
    label = pickle.loads((src / "train_label.pkl").read_bytes())
    keyframe = pickle.loads((src / "train_keyframe.pkl").read_bytes())
    assert list(label) != list(keyframe)  # a join by order would mix persons up

    report = import_refava(src, out, frame_root="/data/ava/frames", splits=["train"])

    assert report.clean and report.splits["train"].written == 4
    got = _records_by_key(out, "train")
    assert set(got) == set(PERSONS)
    for key, (box, actions, text) in PERSONS.items():
        assert got[key].box == box
        assert got[key].actions == sorted(actions)
        assert got[key].text == text
    _assert_canonical(out, "train")


def test_refava_output_is_sorted_by_video_time_person(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_refava(src, "val", PERSONS)
    import_refava(src, out, frame_root="frames", splits=("val",))
    assert [r.key for r in read_split(out, "val")] == SORTED_KEYS
    assert read_split(out, "val")[0].person_id == 2  # integer ids, compared as numbers


def test_refava_writes_the_ava_frame_source(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_refava(src, "train", PERSONS)
    report = import_refava(src, out, frame_root="../frames", splits=["train"], name="mine")
    meta = load_meta(out)
    fs = meta.frame_source
    assert meta.name == "mine"
    assert (fs.kind, fs.root) == ("frames", "../frames")
    assert fs.pattern == "{video_id}/image_{index:06d}.jpg"
    assert (fs.fps, fs.time_offset, fs.first_index) == (30.0, 900.0, 0)
    assert fs.frame_index(902) == 60
    assert fs.keyframe_window == 1.5  # the release's frames: +-1.5 s around each keyframe
    assert '"keyframe_window": 1.5' in (out / "dataset.json").read_text()
    assert any("does not exist" in n for n in report.notes)  # ../frames is not there


def test_refava_reports_and_skips_missing_keys(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    drop = {"label": ["vidA___910___1"], "description": ["vidB___905___2", "vidA___902___2"]}
    write_refava(src, "test", PERSONS, drop=drop)

    report = import_refava(src, out, frame_root="frames", splits=["test"])

    rep = report.splits["test"]
    assert rep.written == 1
    assert rep.missing == {"label": ["vidA___910___1"], "description": sorted(drop["description"])}
    assert [r.key for r in read_split(out, "test")] == ["vidA___902___10"]
    text = report.format()
    assert "missing from test_label.pkl: 1 keys" in text
    assert "missing from test_description.pkl: 2 keys" in text
    assert "vidA___910___1" in text


def test_refava_strict_raises_on_missing_keys_and_writes_nothing(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_refava(src, "train", PERSONS, drop={"keyframe": ["vidA___902___2"]})
    with pytest.raises(ImportProblemsError) as err:
        import_refava(src, out, frame_root="frames", splits=["train"], strict=True)
    msg = str(err.value)
    assert "'train'" in msg and "vidA___902___2" in msg and "train_keyframe.pkl" in msg
    assert err.value.report.splits["train"].missing_count("keyframe") == 1
    assert not out.exists()


def test_refava_file_name_style_of_refava(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_refava(src, "train", PERSONS, style=PLUS)
    write_refava(src, "val", dict(list(PERSONS.items())[:2]), style=REFAVA)
    report = import_refava(src, out, frame_root="frames", splits=["train", "val"])
    assert report.splits["val"].written == 2
    assert report.splits["val"].sources["label"].endswith("val_set_label_crr_final.pkl")
    assert load_meta(out).extra["file_style"] == {"train": "RefAVA++", "val": "RefAVA"}
    assert set(_records_by_key(out, "val")) == set(list(PERSONS)[:2])


def test_refava_both_styles_for_one_split_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_refava(src, "train", PERSONS, style=PLUS)
    write_refava(src, "train", PERSONS, style=REFAVA)
    with pytest.raises(DataFormatError, match="both the RefAVA.. and RefAVA naming"):
        import_refava(src, tmp_path / "out", frame_root="f", splits=["train"])


def test_refava_absent_split_names_the_expected_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_refava(src, "train", PERSONS)
    with pytest.raises(DataFormatError, match=r"split 'val'.*val_keyframe\.pkl.*--splits"):
        import_refava(src, tmp_path / "out", frame_root="f")  # default asks for all three
    (src / "train_label.pkl").unlink()
    with pytest.raises(DataFormatError, match=r"lacks train_label\.pkl"):
        import_refava(src, tmp_path / "out", frame_root="f", splits=["train"])


@pytest.mark.parametrize("bad_video", ["../../etc", "a/b", ".."])
def test_refava_rejects_path_traversal_in_video_ids(tmp_path: Path, bad_video: str) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    persons = dict(PERSONS)
    persons[f"{bad_video}___902___1"] = ([0.1, 0.1, 0.2, 0.2], [3], "the intruder")
    write_refava(src, "train", persons)

    report = import_refava(src, out, frame_root="frames", splits=["train"])

    assert set(_records_by_key(out, "train")) == set(PERSONS)
    (dropped,) = report.splits["train"].dropped
    assert dropped.reason == "unsafe video id" and bad_video in dropped.where
    assert "train_keyframe.pkl" in dropped.where and "train_label.pkl" in dropped.where
    with pytest.raises(ImportProblemsError, match="unsafe video id"):
        import_refava(src, tmp_path / "out2", frame_root="f", splits=["train"], strict=True)


def test_refava_bad_entries_are_reported_naming_file_and_key(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    persons = dict(PERSONS)
    persons["vidC___902___1"] = ([0.5, 0.5, 1.5, 0.9], [3], "box beyond the image")
    persons["vidC___903___1"] = ([0.1, 0.1, 0.2, 0.2], [81], "unknown action")
    persons["vidC___904___1"] = ([0.1, 0.1, 0.2, 0.2], [3], "   ")
    persons["no-separators"] = ([0.1, 0.1, 0.2, 0.2], [3], "unparsable key")
    write_refava(src, "train", persons)

    report = import_refava(src, out, frame_root="frames", splits=["train"])

    rep = report.splits["train"]
    assert rep.written == len(PERSONS)
    assert rep.dropped_by_reason() == {
        "bad box": 1,
        "empty description": 1,
        "key does not parse": 1,
        "unknown action id": 1,
    }
    where = {d.reason: d.where for d in rep.dropped}
    assert where["bad box"] == "train_keyframe.pkl: key 'vidC___902___1'"
    assert where["unknown action id"] == "train_label.pkl: key 'vidC___903___1'"
    assert where["empty description"] == "train_description.pkl: key 'vidC___904___1'"
    assert "'no-separators'" in where["key does not parse"]
    with pytest.raises(ImportProblemsError, match=r"split 'train': .*key"):
        import_refava(src, tmp_path / "out2", frame_root="f", splits=["train"], strict=True)


def test_refava_refuses_an_unsafe_pickle(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_refava(src, "train", PERSONS)
    marker = tmp_path / "pwned"
    (src / "train_label.pkl").write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(UnsafePickleError, match=r"train_label\.pkl: refuses to load 'os\.system'"):
        import_refava(src, tmp_path / "out", frame_root="f", splits=["train"])
    assert not marker.exists()


def test_refava_needs_a_new_or_empty_output_folder(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_refava(src, "train", PERSONS)
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(DataFormatError, match="out: output folder exists and is not empty"):
        import_refava(src, out, frame_root="f", splits=["train"])


def test_parse_key_normalises_and_refuses_unsafe_ids() -> None:
    assert parse_key("a___b___0902___7") == ("a___b", 902, 7)
    assert parse_key("_x__y____903.5___p3") == ("_x__y_", 903.5, "p3")
    for bad in ("../x___902___1", "a/b___902___1", "v___abc___1", "v___902", 5):
        with pytest.raises(ValueError):
            parse_key(bad)


# ---------------------------------------------------------------- AVA CSV


def _ava_rows(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_ava_csv_merges_rows_into_multi_label_records(tmp_path: Path) -> None:
    train = _ava_rows(
        tmp_path / "train.csv",
        [
            "video_id,second,x1,y1,x2,y2,action_id,person_id",
            "vid1,0902,0.100,0.200,0.300,0.900,80,1",
            "vid1,0902,0.100,0.200,0.300,0.900,12,1",
            "",
            "vid1,0902,0.500,0.100,0.700,0.800,14,2",
            "vid1,0902,0.1004,0.2,0.3,0.9,17,1",  # within 1e-3 of the first box
            "vid1,0902,0.100,0.200,0.300,0.900,12,1",  # repeated action
        ],
    )
    desc = tmp_path / "desc.csv"
    desc.write_text(
        'video_id,second,person_id,text\nvid1,902,1,"the man, on the left"\n'
        "vid1,0902,2,the woman on the right\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    report = import_ava_csv({"train": train}, desc, out, frame_root="frames")

    assert report.clean
    recs = _records_by_key(out, "train")
    assert recs["vid1___902___1"].actions == [12, 17, 80]
    assert recs["vid1___902___1"].box == [0.1, 0.2, 0.3, 0.9]
    assert recs["vid1___902___1"].text == "the man, on the left"
    assert recs["vid1___902___2"].actions == [14]
    _assert_canonical(out, "train")
    assert load_meta(out).frame_source.pattern == "{video_id}/image_{index:06d}.jpg"


def test_ava_csv_box_disagreement_names_the_line(tmp_path: Path) -> None:
    train = _ava_rows(
        tmp_path / "train.csv",
        [
            "vid1,0902,0.100,0.200,0.300,0.900,80,1",
            "vid1,0903,0.100,0.200,0.300,0.900,80,1",
            "vid1,0902,0.110,0.200,0.300,0.900,12,1",
        ],
    )
    desc = tmp_path / "d.json"
    desc.write_text(json.dumps({"vid1___902___1": "a", "vid1___903___1": "the man"}))
    out = tmp_path / "out"
    report = import_ava_csv({"train": train}, desc, out, frame_root="frames")
    (dropped,) = report.splits["train"].dropped
    assert dropped.where == "train.csv:3" and dropped.reason == "boxes of one person disagree"
    assert list(_records_by_key(out, "train")) == ["vid1___903___1"]
    with pytest.raises(ImportProblemsError, match=r"train\.csv:3: boxes of one person disagree"):
        import_ava_csv({"train": train}, desc, tmp_path / "o2", frame_root="f", strict=True)


def test_ava_csv_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    train = _ava_rows(
        tmp_path / "t.csv",
        [
            "vid1,0902,0.1,0.2,0.3,0.9,80,1",
            "vid1,0902,0.1,0.2,0.3,0.9,0,2",
            "../../etc,0902,0.1,0.2,0.3,0.9,3,3",
            "vid1,0902,0.3,0.2,0.1,0.9,3,4",
            "vid1,0902,0.1,0.2,0.3,0.9,3",
        ],
    )
    desc = tmp_path / "d.json"
    desc.write_text(json.dumps({"vid1___902___1": "the man"}))
    report = import_ava_csv({"train": train}, desc, tmp_path / "out", frame_root="frames")
    got = {d.where: d.reason for d in report.splits["train"].dropped}
    assert got == {
        "t.csv:2": "unknown action id",
        "t.csv:3": "unsafe video id",
        "t.csv:4": "bad box",
        "t.csv:5": "wrong number of columns",
    }
    assert all(r.video_id == "vid1" for r in read_split(tmp_path / "out", "train"))


def test_ava_csv_reports_persons_without_text_and_text_without_rows(tmp_path: Path) -> None:
    train = _ava_rows(tmp_path / "train.csv", ["v1,0902,0.1,0.2,0.3,0.9,80,1"])
    val = _ava_rows(
        tmp_path / "val.csv", ["v2,0910,0.1,0.2,0.3,0.9,5,1", "v2,0910,0.1,0.2,0.3,0.9,5,2"]
    )
    desc = tmp_path / "d.json"
    desc.write_text(
        json.dumps({"v1___0902___1": "the man", "v2___910___1": "a woman", "v9___902___1": "x"})
    )
    out = tmp_path / "out"
    report = import_ava_csv({"train": train, "val": val}, desc, out, frame_root="frames")
    assert report.splits["val"].missing == {"description": ["v2___910___2"]}
    assert report.unused == {str(desc): ["v9___902___1"]}
    assert [r.key for r in read_split(out, "val")] == ["v2___910___1"]
    assert [r.text for r in read_split(out, "train")] == ["the man"]  # "0902" met "902"

    per_split = import_ava_csv(
        {"train": train}, {"train": desc}, tmp_path / "out2", frame_root="frames"
    )
    assert per_split.splits["train"].missing == {"rows": ["v2___910___1", "v9___902___1"]}


# ---------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ravar data")
    register(parser.add_subparsers(dest="data_command", required=True))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def test_cli_import_refava_strict_fails_on_missing_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    write_refava(src, "train", PERSONS, drop={"label": ["vidA___910___1"]})
    base = ["import-refava", str(src), "--frames", "frames", "--splits", "train"]

    assert _run([*base[:2], str(tmp_path / "o1"), *base[2:], "--strict"]) == 1
    captured = capsys.readouterr()
    assert "vidA___910___1" in captured.err and "train_label.pkl" in captured.err
    assert not (tmp_path / "o1").exists()

    assert _run([*base[:2], str(tmp_path / "o2"), *base[2:], "--name", "x"]) == 0
    assert "missing from train_label.pkl: 1 keys" in capsys.readouterr().out
    assert len(read_split(tmp_path / "o2", "train")) == 3
    assert load_meta(tmp_path / "o2").name == "x"


def test_cli_import_ava(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = _ava_rows(tmp_path / "train.csv", ["v1,0902,0.1,0.2,0.3,0.9,80,1"])
    val = _ava_rows(tmp_path / "val.csv", ["v2,0903,0.1,0.2,0.3,0.9,8,4"])
    desc = tmp_path / "d.csv"
    desc.write_text("video_id,second,person_id,text\nv1,902,1,a man\nv2,903,4,a girl\n")
    out = tmp_path / "out"
    argv = ["import-ava", "--split", f"train={train}", "--split", f"val={val}"]
    argv += ["--descriptions", str(desc), str(out), "--frames", os.fspath(tmp_path)]
    assert _run(argv) == 0
    assert "2 records" in capsys.readouterr().out
    assert [r.text for r in read_split(out, "val")] == ["a girl"]
    with pytest.raises(SystemExit):
        _parser().parse_args(["import-ava", "--split", "nofile", str(out), "--frames", "f"])
