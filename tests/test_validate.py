"""Tests of `ravar data validate` / `ravar data stats` (ravar.data.validate, stats_plot, cli)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ravar.cli.data_check import register
from ravar.data.format import DatasetMeta, Detection, FrameSourceSpec, Record, write_split
from ravar.data.stats_plot import plot_action_histogram
from ravar.data.validate import validate_dataset
from ravar.errors import DataFormatError

# fps 2 and a 3 s window: the window of second t is frames round((t - 900.5) * 2)..+6 (7 frames)
FRAMES_SPEC = FrameSourceSpec(
    kind="frames",
    root="frames",
    pattern="{video_id}/image_{index:06d}.jpg",
    fps=2.0,
    time_offset=900.0,
    first_index=0,
)


def _rec(vid, t, pid, text, box, actions, detections=None) -> Record:
    return Record(vid, t, pid, text, box, actions, detections)


GOOD_TRAIN = [
    _rec("v1", 902, 1, "the man in the blue shirt", [0.0, 0.0, 0.5, 0.5], [12, 17]),
    _rec("v1", 902, 2, "woman on the left", [0.5, 0.5, 1.0, 1.0], [12]),
    _rec(
        "v2",
        903,
        1,
        "the child",
        [0.1, 0.2, 0.3, 0.6],
        [80, 12, 17],
        [Detection([0.0, 0.0, 0.2, 0.2], "cup", 0.9), Detection([0.1, 0.1, 0.9, 0.9], "person")],
    ),
]
GOOD_VAL = [_rec("v1", 905, 1, "a tall man with a hat", [0.0, 0.0, 1.0, 1.0], [14])]
GOOD_LINE = json.dumps(GOOD_TRAIN[0].to_dict())


def _write_frames(root: Path, vid: str, indices) -> None:
    folder = root / "frames" / vid
    folder.mkdir(parents=True, exist_ok=True)
    for i in indices:
        Image.new("RGB", (8, 8), (i * 10 % 256, 50, 90)).save(folder / f"image_{i:06d}.jpg")


def _make_good(root: Path) -> Path:
    DatasetMeta(name="tiny", frame_source=FRAMES_SPEC, image_size=(8, 8)).save(root)
    write_split(root, "train", GOOD_TRAIN)
    write_split(root, "val", GOOD_VAL)
    for vid in ("v1", "v2"):
        _write_frames(root, vid, range(17))
    return root


def _write_raw(root: Path, split: str, lines: list[str]) -> None:
    path = root / "annotations" / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _errors_at(report, prefix: str) -> list[str]:
    return [e for e in report.errors if e.startswith(prefix)]


# ----------------------------------------------------------------------------------------------
# a good dataset and its summary


def test_good_dataset_has_no_errors_and_right_summary(tmp_path):
    report = validate_dataset(_make_good(tmp_path), deep=True)
    assert report.errors == [] and report.ok
    s = report.summary
    assert s["dataset"] == "tiny" and s["frame_source"] == "frames"
    tr = s["splits"]["train"]
    # hand-computed from GOOD_TRAIN
    assert tr["instances"] == 3 and tr["lines"] == 3 and tr["invalid"] == 0
    assert tr["keyframes"] == 2 and tr["videos"] == 2
    assert tr["persons_per_keyframe"] == {"mean": 1.5, "max": 2, "histogram": {1: 1, 2: 1}}
    assert tr["actions"] == {12: 3, 17: 2, 80: 1}
    assert tr["classes_present"] == 3
    assert tr["actions_per_instance"] == pytest.approx(6 / 3)
    assert tr["text_words"] == {"mean": pytest.approx(12 / 3), "min": 2, "max": 6}
    assert tr["box_area"] == pytest.approx((0.25 + 0.25 + 0.2 * 0.4) / 3)
    assert tr["records_with_detections"] == 1 and tr["detections_per_record"] == 2.0
    va = s["splits"]["val"]
    assert va["instances"] == 1 and va["keyframes"] == 1 and va["videos"] == 1
    assert va["actions"] == {14: 1} and va["detections_per_record"] is None
    assert va["text_words"] == {"mean": 6.0, "min": 6, "max": 6}
    # v1 is in train and val: counted, and a warning rather than an error
    assert s["shared_videos"] == {"train/val": 1}
    assert any("train and val" in w and "'v1'" in w for w in report.warnings)


def test_format_shows_table_top_actions_and_ok(tmp_path):
    text = validate_dataset(_make_good(tmp_path)).format()
    assert "'tiny'" in text and "OK: no errors" in text
    table_row = next(line for line in text.splitlines() if line.startswith("train "))
    assert table_row.split()[1:6] == ["3", "3", "0", "2", "2"]  # lines, inst, invalid, kf, vids
    assert "stand" in text and "carry/hold (an object)" in text and "watch (a person)" in text
    top = text.split("train: top 3 actions")[1].splitlines()[1:4]
    assert [int(line.split()[0]) for line in top] == [12, 17, 80]  # by count, then id


def test_splits_argument_selects_and_missing_split_is_an_error(tmp_path):
    _make_good(tmp_path)
    report = validate_dataset(tmp_path, splits=["val"])
    assert report.ok and list(report.summary["splits"]) == ["val"]
    report = validate_dataset(tmp_path, splits=["val", "test"], check_frames=False)
    assert not report.ok and any("test.jsonl" in e and "missing" in e for e in report.errors)


# ----------------------------------------------------------------------------------------------
# bad records


def _with(**changes) -> str:
    d = GOOD_TRAIN[1].to_dict()
    d.update(changes)
    return json.dumps(d)


@pytest.mark.parametrize(
    ("bad_line", "field", "detail"),
    [
        (_with(box=[0.0, 0.0, 1.2, 0.5]), "box", "[0, 1]"),
        (_with(box=[0.6, 0.0, 0.5, 0.5]), "box", "x1"),
        (_with(actions=[12, 81]), "actions", "81"),
        (_with(text=""), "text", "non-empty"),
        (_with(video_id="../../etc"), "video_id", "../../etc"),
        ('{"video_id": "v1", "time": 902,', "<line>", "not valid JSON"),
        (GOOD_LINE, "key", "duplicate key 'v1___902___1' (lines 1 and 2)"),
    ],
)
def test_each_bad_record_is_an_error_naming_file_line_and_field(tmp_path, bad_line, field, detail):
    DatasetMeta(name="bad", frame_source=FRAMES_SPEC).save(tmp_path)
    _write_raw(tmp_path, "train", [GOOD_LINE, bad_line, _with(person_id=7)])
    report = validate_dataset(tmp_path, check_frames=False)
    assert not report.ok
    assert len(report.errors) == 1, report.errors
    assert report.errors[0].startswith(f"train.jsonl:2: {field}: ")
    assert detail in report.errors[0]
    # the good lines before and after the bad one are still read
    assert report.summary["splits"]["train"]["instances"] == 2
    assert report.summary["splits"]["train"]["invalid"] == 1


def test_all_problems_are_collected_not_just_the_first(tmp_path):
    DatasetMeta(name="bad", frame_source=FRAMES_SPEC).save(tmp_path)
    _write_raw(
        tmp_path,
        "train",
        [
            "not json at all",
            "",  # blank lines are skipped, but still counted in line numbers
            _with(text="  ", actions=[0]),  # two problems on one line
            "[1, 2]",
            GOOD_LINE,
        ],
    )
    _write_raw(tmp_path, "val", ["{"])
    report = validate_dataset(tmp_path, check_frames=False)
    assert _errors_at(report, "train.jsonl:1: <line>: not valid JSON")
    assert _errors_at(report, "train.jsonl:3: text: ")
    assert _errors_at(report, "train.jsonl:3: actions: ")
    assert _errors_at(report, "train.jsonl:4: <line>: expected a JSON object")
    assert _errors_at(report, "val.jsonl:1: <line>: not valid JSON")
    assert report.num_errors == 5
    assert report.summary["splits"]["train"]["instances"] == 1
    assert report.summary["splits"]["train"]["lines"] == 4


def test_max_errors_keeps_some_counts_all_and_format_says_how_many_more(tmp_path):
    DatasetMeta(name="bad", frame_source=FRAMES_SPEC).save(tmp_path)
    _write_raw(tmp_path, "train", ["x"] * 7)
    report = validate_dataset(tmp_path, check_frames=False, max_errors=3)
    assert len(report.errors) == 3 and report.num_errors == 7 and not report.ok
    text = report.format(max_errors=2)
    assert "train.jsonl:2: <line>" in text and "train.jsonl:3: <line>" not in text
    assert "... and 5 more" in text


def test_bad_dataset_json_is_reported_not_raised(tmp_path):
    (tmp_path / "dataset.json").write_text('{"format": "something-else"}', encoding="utf-8")
    report = validate_dataset(tmp_path)
    assert not report.ok and report.meta is None
    assert len(report.errors) == 1 and "dataset.json" in report.errors[0]
    assert "'format'" in report.errors[0]
    assert report.summary["splits"] == {}


def test_no_annotation_files_is_an_error(tmp_path):
    DatasetMeta(name="empty", frame_source=FRAMES_SPEC).save(tmp_path)
    report = validate_dataset(tmp_path)
    assert not report.ok and "no annotation files" in report.errors[0]


# ----------------------------------------------------------------------------------------------
# frames


def test_missing_frame_is_an_error_naming_the_path(tmp_path):
    _make_good(tmp_path)
    gone = tmp_path / "frames" / "v1" / "image_000005.jpg"  # inside 902's window (1..7) only
    gone.unlink()
    report = validate_dataset(tmp_path)
    assert len(report.errors) == 1, report.errors
    err = report.errors[0]
    assert err.startswith("train.jsonl:1: frames: ") and "'v1'" in err
    assert str(gone) in err and "1 of the 7 frames" in err
    assert "keyframe of 2 records" in err


def test_missing_video_folder_gives_one_error_per_keyframe(tmp_path):
    _make_good(tmp_path)
    for f in (tmp_path / "frames" / "v2").iterdir():
        f.unlink()
    (tmp_path / "frames" / "v2").rmdir()
    report = validate_dataset(tmp_path)
    assert len(report.errors) == 1
    assert report.errors[0].startswith("train.jsonl:3: frames: ")
    assert "7 of the 7 frames" in report.errors[0]
    assert str(tmp_path / "frames" / "v2" / "image_000003.jpg") in report.errors[0]
    assert validate_dataset(tmp_path, check_frames=False).ok


def test_window_end_beyond_the_frames_is_missing(tmp_path):
    _make_good(tmp_path)
    assert validate_dataset(tmp_path, window_seconds=3.0).ok
    # an 8 s window around second 905 ends at frame (909 - 900) * 2 = 18; frames 17, 18 are not
    # written (around 902 and 903 it starts before frame 0 and is cut at the first frame)
    report = validate_dataset(tmp_path, window_seconds=8.0)
    assert len(report.errors) == 1 and report.errors[0].startswith("val.jsonl:1: frames: ")
    assert "2 of the 17 frames" in report.errors[0]
    assert "image_000017.jpg" in report.errors[0] and "image_000018.jpg" in report.errors[0]


def test_keyframe_before_the_first_frame_is_an_error(tmp_path):
    _make_good(tmp_path)
    write_split(tmp_path, "test", [_rec("v1", 899, 1, "a man", [0.1, 0.1, 0.5, 0.9], [12])])
    report = validate_dataset(tmp_path, splits=["test"])
    assert len(report.errors) == 1
    assert report.errors[0].startswith("test.jsonl:1: time: 899 s is before the first frame")


def test_missing_frame_root_is_one_error(tmp_path):
    DatasetMeta(name="tiny", frame_source=FRAMES_SPEC).save(tmp_path)
    write_split(tmp_path, "train", GOOD_TRAIN)
    report = validate_dataset(tmp_path)
    assert len(report.errors) == 1 and "frame root missing" in report.errors[0]
    assert str(tmp_path / "frames") in report.errors[0]


def test_corrupt_jpeg_is_caught_only_with_deep(tmp_path):
    _make_good(tmp_path)
    bad = tmp_path / "frames" / "v2" / "image_000006.jpg"  # keyframe of second 903 (window 3..9)
    bad.write_bytes(b"this is not a jpeg")
    assert validate_dataset(tmp_path).ok
    report = validate_dataset(tmp_path, deep=True)
    assert len(report.errors) == 1, report.errors
    assert report.errors[0].startswith("train.jsonl:3: frames: ")
    assert str(bad) in report.errors[0]


def test_deep_warns_when_frame_size_differs_from_dataset_json(tmp_path):
    _make_good(tmp_path)
    DatasetMeta(name="tiny", frame_source=FRAMES_SPEC, image_size=(16, 8)).save(tmp_path)
    report = validate_dataset(tmp_path, deep=True)
    assert report.ok
    assert sum("are 8x8" in w and "16x8" in w for w in report.warnings) == 2  # v1 and v2 once


def _write_mp4(path: Path, num_frames: int, fps: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for i in range(num_frames):
            img = np.full((16, 16, 3), i * 10, dtype=np.uint8)  # [H, W, 3]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _make_video_dataset(root: Path, meta_fps: float) -> Path:
    spec = FrameSourceSpec(kind="video", root="videos", pattern="{video_id}.mp4", fps=meta_fps,
                           time_offset=0.0, first_index=0)  # fmt: skip
    DatasetMeta(name="vids", frame_source=spec).save(root)
    _write_mp4(root / "videos" / "clipA.mp4", num_frames=20, fps=2)  # frames 0..19, 10 s
    return root


def test_video_source_window_past_the_end_and_fps_match(tmp_path):
    _make_video_dataset(tmp_path, meta_fps=2.0)
    write_split(
        tmp_path,
        "train",
        [
            _rec("clipA", 5, 1, "the man", [0.1, 0.1, 0.5, 0.9], [12]),  # frames 7..13
            _rec("clipA", 9.5, 1, "the man", [0.1, 0.1, 0.5, 0.9], [12]),  # frames 16..22
            _rec("clipB", 2, 1, "the man", [0.1, 0.1, 0.5, 0.9], [12]),  # no file
        ],
    )
    report = validate_dataset(tmp_path, deep=True)
    assert report.warnings == []  # the file's fps (2) matches dataset.json
    assert len(report.errors) == 2, report.errors
    past_end, no_file = report.errors
    assert past_end.startswith("train.jsonl:2: frames: ") and "3 of the 7 frames" in past_end
    assert "clipA.mp4#frame20" in past_end
    assert no_file.startswith("train.jsonl:3: frames: ")
    assert str(tmp_path / "videos" / "clipB.mp4") in no_file


def test_video_fps_differing_from_dataset_json_warns(tmp_path):
    _make_video_dataset(tmp_path, meta_fps=2.5)
    write_split(tmp_path, "train", [_rec("clipA", 4, 1, "a man", [0.1, 0.1, 0.5, 0.9], [12])])
    report = validate_dataset(tmp_path)
    assert report.ok
    assert len(report.warnings) == 1
    assert "clipA.mp4" in report.warnings[0] and "2.5" in report.warnings[0]


def test_corrupt_video_file_is_an_error_naming_it(tmp_path):
    _make_video_dataset(tmp_path, meta_fps=2.0)
    bad = tmp_path / "videos" / "clipA.mp4"
    bad.write_bytes(b"\x00" * 64)
    write_split(tmp_path, "train", [_rec("clipA", 4, 1, "a man", [0.1, 0.1, 0.5, 0.9], [12])])
    report = validate_dataset(tmp_path)
    assert len(report.errors) == 1 and str(bad) in report.errors[0]


# ----------------------------------------------------------------------------------------------
# plot and CLI


def test_plot_writes_a_real_png(tmp_path):
    report = validate_dataset(_make_good(tmp_path / "ds"), check_frames=False)
    path = plot_action_histogram(report, tmp_path / "h.png", log_scale=True)
    assert path.stat().st_size > 5000
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width >= 800 and img.height >= 300
        pixels = np.asarray(img.convert("RGB")).astype(np.int64)  # [H, W, 3]
    packed = np.unique((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2])
    colours = {(int(c) >> 16, (int(c) >> 8) & 255, int(c) & 255) for c in packed}
    assert len(colours) > 10  # not a blank canvas
    # the bars of all three action groups are drawn in their colours (tab:blue/orange/green)
    assert {(31, 119, 180), (255, 127, 14), (44, 160, 44)} <= colours


def test_plot_without_splits_raises(tmp_path):
    report = validate_dataset(tmp_path / "nothing")
    with pytest.raises(DataFormatError, match="nothing to plot"):
        plot_action_histogram(report, tmp_path / "h.png")


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_validate_exit_codes_json_and_plot(tmp_path, capsys):
    good = _make_good(tmp_path / "good")
    png, js = tmp_path / "out.png", tmp_path / "out.json"
    assert _cli(["validate", str(good), "--plot", str(png), "--json", str(js)]) == 0
    assert "OK: no errors" in capsys.readouterr().out
    with Image.open(png) as img:
        assert img.format == "PNG"
    data = json.loads(js.read_text(encoding="utf-8"))
    assert data["ok"] is True and data["errors"] == []
    assert data["summary"]["splits"]["train"]["instances"] == 3

    (good / "frames" / "v1" / "image_000002.jpg").unlink()
    assert _cli(["validate", str(good), "--json", str(js)]) == 1
    assert "image_000002.jpg" in capsys.readouterr().out
    assert json.loads(js.read_text(encoding="utf-8"))["num_errors"] == 1
    assert _cli(["validate", str(good), "--no-frames"]) == 0

    _write_raw(good, "val", [_with(box=[0.5, 0.0, 0.5, 1.0])])
    assert _cli(["validate", str(good), "--no-frames", "--splits", "val"]) == 1
    assert "val.jsonl:1: box: " in capsys.readouterr().out
    with pytest.raises(DataFormatError, match="nowhere"):
        _cli(["validate", str(tmp_path / "nowhere")])


def test_cli_window_and_deep_options(tmp_path, capsys):
    good = _make_good(tmp_path)
    assert _cli(["validate", str(good), "--window", "8"]) == 1  # frames 17, 18 missing
    (good / "frames" / "v1" / "image_000001.jpg").write_bytes(b"garbage")
    assert _cli(["validate", str(good)]) == 0
    assert _cli(["validate", str(good), "--deep"]) == 1
    assert "image_000001.jpg" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        _cli(["validate", str(good), "--window", "-1"])


def test_cli_stats(tmp_path, capsys):
    good = _make_good(tmp_path / "ds")
    (good / "frames" / "v1" / "image_000002.jpg").unlink()  # stats does not look at frames
    js = tmp_path / "s.json"
    assert _cli(["stats", str(good), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "OK: no errors" in out and "stand" in out
    assert json.loads(js.read_text(encoding="utf-8"))["summary"]["splits"]["val"]["instances"] == 1
    _write_raw(good, "val", ["{oops"])
    assert _cli(["stats", str(good)]) == 0  # record problems are described, not fatal
    assert "val.jsonl:1: <line>" in capsys.readouterr().out
    with pytest.raises(DataFormatError, match="nowhere"):
        _cli(["stats", str(tmp_path / "nowhere")])
