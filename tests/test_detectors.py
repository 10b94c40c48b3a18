"""Keyframe detectors for `ravar predict`: HOG on camera-like footage, a tiny random DETR,
boxes files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from media import THREE_PEOPLE, TWO_PLAYERS, boxes_at
from ravar.errors import PredictError
from ravar.inference.detectors import Detector, NoDetector, build_detector
from ravar.inference.detectors.boxes_file import BoxesFileDetector
from ravar.inference.detectors.hog import HOGPersonDetector
from ravar.inference.keyframes import Keyframe
from ravar.util.box_ops import box_iou, box_problem, nms

from builders import save_tiny_detr


def keyframe(image: np.ndarray, time: float = 1.0, fps: float = 10.0) -> Keyframe:
    return Keyframe(image, time, math.floor(time * fps + 0.5), fps)


def test_nms_keeps_the_best_of_each_overlapping_group():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 0.0, 11.0, 10.0],  # IoU 9/11 with box 0
            [20.0, 20.0, 30.0, 30.0],
            [0.0, 0.0, 10.0, 5.0],  # IoU 0.5 with box 0
        ]
    )
    scores = torch.tensor([0.8, 0.9, 0.1, 0.7])
    assert nms(boxes, scores, 0.6).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]  # box 3 overlaps box 1 by 45/105 > 0.4
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 3, 2]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_build_detector_by_name():
    assert isinstance(build_detector("none"), NoDetector)
    assert isinstance(build_detector(None), NoDetector)
    hog = build_detector("hog", min_score=0.7)
    assert hog.describe()["kind"] == "hog" and hog.describe()["min_score"] == 0.7
    assert build_detector(hog) is hog
    for bad in ("yolo", "detr:", "boxes:", "hog:x"):
        with pytest.raises(PredictError, match="unknown detector"):
            build_detector(bad)
    assert NoDetector().detect([keyframe(np.zeros((8, 8, 3), np.uint8))]) == [[]]


@pytest.mark.parametrize("spec", [TWO_PLAYERS, THREE_PEOPLE], ids=lambda s: s.name)
def test_hog_finds_every_person_of_camera_like_footage(footage, spec):
    """Decoded H.264 frames of people standing and walking: each is found once, with a box
    near the drawn one."""
    from ravar.data.frames import VideoReader

    reader = VideoReader(footage / spec.name)
    indices = [0, 90, 150, spec.frames - 1]
    frames = reader.read(indices)
    keyframes = [
        Keyframe(f, i / reader.fps, i, reader.fps) for f, i in zip(frames, indices, strict=True)
    ]
    found = build_detector("hog").detect(keyframes)
    # the same windows untrimmed: each found box is its window less the trim on each side
    windows = HOGPersonDetector(trim=(0.0, 0.0)).detect(keyframes)
    for dets, wins in zip(found, windows, strict=True):
        assert len(dets) == len(wins)
        for d, w in zip(dets, wins, strict=True):
            x0, y0, x1, y1 = w.box
            dx, dy = 0.125 * (x1 - x0), 0.0625 * (y1 - y0)
            assert d.box == pytest.approx([x0 + dx, y0 + dy, x1 - dx, y1 - dy], abs=2e-6)
            assert d.score == w.score
    size = torch.tensor([spec.width, spec.height] * 2, dtype=torch.float32)
    for i, dets in zip(indices, found, strict=True):
        assert len(dets) == len(spec.people), f"frame {i}: {len(dets)} detections"
        for det in dets:
            assert box_problem(det.box) is None and det.category == "person"
            assert 0.6 <= det.score <= 1.0
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
        truth = torch.tensor(boxes_at(spec, i), dtype=torch.float32) / size  # [P, 4]
        iou = box_iou(truth, torch.tensor([d.box for d in dets]))  # [P, N]
        # each person matched by its own detection (the windows are a little wider than the
        # drawn figure: IoU about 0.45 to 0.65)
        assert (iou.max(1).values >= 0.4).all(), (i, iou)
        assert sorted(iou.argmax(1).tolist()) == list(range(len(dets)))


def test_hog_settings_are_checked():
    with pytest.raises(PredictError, match="trim"):
        HOGPersonDetector(trim=(0.5, 0.0))
    with pytest.raises(PredictError, match="scale"):
        HOGPersonDetector(scale=1.0)


def test_hog_on_a_small_frame_without_people():
    image = np.full((60, 80, 3), 127, np.uint8)  # upscaled to 360 px before the search
    assert build_detector("hog").detect([keyframe(image)]) == [[]]


def write_boxes(tmp_path, content) -> str:
    path = tmp_path / "boxes.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_boxes_file_normalised_list_matched_by_frame(tmp_path):
    path = write_boxes(
        tmp_path,
        [
            {"time": 1.0, "box": [0.1, 0.2, 0.3, 0.4], "category": "person", "score": 0.5},
            {"time": 1.04, "box": [0.5, 0.5, 0.9, 0.9], "score": 0.9},  # frame 10 at 10 fps
            {"time": 2.0, "box": [0.0, 0.0, 1.0, 1.0], "category": "cup"},
        ],
    )
    det = build_detector(f"boxes:{path}")
    assert isinstance(det, BoxesFileDetector) and isinstance(det, Detector)
    assert det.describe() == {
        "kind": "boxes",
        "path": path,
        "units": "normalized",
        "entries": 3,
        "min_score": 0.0,
    }
    image = np.zeros((20, 40, 3), np.uint8)
    at_1, at_2, at_3 = det.detect([keyframe(image, 1.0), keyframe(image, 2.0), keyframe(image, 3)])
    assert [(d.box, d.category, d.score) for d in at_1] == [
        ([0.5, 0.5, 0.9, 0.9], "person", 0.9),  # highest score first, category defaults to person
        ([0.1, 0.2, 0.3, 0.4], "person", 0.5),
    ]
    assert [(d.category, d.score) for d in at_2] == [("cup", 1.0)]
    assert at_3 == []
    high = build_detector(f"boxes:{path}", min_score=0.8)
    assert [d.score for d in high.detect([keyframe(image, 1.0)])[0]] == [0.9]


def test_boxes_file_pixels_are_normalised_by_the_frame_size(tmp_path):
    path = write_boxes(
        tmp_path, {"units": "pixels", "detections": [{"time": 0.5, "box": [10, 5, 30, 20]}]}
    )
    dets = build_detector(f"boxes:{path}").detect([keyframe(np.zeros((20, 40, 3), np.uint8), 0.5)])
    assert dets[0][0].box == [10 / 40, 5 / 20, 30 / 40, 20 / 20]
    with pytest.raises(PredictError, match=r"detections\[0\].*outside the 20x10 frame"):
        build_detector(f"boxes:{path}").detect([keyframe(np.zeros((10, 20, 3), np.uint8), 0.5)])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('"a string"', "expected an object or a list"),
        ({"units": "inches", "detections": []}, "key 'units'"),
        ({"detections": [], "extra": 1}, "unknown keys"),
        ({"units": "pixels"}, "key 'detections' must be a list"),
        ([5], r"detections\[0\]: expected an object"),
        ([{"box": [0.1, 0.1, 0.2, 0.2]}], r"detections\[0\]: key 'time' is missing"),
        ([{"time": 1}], r"detections\[0\]: key 'box' is missing"),
        ([{"time": -1, "box": [0.1, 0.1, 0.2, 0.2]}], r"detections\[0\]: key 'time'"),
        (
            [{"time": 1, "box": [0.1, 0.1, 0.2, 0.2]}, {"time": 1, "box": [0.5, 0.1, 0.2, 0.2]}],
            r"detections\[1\]: key 'box' \(normalized\): x1 \(0.5\) must be < x2",
        ),
        ([{"time": 1, "box": [0.1, 0.1, 2.0, 0.2]}], r"detections\[0\]: key 'box'.*\[0, 1\]"),
        ({"units": "pixels", "detections": [{"time": 1, "box": [5, 5, 2, 9]}]}, "pixel box"),
        ([{"time": 1, "box": [0.1, 0.1, 0.2, 0.2], "score": 1.5}], "key 'score'"),
        ([{"time": 1, "box": [0.1, 0.1, 0.2, 0.2], "category": " "}], "key 'category'"),
        ([{"time": 1, "box": [0.1, 0.1, 0.2, 0.2], "label": "x"}], r"unknown keys \['label'\]"),
    ],
)
def test_bad_boxes_files_are_refused_naming_file_and_entry(tmp_path, content, message):
    path = write_boxes(tmp_path, content)
    with pytest.raises(PredictError, match=message) as info:
        build_detector(f"boxes:{path}")
    assert path in str(info.value) and "\n" not in str(info.value)


def test_missing_boxes_file_is_named(tmp_path):
    with pytest.raises(PredictError, match="nope.json: no such file"):
        build_detector(f"boxes:{tmp_path / 'nope.json'}")


@pytest.mark.slow
def test_tiny_random_detr_returns_valid_boxes(tmp_path):
    folder = tmp_path / "detr"
    labels = save_tiny_detr(folder)
    det = build_detector(f"detr:{folder}", min_score=0.0)
    assert det.describe() == {"kind": "detr", "name_or_path": str(folder), "min_score": 0.0}
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(2)]
    found = det.detect([keyframe(images[0], 0.0), keyframe(images[1], 1.0)])
    assert len(found) == 2
    for dets in found:
        assert 1 <= len(dets) <= 10  # at most one box per query
        for d in dets:
            assert box_problem(d.box) is None
            assert d.category in labels.values() and 0.0 <= d.score <= 1.0
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    with pytest.raises(PredictError, match="nothing is downloaded"):
        build_detector(f"detr:{tmp_path / 'no-such-detr'}")
