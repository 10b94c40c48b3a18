"""`ravar data detect`: each detector against an independent computation, resumability,
skip-when-done, the coverage summary, refusals, and the importers' --detect."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ravar.cli import main
from ravar.data.format import load_meta, read_split
from ravar.detect.annotations import AnnotationDetector
from ravar.detect.progress import progress_path
from ravar.detect.run import detect_dataset
from ravar.errors import RavarError

from builders import (
    PEOPLE_KEYFRAMES,
    PEOPLE_RECORDS,
    make_people_dataset,
    person_box,
    save_tiny_detr,
)

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_people_dataset(tmp_path_factory.mktemp("people") / "ds")


@pytest.fixture
def ds(pristine, tmp_path) -> Path:
    """A fresh copy of the stand-in (no detections) for one test to change."""
    return Path(shutil.copytree(pristine, tmp_path / "ds"))


def _boxes(dets) -> list[list[float]]:
    return [list(d.box) for d in dets]


def _frame(ds: Path, video_id: str, time: int) -> np.ndarray:
    index = (time - 900) * 30
    return np.asarray(
        Image.open(ds / "frames" / video_id / f"image_{index:06d}.png").convert("RGB")
    )


class CountingAnnotations(AnnotationDetector):
    """The annotations detector, counting keyframes per call, failing after `fail_after`."""

    def __init__(self, dataset_dir: Path, fail_after: int | None = None) -> None:
        super().__init__(dataset_dir)
        self.seen: list[tuple[str, float]] = []
        self.fail_after = fail_after

    def detect(self, keyframes):
        if self.fail_after is not None and len(self.seen) + len(keyframes) > self.fail_after:
            raise KeyboardInterrupt  # stands for a kill in the middle of a run
        self.seen += [k.id for k in keyframes]
        return super().detect(keyframes)


def test_annotations_are_every_annotated_person_of_the_keyframe_in_any_split(ds):
    detect_dataset(ds, "annotations", say=lambda s: None)
    annotated: dict[tuple[str, int], set[int]] = {}
    for _, vid, t, pid, _ in PEOPLE_RECORDS:
        annotated.setdefault((vid, t), set()).add(pid)
    for split in SPLITS:
        records = read_split(ds, split)
        assert len(records) == sum(r[0] == split for r in PEOPLE_RECORDS)
        for rec in records:
            want = [
                person_box(rec.video_id, rec.time, p)
                for p in sorted(annotated[rec.video_id, rec.time])
            ]
            assert _boxes(rec.detections) == want  # vidA 902 person 1: once
            assert all(d.category == "person" and d.score == 1.0 for d in rec.detections)
            assert all(d.time is None for d in rec.detections)
    test = {r.person_id: r for r in read_split(ds, "test")}
    assert len(test[3].detections) == 3  # persons of vidB 903 from train and val too
    vidb902 = [r for r in read_split(ds, "val") if (r.video_id, r.time) == ("vidB", 902)]
    assert all(len(r.detections) == 2 for r in vidb902)  # person 3 is not annotated there
    extra = load_meta(ds).extra["detections"]
    assert set(extra) == set(SPLITS) and extra["val"]["detector"] == "annotations"
    assert extra["train"]["keyframes"] == 3
    assert not (ds / ".detect").exists()  # progress files are gone once done


def test_summary_counts_and_acc_ceiling_match_a_hand_count(ds, tmp_path, capsys):
    # vidA 902: person 1 exact, person 2 shifted to IoU 1/3 (no match), a cup on person 3;
    # vidA 903: person 3 exact; vidB: nothing
    p2 = person_box("vidA", 902, 2)
    width = p2[2] - p2[0]
    shifted = [p2[0] + width / 2, p2[1], p2[2] + width / 2, p2[3]]  # IoU (w/2) / (3w/2) = 1/3
    entries = [
        {"video_id": "vidA", "time": 902, "box": person_box("vidA", 902, 1), "score": 0.9},
        {"video_id": "vidA", "time": 902, "box": shifted, "score": 0.8},
        {"video_id": "vidA", "time": 902, "box": person_box("vidA", 902, 3), "category": "cup"},
        {"video_id": "vidA", "time": 903.01, "box": person_box("vidA", 903, 3), "score": 0.7},
    ]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"detections": entries}))
    assert main(["data", "detect", str(ds), "--detector", f"boxes:{boxes}"]) == 0
    out = capsys.readouterr().out.splitlines()
    # train: 6 records on 3 keyframes (vidA 902, vidA 903, vidB 903); 3 + 1 + 0 detections,
    # 2 + 1 + 0 persons; matched: vidA 902 person 1, vidA 903 person 3
    assert out[0].startswith("train: 3 keyframes (detected), 1.33 detections and 1.00 persons")
    assert out[0].endswith("2/6 = 33.3% (the Acc@0.5 ceiling)")
    # val: vidA 902 person 1 (matched: its other sentence) and person 3 (a cup only), vidB 902
    # x2, vidB 903: one matched of five
    assert out[1].startswith("val: 3 keyframes (detected), 1.00 detections and 0.67 persons")
    assert out[1].endswith("1/5 = 20.0% (the Acc@0.5 ceiling)")
    assert out[2].startswith("test: 1 keyframes (detected), 0.00 detections")
    rec = next(
        r for r in read_split(ds, "train") if (r.video_id, r.time, r.person_id) == ("vidA", 902, 2)
    )
    assert [d.score for d in rec.detections] == [1.0, 0.9, 0.8]  # highest score first
    assert rec.detections[0].category == "cup"


def test_boxes_file_needs_video_ids_and_normalises_pixels(ds, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"time": 902, "box": [0.1, 0.1, 0.2, 0.2]}]))
    assert main(["data", "detect", str(ds), "--detector", f"boxes:{bad}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "detections[0]: key 'video_id' is missing" in err[0]
    pixels = tmp_path / "pixels.json"
    pixels.write_text(json.dumps({"units": "pixels", "detections": [
        {"video_id": "vidB", "time": 903, "box": [12, 8, 24, 32], "score": 0.5}]}))  # fmt: skip
    detect_dataset(ds, f"boxes:{pixels}", splits=["test"], say=lambda s: None)
    for rec in read_split(ds, "test"):  # frames are 48 x 32
        assert _boxes(rec.detections) == [[0.25, 0.25, 0.5, 1.0]]
    from ravar.errors import PredictError
    from ravar.inference.detectors.boxes_file import BoxesFileDetector

    with pytest.raises(PredictError, match=r"names a video_id.*ravar data detect"):
        BoxesFileDetector(pixels)  # `ravar predict --boxes` reads one video's boxes


def _proposal_rows() -> dict[str, np.ndarray]:
    return {
        "vidA,0902": np.array(
            [[0.1, 0.1, 0.3, 0.9, 0.4], [0.05, 0.1, 0.31, 0.92, 0.95], [0.5, 0.5, 1.2, 1.0, 0.7]],
            dtype=np.float32,
        ),
        "vidB,0903": np.zeros((0, 5), dtype=np.float32),
        "vidC,0905": np.array([[0.0, 0.0, 1.0, 1.0, 1.0]]),  # a video not in the dataset
    }


def test_ava_proposals_pickle_rows_become_person_detections(ds, tmp_path):
    rows = _proposal_rows()
    path = tmp_path / "dense_proposals.pkl"
    path.write_bytes(pickle.dumps(rows, protocol=4))
    notes: list[str] = []
    detect_dataset(ds, f"ava-proposals:{path}", splits=["train"], min_score=0.5, say=notes.append)
    for rec in read_split(ds, "train"):
        key = f"{rec.video_id},{int(rec.time):04d}"
        want = [
            ([round(float(min(max(v, 0.0), 1.0)), 6) for v in r[:4]], float(r[4]))
            for r in rows.get(key, np.zeros((0, 5)))
            if r[4] >= 0.5
        ]
        want.sort(key=lambda x: -x[1])
        assert [(d.box, d.score) for d in rec.detections] == want
        assert all(d.category == "person" for d in rec.detections)
    assert any("1 keyframes have no entry" in n for n in notes)  # vidA 903


def test_ava_predicted_boxes_csv_dedups_box_rows(ds, tmp_path):
    path = tmp_path / "predicted_boxes.csv"
    lines = [
        "vidA,0902,0.1,0.2,0.3,0.4,,,0.9",  # 9 columns, empty action and person ids
        "vidA,0902,0.1,0.2,0.3,0.4,12,,0.6",  # the same box again (another action): one box
        "vidA,0902,0.5,0.2,0.7,0.4,,3,0.3",
        "vidB,903,0.2,0.2,0.4,0.4,,0.8",  # 8 columns, as SlowFast writes them
    ]
    path.write_text("\n".join(lines) + "\n")
    detect_dataset(ds, f"ava-proposals:{path}", say=lambda s: None)
    want = {
        ("vidA", 902): [([0.1, 0.2, 0.3, 0.4], 0.9), ([0.5, 0.2, 0.7, 0.4], 0.3)],
        ("vidA", 903): [],
        ("vidB", 902): [],
        ("vidB", 903): [([0.2, 0.2, 0.4, 0.4], 0.8)],
    }
    for split in SPLITS:
        for rec in read_split(ds, split):
            assert [(d.box, d.score) for d in rec.detections] == want[rec.video_id, rec.time]
    bad = tmp_path / "bad.csv"
    bad.write_text("vidA,0902,0.1,0.2\n")
    with pytest.raises(RavarError, match=r"bad.csv:1: expected 9 columns"):
        detect_dataset(ds, f"ava-proposals:{bad}", overwrite=True, say=lambda s: None)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_proposals_pickle_is_refused_with_one_line(ds, tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "proposals.pkl"
    path.write_bytes(pickle.dumps({"vidA,0902": _Evil(marker)}))
    assert main(["data", "detect", str(ds), "--detector", f"ava-proposals:{path}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "proposals.pkl" in err[0] and "system" in err[0]
    assert not marker.exists()
    assert all(r.detections is None for r in read_split(ds, "train"))


def test_hog_is_the_hog_detector_on_each_keyframe_image(ds, monkeypatch):
    from ravar.data.format import Detection
    from ravar.inference.detectors.hog import HOGPersonDetector

    detect_dataset(ds, "hog", min_score=0.0, batch_size=3, say=lambda s: None)
    hog = HOGPersonDetector(min_score=0.0)
    for vid, t in PEOPLE_KEYFRAMES:
        want = hog.detect_image(_frame(ds, vid, t))
        for split in SPLITS:
            for rec in read_split(ds, split):
                if (rec.video_id, rec.time) == (vid, t):
                    assert [(d.box, d.score) for d in rec.detections] == [
                        (d.box, d.score) for d in want
                    ]

    # HOG finds no one on these tiny frames: check that each keyframe's own image reaches it
    def by_band(self, image):  # the frames' top band is their frame number (builders)
        assert image.shape == (32, 48, 3)
        return [Detection([0.0, 0.0, (int(image[0, 0, 0]) + 1) / 256, 0.5], "person", 0.9)]

    monkeypatch.setattr(HOGPersonDetector, "detect_image", by_band)
    detect_dataset(ds, "hog", overwrite=True, batch_size=3, say=lambda s: None)
    for split in SPLITS:
        for rec in read_split(ds, split):
            index = (rec.time - 900) * 30  # keyframe file number: 60 or 90
            assert _boxes(rec.detections) == [[0.0, 0.0, (index + 1) / 256, 0.5]]


def test_detr_batched_equals_one_image_at_a_time(ds, tmp_path):
    from ravar.inference.detectors.detr import HFDetrDetector
    from ravar.inference.keyframes import Keyframe

    labels = save_tiny_detr(tmp_path / "detr")
    detect_dataset(ds, f"detr:{tmp_path / 'detr'}", min_score=0.0, batch_size=4, say=lambda s: None)
    detr = HFDetrDetector(tmp_path / "detr", min_score=0.0)
    total = 0
    for rec in read_split(ds, "val"):
        image = _frame(ds, rec.video_id, rec.time)
        (want,) = detr.detect([Keyframe(image, float(rec.time), 0, 30.0)])
        assert len(rec.detections) == len(want)
        for got, exp in zip(rec.detections, want, strict=True):
            assert got.category == exp.category and got.category in labels.values()
            assert np.allclose(got.box, exp.box, atol=1e-4)
            assert abs(got.score - exp.score) < 1e-4
        total += len(want)
    assert total > 0


def test_a_killed_run_continues_and_equals_an_uninterrupted_one(ds, pristine, tmp_path):
    whole = Path(shutil.copytree(pristine, tmp_path / "whole"))
    detect_dataset(whole, CountingAnnotations(whole), batch_size=1, say=lambda s: None)

    first = CountingAnnotations(ds, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        detect_dataset(ds, first, splits=["train"], batch_size=1, say=lambda s: None)
    assert len(first.seen) == 2
    assert all(r.detections is None for r in read_split(ds, "train"))  # not replaced yet
    assert len(progress_path(ds, "train").read_text().splitlines()) == 1 + 2  # header + 2
    with open(progress_path(ds, "train"), "a") as f:
        f.write('{"video_id":"vidB","ti')  # torn last line of the killed run
    second = CountingAnnotations(ds)
    summaries = detect_dataset(ds, second, splits=["train"], batch_size=1, say=lambda s: None)
    train_keyframes = {(r.video_id, float(r.time)) for r in read_split(ds, "train")}
    assert set(second.seen) == train_keyframes - set(first.seen)  # nothing done twice
    assert len(second.seen) == len(train_keyframes) - 2
    assert summaries[0].status == "resumed after 2"
    detect_dataset(ds, second, splits=["val", "test"], say=lambda s: None)
    for split in SPLITS:
        assert read_split(ds, split) == read_split(whole, split)
    assert not progress_path(ds, "train").exists()


def test_a_done_split_is_skipped_unless_overwrite(ds, capsys):
    first = CountingAnnotations(ds)
    detect_dataset(ds, first, say=lambda s: None)
    assert len(first.seen) == 3 + 3 + 1  # keyframes of train, val, test
    again = CountingAnnotations(ds)
    summaries = detect_dataset(ds, again, say=lambda s: None)
    assert again.seen == [] and all(s.status.startswith("skipped") for s in summaries)
    forced = CountingAnnotations(ds)
    detect_dataset(ds, forced, splits=["val"], overwrite=True, say=lambda s: None)
    assert len(forced.seen) == 3
    # another detector is not "done": it replaces the detections
    assert main(["data", "detect", str(ds), "--detector", "hog", "--splits", "test"]) == 0
    assert "test: 1 keyframes (detected)" in capsys.readouterr().out
    assert load_meta(ds).extra["detections"]["test"]["detector"] == "hog"
    assert main(["data", "detect", str(ds), "--detector", "annotations", "--splits", "train"]) == 0
    assert "skipped: done by this detector" in capsys.readouterr().out


def test_progress_lines_when_not_a_terminal(ds, capsys):
    detect_dataset(
        ds, "annotations", splits=["train"], progress="lines", log_every=0.0, batch_size=1
    )
    err = capsys.readouterr().err
    assert "detect train: 1/3 keyframes (33%)" in err and "detect train: 3/3 keyframes" in err


def test_bad_detector_specs_are_one_line(ds, capsys):
    for spec, text in [
        ("yolo", "unknown detector 'yolo'"),
        ("boxes:/nonexistent.json", "no such file"),
    ]:
        assert main(["data", "detect", str(ds), "--detector", spec]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0]
    assert main(["data", "detect", str(ds), "--detector", "hog", "--splits", "nope"]) == 1
    assert "annotations/nope.jsonl is missing" in capsys.readouterr().err


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_train_refuses_a_detection_model_on_a_split_without_detections(
    ds, tmp_path, capsys, monkeypatch
):
    from test_engine_support import NAME, TinyModel

    monkeypatch.setattr(TinyModel, "needs_detections", True)
    argv = ["train", "--model", NAME, "--data", str(ds), "--device", "cpu", "--quiet"]
    argv += ["epochs=1", "max_steps=1", "batch_size=4"]
    assert main([*argv, "--out", str(tmp_path / "r1")]) == 1
    line = _one_line(capsys)
    assert "split 'train'" in line and "has no detections" in line
    assert f"ravar data detect {ds} --detector annotations --splits train" in line
    assert "--allow-missing-detections" in line
    assert not (tmp_path / "r1" / "last").exists()
    detect_dataset(ds, "annotations", splits=["train", "val"], say=lambda s: None)
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "r2")]) == 1  # test is checked before training
    assert "split 'test'" in _one_line(capsys)
    assert main([*argv, "allow_missing_detections=true", "--out", str(tmp_path / "r3")]) == 0
    assert (tmp_path / "r3" / "best").is_dir()
    monkeypatch.setattr(TinyModel, "needs_detections", False)  # a model without a location
    assert main([*argv, "--out", str(tmp_path / "r4")]) == 0  # stream trains as before


def test_eval_and_cache_refuse_with_one_line_and_the_override(ds, ckpt, tmp_path, capsys):
    argv = ["eval", "--checkpoint", str(ckpt), "--data", str(ds), "--split", "val"]
    argv += ["--device", "cpu", "--quiet", "--out", str(tmp_path / "eval")]
    assert main(argv) == 1
    line = _one_line(capsys)
    assert "--detector annotations --splits val" in line and "--allow-missing-detections" in line
    assert main([*argv, "--allow-missing-detections"]) == 0
    assert (tmp_path / "eval" / "metrics.json").is_file()
    detect_dataset(ds, "annotations", splits=["val"], say=lambda s: None)
    assert main(argv) == 0
    capsys.readouterr()

    scratch = ["model.text.kind=scratch", "model.text.frozen=false"]
    cache = ["cache", str(ds), *scratch, "--model", "refatomnet_tiny", "--device", "cpu"]
    assert main([*cache, "--split", "train"]) == 1
    assert "split 'train'" in (line := _one_line(capsys)) and "--splits train" in line
    assert main([*cache, "--allow-missing-detections", "--split", "train"]) == 1
    assert "no frozen backbone" in _one_line(capsys)  # past the check: nothing to cache here


def _refava_pickles(folder: Path) -> None:
    """RefAVA++ pickles of the train records of the people stand-in (one sentence per person)."""
    folder.mkdir(parents=True)
    persons = {}
    for split, vid, t, pid, text in PEOPLE_RECORDS:
        if split == "train":
            persons.setdefault(f"{vid}___{t}___{pid}", (person_box(vid, t, pid), text))
    values = {
        "keyframe": {k: [np.array([*b, 0.99], dtype=np.float32)] for k, (b, _) in persons.items()},
        "label": {k: np.array([12]) for k in persons},
        "description": {k: [text, "another"] for k, (_, text) in persons.items()},
    }
    for role, data in values.items():
        (folder / f"train_{role}.pkl").write_bytes(pickle.dumps(data))


def test_importers_detect_in_one_go(pristine, tmp_path, capsys):
    _refava_pickles(tmp_path / "pkl")
    out = tmp_path / "refava"
    frames = str(pristine / "frames")
    argv = ["data", "import-refava", str(tmp_path / "pkl"), str(out), "--frames", frames]
    assert main([*argv, "--splits", "train", "--detect", "nonsense"]) == 1
    assert "--detect: unknown detector 'nonsense'" in _one_line(capsys)
    assert not out.exists()  # refused before anything was written
    assert main([*argv, "--splits", "train", "--detect", "annotations"]) == 0
    printed = capsys.readouterr().out
    assert "train: 3 keyframes (detected)" in printed and "6/6 = 100.0%" in printed
    for rec in read_split(out, "train"):
        same = [
            p
            for s, v, t, p, _ in PEOPLE_RECORDS
            if s == "train" and (v, t) == (rec.video_id, rec.time)
        ]
        want = [person_box(rec.video_id, rec.time, p) for p in sorted(set(same))]
        assert _boxes(rec.detections) == [pytest.approx(b, abs=1e-6) for b in want]
    assert main(["data", "validate", str(out), "--no-frames"]) == 0

    rows = tmp_path / "rows.csv"
    rows.write_text("vidA,0902,0.1,0.1,0.4,0.9,12,1\nvidA,0902,0.5,0.1,0.9,0.9,14,2\n")
    texts = tmp_path / "texts.csv"
    texts.write_text(
        "video_id,second,person_id,text\nvidA,0902,1,the left one\nvidA,0902,2,the right one\n"
    )
    ava = tmp_path / "ava"
    ava_argv = ["data", "import-ava", str(ava), "--split", f"val={rows}"]
    ava_argv += ["--descriptions", str(texts), "--frames", frames, "--detect", "annotations"]
    assert main(ava_argv) == 0
    assert "val: 1 keyframes (detected)" in capsys.readouterr().out
    for rec in read_split(ava, "val"):
        assert _boxes(rec.detections) == [[0.1, 0.1, 0.4, 0.9], [0.5, 0.1, 0.9, 0.9]]
