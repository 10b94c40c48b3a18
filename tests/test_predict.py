"""`ravar predict` and `ravar.load(...).predict(...)`: video in, boxes and actions out."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from ravar.cli import main
from ravar.data.dataset import RAVARDataset, collate
from ravar.data.frames import VideoReader
from ravar.engine.batch import without_targets
from ravar.errors import PredictError
from ravar.inference.keyframes import every_times, frame_at
from ravar.inference.render import PALETTE, draw_results
from ravar.inference.results import KeyframeResult, top_actions
from ravar.labels import NUM_CLASSES, action_name
from ravar.models import create_model
from ravar.util.box_ops import box_problem

from builders import save_tiny_detr

RED = PALETTE[0]  # the colour of the first sentence's box
RESULT_KEYS = {"video", "time", "frame_index", "text", "box", "box_pixels", "actions",
               "probabilities", "detections", "clip_frames", "timings_ms", "files"}  # fmt: skip


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Path:
    """The test split of a small RefAVA-Synth dataset (one mp4 per clip, 10 fps, 3 s)."""
    from ravar.synth.generate import generate

    out = tmp_path_factory.mktemp("synth") / "small"
    generate(out, preset="small", seed=0, workers=1, splits=("test",), with_card=False)
    return out


@pytest.fixture(scope="session")
def predictor(ckpt):
    import ravar

    return ravar.load(ckpt)


def record_boxes(synth: Path, index: int, out: Path) -> tuple[object, Path, Path]:
    """(record, video path, boxes file with the record's keyframe detections)."""
    from ravar.data.format import read_split

    rec = read_split(synth, "test")[index]
    dets = [
        {"time": rec.time, "box": d.box, "category": d.category, "score": d.score}
        for d in rec.detections
        if d.time is None or d.time == rec.time
    ]
    out.write_text(json.dumps({"units": "normalized", "detections": dets}))
    return rec, synth / "videos" / f"{rec.video_id}.mp4", out


def video_size(path: Path) -> tuple[int, int, float, int]:
    """(width, height, fps, frames) read with PyAV directly."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.codec_context.width, s.codec_context.height, float(s.average_rate), s.frames


def check_document(doc: dict, video: Path, n_results: int) -> None:
    """predictions.json follows docs/predictions_schema.md."""
    assert doc["format"] == "ravar-predictions" and doc["version"] == 1
    assert doc["model"]["name"] == "tiny" and doc["model"]["family"] == "refatomnet"
    assert doc["model"]["clip"]["num_frames"] == 8 and doc["model"]["needs_detections"] is True
    assert isinstance(doc["checkpoint"], str) and isinstance(doc["detector"]["kind"], str)
    width, height, fps, frames = video_size(video)
    v = doc["video"]
    assert (v["width"], v["height"], v["num_frames"]) == (width, height, frames)
    assert v["fps"] == pytest.approx(fps) and v["duration"] == pytest.approx(frames / fps)
    assert Path(v["path"]) == video
    assert len(doc["results"]) == n_results
    for r in doc["results"]:
        assert set(r) >= RESULT_KEYS
        assert r["frame_index"] == min(math.floor(r["time"] * fps + 0.5), frames - 1)
        assert box_problem(r["box"]) is None
        scale = [width, height, width, height]
        expected = [b * s for b, s in zip(r["box"], scale, strict=True)]
        assert r["box_pixels"] == pytest.approx(expected, abs=2e-3)
        assert 0 <= r["box_pixels"][0] < r["box_pixels"][2] <= width
        assert 0 <= r["box_pixels"][1] < r["box_pixels"][3] <= height
        probs = r["probabilities"]
        assert len(probs) == NUM_CLASSES and all(0.0 <= p <= 1.0 for p in probs)
        best = sorted(range(NUM_CLASSES), key=lambda i: -probs[i])[: doc["top_k"]]
        assert [a["id"] for a in r["actions"]] == [i + 1 for i in best]
        assert [a["name"] for a in r["actions"]] == [action_name(i + 1) for i in best]
        assert len(r["clip_frames"]) == 8 and all(0 <= f < frames for f in r["clip_frames"])
        for d in r["detections"]:
            assert box_problem(d["box"]) is None and 0.0 <= d["score"] <= 1.0
        assert set(r["timings_ms"]) == {"decode", "detect", "model"}


def check_png(
    path: Path, video: Path, time: float, box_pixels: list[float], colour: tuple = RED
) -> None:
    """The PNG is the keyframe at the video's size with the box outline drawn in `colour`."""
    width, height, fps, _ = video_size(video)
    png = np.asarray(Image.open(path).convert("RGB"))
    assert png.shape == (height, width, 3)
    frame = VideoReader(video).read([math.floor(time * fps + 0.5)])[0]
    untouched = (png == frame).all(-1)  # [H, W]
    assert untouched[height // 2 :].mean() > 0.5  # below the captions: mostly the keyframe as is
    # outlines are at least 2 px wide, inside the box's rounded corners: whichever way a corner
    # rounds, these pixels are on the outline
    x1, y1, x2, y2 = (math.floor(v) for v in box_pixels)
    x2, y2 = min(x2, width), min(y2, height)
    ym, xm = (y1 + y2) // 2, (x1 + x2) // 2
    for x, y in ((x1 + 1, ym), (x2 - 1, ym), (xm, y1 + 1), (xm, y2 - 1)):
        assert tuple(png[y, x]) == colour, (x, y)


@pytest.mark.parametrize(
    ("name", "texts", "time"),
    [
        ("two_players.mp4", ["the person in the blue shirt"], 3.0),
        ("three_people.mp4", ["the boy in the white cap"], 4.5),
    ],
)
def test_cli_predict_on_camera_like_clips(ckpt, footage, tmp_path, capsys, name, texts, time):
    video = footage / name
    out = tmp_path / "out"
    rc = main(["predict", "--checkpoint", str(ckpt), "--video", str(video), "--text", texts[0],
               "--time", str(time), "--out", str(out), "--threshold", "0.5",
               "--verbose"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"t={time:.2f} s" in printed and "px" in printed and "normalised" in printed
    assert "ms: decode" in printed and ">= 0.5" in printed
    doc = json.loads((out / "predictions.json").read_text())
    check_document(doc, video, 1)
    (r,) = doc["results"]
    assert r["time"] == time and r["text"] == texts[0] and doc["detector"]["kind"] == "hog"
    assert doc["threshold"] == 0.5
    # every action at or above the threshold, most probable first (equal stored probabilities
    # may come in either order: the file rounds them)
    listed = [a["id"] for a in r["above_threshold"]]
    assert sorted(listed) == [i + 1 for i in range(80) if r["probabilities"][i] >= 0.5]
    probs = [r["probabilities"][i - 1] for i in listed]
    assert probs == sorted(probs, reverse=True)
    assert r["files"] == {"png": f"keyframe_{time:.3f}.png"}
    check_png(out / r["files"]["png"], video, time, r["box_pixels"])


def test_cli_every_gives_keyframes_over_the_whole_video(ckpt, footage, tmp_path):
    video = footage / "two_players.mp4"
    width, height, fps, frames = video_size(video)
    out = tmp_path / "out"
    rc = main(["predict", "--checkpoint", str(ckpt), "--video", str(video), "--text", "the player",
               "--every", "3", "--out", str(out), "--batch-size", "3"])  # fmt: skip
    assert rc == 0
    doc = json.loads((out / "predictions.json").read_text())
    duration = frames / fps  # 10.01 s
    expected = [3.0 * k for k in range(10) if 3.0 * k < duration]
    assert expected == [0.0, 3.0, 6.0, 9.0]
    assert [r["time"] for r in doc["results"]] == expected
    assert [r["frame_index"] for r in doc["results"]] == [0, 90, 180, 270]
    assert sorted(p.name for p in out.glob("*.png")) == [f"keyframe_{t:.3f}.png" for t in expected]
    check_document(doc, video, 4)


def test_cli_predict_on_a_synth_video_with_boxes_file_and_mp4(ckpt, synth, tmp_path):
    rec, video, boxes = record_boxes(synth, 0, tmp_path / "boxes.json")
    out = tmp_path / "out"
    rc = main(["predict", "--checkpoint", str(ckpt), "--video", str(video), "--text", rec.text,
               "--text", "the person on the left", "--boxes", str(boxes), "--out", str(out),
               "--mp4", "--top-k", "3", "--time", str(rec.time)])  # fmt: skip
    assert rc == 0
    doc = json.loads((out / "predictions.json").read_text())
    check_document(doc, video, 2)
    assert doc["detector"] == {"kind": "boxes", "path": str(boxes), "units": "normalized",
                               "entries": len(json.loads(boxes.read_text())["detections"]),
                               "min_score": 0.0}  # fmt: skip
    first, second = doc["results"]
    assert first["time"] == second["time"] == rec.time == 1.5
    assert len(first["detections"]) > 0
    assert [first["text"], second["text"]] == [rec.text, "the person on the left"]
    assert len(first["actions"]) == 3
    assert first["clip_frames"] == [0, 4, 7, 11, 15, 19, 23, 26]  # 8 frames over +-1.5 s at 10 fps
    assert first["files"] == {"png": "keyframe_1.500.png", "mp4": "clip_1.500.mp4"}
    # the second sentence's box is drawn last, in the second colour
    check_png(out / "keyframe_1.500.png", video, 1.5, second["box_pixels"], PALETTE[1])
    clip = VideoReader(out / "clip_1.500.mp4")
    assert (clip.width, clip.height, clip.num_frames) == (64, 64, 27)  # frames 0..26
    assert clip.fps == pytest.approx(10.0)


def test_inference_batch_equals_the_datasets_eval_batch(predictor, synth, tmp_path):
    """Inference samples a clip exactly as training / evaluation did."""
    ds = RAVARDataset(synth, "test", predictor.clip, train=False)
    for index in (0, 7):
        rec, video, boxes = record_boxes(synth, index, tmp_path / f"boxes{index}.json")
        item = ds[index]
        batch = predictor.inputs(video, rec.text, time=rec.time, detector=f"boxes:{boxes}")
        for key in ("frames", "keyframe", "det_boxes", "det_scores", "det_mask"):
            assert torch.equal(batch[key][0], item[key]), key
        assert batch["frame_indices"][0].tolist() == item["frame_indices"].tolist()
        assert batch["det_categories"][0] == item["det_categories"]
        assert int(batch["key_slot"][0]) == item["key_slot"] and batch["text"] == [item["text"]]
        (result,) = predictor.predict(video, rec.text, time=rec.time, detector=f"boxes:{boxes}")
        with torch.no_grad():
            out = predictor.model(without_targets(collate([item])))
            logits, box = out.logits, out.boxes
        assert torch.allclose(torch.tensor(result.probabilities), torch.sigmoid(logits[0]))
        assert torch.allclose(torch.tensor(result.box), box[0])


def test_uint8_inference_inputs_normalise_to_the_float_ones(predictor, synth, tmp_path):
    # on a GPU the predictor hands uint8 pixels to the device; to_device normalises them
    from ravar.data.frames import VideoReader
    from ravar.engine.batch import to_device
    from ravar.inference.detectors import build_detector
    from ravar.inference.prepare import chunk_frames, prepare_chunk

    rec, video, boxes = record_boxes(synth, 2, tmp_path / "boxes.json")
    det = build_detector(f"boxes:{boxes}")
    reader = VideoReader(video)
    made = {}
    for uint8 in (False, True):
        frames = chunk_frames(reader, [[0.0, rec.time]], predictor.clip)
        samples = prepare_chunk(frames, 0, [rec.text], det, predictor.clip, uint8).samples
        made[uint8] = to_device(collate(samples), torch.device("cpu"))
    assert made[True]["frames"].dtype == torch.float32 and "pixel_normalization" not in made[True]
    for key in ("frames", "keyframe", "det_boxes"):
        torch.testing.assert_close(made[True][key], made[False][key], rtol=0, atol=1e-6)


def test_batched_predict_equals_one_by_one(predictor, synth, tmp_path):
    rec, video, boxes = record_boxes(synth, 3, tmp_path / "boxes.json")
    texts = [rec.text, "the one with the red hat on the left"]
    times = [0.2, 1.5]
    det = f"boxes:{boxes}"
    together = predictor.predict(video, texts, time=times, detector=det, batch_size=4)
    assert [(r.time, r.text) for r in together] == [(t, s) for t in times for s in texts]
    for r in together:
        (alone,) = predictor.predict(video, r.text, time=r.time, detector=det, batch_size=1)
        assert alone.frame_index == r.frame_index and alone.clip_frames == r.clip_frames
        assert np.allclose(alone.probabilities, r.probabilities, atol=1e-5)
        assert np.allclose(alone.box, r.box, atol=1e-5)
        assert [a.id for a in alone.actions] == [a.id for a in r.actions]
    assert together[0].detections == []  # the boxes file only has the keyframe at 1.5 s
    assert len(together[2].detections) > 0


def test_streamed_chunks_equal_one_batch(predictor, synth, tmp_path):
    # one keyframe per chunk (decoded in one pass with overlapping clips, going back in time
    # once, prepared in a worker thread while the model runs) equals all keyframes in one chunk
    rec, video, boxes = record_boxes(synth, 3, tmp_path / "boxes.json")
    times = [0.2, 0.5, 0.9, 1.5, 0.4]
    det = f"boxes:{boxes}"
    one = predictor.predict(video, rec.text, time=times, detector=det, batch_size=len(times))
    seen = []
    streamed = predictor.predict(
        video, rec.text, time=times, detector=det, batch_size=1,
        on_chunk=lambda keys, found: seen.append([k.time for k in keys]),
    )  # fmt: skip
    assert seen == [[t] for t in times]
    assert [r.time for r in streamed] == times
    for a, b in zip(one, streamed, strict=True):
        assert a.clip_frames == b.clip_frames and a.detections == b.detections
        assert np.allclose(a.probabilities, b.probabilities, atol=1e-5)
        assert np.allclose(a.box, b.box, atol=1e-5)


def test_python_api_results(predictor, synth):
    import ravar

    video = synth / "videos" / "test-00001.mp4"
    (r,) = predictor.predict(video, "the person on the right", time=0.0, top_k=4, detector="hog")
    assert isinstance(r, KeyframeResult) and r.video == str(video) and r.frame_index == 0
    assert r.clip_frames == [0, 0, 0, 0, 0, 4, 8, 11]  # clamped at the video's start
    assert r.image_size == (64, 64) and len(r.probabilities) == NUM_CLASSES
    assert r.actions == top_actions(r.probabilities, 4)
    assert [a.probability for a in r.actions] == sorted(r.probabilities, reverse=True)[:4]
    assert r.box_pixels == pytest.approx([v * 64 for v in r.box])
    batch = predictor.inputs(video, "the person on the right", time=0.0, detector="hog")
    with torch.no_grad():
        logits = predictor.model(batch).logits
    assert np.allclose(r.probabilities, torch.sigmoid(logits[0]).numpy(), atol=1e-6)
    assert r.above(0.0) == top_actions(r.probabilities, NUM_CLASSES)
    assert set(r.timings_ms) == {"decode", "detect", "model"}
    assert predictor.describe()["model"]["name"] == "tiny"
    assert ravar.load is not None
    width, height, fps, frames = video_size(video)
    (middle,) = predictor.predict(video, "x")  # default time: the middle of the video
    assert middle.time == pytest.approx(frames / fps / 2)
    assert predictor.detector.kind == "hog"  # the default for a model that reads detections
    with pytest.raises(PredictError, match="detector 'none'"):
        predictor.predict(video, "x", detector="none")
    with pytest.raises(PredictError, match="time and every"):
        predictor.predict(video, "x", time=1.0, every=1.0)


@pytest.mark.slow
def test_cli_predict_with_a_local_detr(ckpt, synth, tmp_path):
    labels = save_tiny_detr(tmp_path / "detr")
    out = tmp_path / "out"
    video = synth / "videos" / "test-00002.mp4"
    rc = main(["predict", "--checkpoint", str(ckpt), "--video", str(video), "--text", "the man",
               "--detector", f"detr:{tmp_path / 'detr'}", "--det-score", "0", "--out", str(out),
               "--time", "1.5"])  # fmt: skip
    assert rc == 0
    doc = json.loads((out / "predictions.json").read_text())
    check_document(doc, video, 1)
    assert doc["detector"] == {"kind": "detr", "name_or_path": str(tmp_path / "detr"),
                               "min_score": 0.0}  # fmt: skip
    dets = doc["results"][0]["detections"]
    assert 1 <= len(dets) <= 10 and all(d["category"] in labels.values() for d in dets)


def test_oracle_models_cannot_predict_on_videos():
    from ravar.inference import Predictor

    with pytest.raises(PredictError, match="oracle"):
        Predictor(create_model("oracle_crop_tiny"))


def test_keyframe_rules():
    assert frame_at(0.05, 10.0, 30) == 1  # halves round up, as the dataset format does
    assert frame_at(0.15, 10.0, 30) == 2
    assert frame_at(2.99, 10.0, 30) == 29 and frame_at(3.0, 10.0, 30) == 29  # kept inside
    assert every_times(1.0, 10.0) == [float(k) for k in range(10)]
    assert every_times(4.0, 10.01) == [0.0, 4.0, 8.0]
    assert every_times(20.0, 3.0) == [0.0]
    with pytest.raises(PredictError, match="every: must be > 0"):
        every_times(0.0, 3.0)


def test_drawn_box_has_the_colour_at_its_coordinates():
    frame = np.zeros((60, 100, 3), np.uint8)
    probs = [0.01 * (i % 50) for i in range(NUM_CLASSES)]
    r = KeyframeResult(
        video="v.mp4", time=1.0, frame_index=10, text="the man", box=[0.2, 0.5, 0.6, 0.9],
        box_pixels=[20.0, 30.0, 60.0, 54.0], image_size=(100, 60),
        actions=top_actions(probs, 3), probabilities=probs,
    )  # fmt: skip
    png = np.asarray(draw_results(frame, [r]))
    assert png.shape == (60, 100, 3)
    for x, y in ((20, 40), (21, 40), (59, 40), (58, 40), (40, 30), (40, 31), (40, 53), (40, 52)):
        assert tuple(png[y, x]) == RED, (x, y)
    assert tuple(png[40, 40]) == (0, 0, 0) and tuple(png[40, 22]) == (0, 0, 0)  # inside: untouched
    assert tuple(png[40, 19]) == (0, 0, 0) and tuple(png[40, 60]) == (0, 0, 0)  # outside too


def test_import_ravar_stays_light():
    code = (
        "import sys, ravar; assert 'torch' not in sys.modules, 'torch imported'; "
        "from ravar.inference import Predictor; assert ravar.load.__module__ == "
        "'ravar.inference.predictor'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _bad_checkpoint(ckpt: Path, tmp_path: Path, damage: str) -> Path:
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    config = bad / "config.json"
    if damage == "version":
        d = json.loads(config.read_text())
        d["format_version"] = 99
        config.write_text(json.dumps(d))
    elif damage == "garbage":
        config.write_text("{this is not json")
    elif damage == "truncated":
        weights = bad / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return bad


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing video", "nope.mp4: video file is missing"),
        ("text file as video", "cannot open as a video"),
        ("time beyond the end", "--time: 99 s is beyond the end of the video (3.10 s long)"),
        ("negative time", "--time: -1 s is negative"),
        ("empty text", "--text: the sentence is empty"),
        ("blank text", "--text #2: the sentence is empty or only whitespace"),
        ("every zero", "--every: must be > 0 seconds, got 0"),
        ("every negative", "--every: must be > 0 seconds, got -2"),
        ("checkpoint version", "key 'format_version' is 99"),
        ("checkpoint garbage", "config.json: not valid JSON"),
        ("checkpoint truncated", "model.safetensors: not a readable safetensors file"),
        ("checkpoint missing", "no checkpoint there"),
        ("bad boxes file", r"boxes.json: detections[0]: key 'box' is missing"),
        ("boxes file not json", "boxes.json: not valid JSON"),
        ("detector none", "detector 'none' gives it none"),
        ("unknown detector", "unknown detector 'yolo'"),
        ("threshold", "--threshold: must be in [0, 1], got 2"),
        ("out is a file", "cannot create the folder"),
    ],
)
def test_bad_input_is_one_error_line(ckpt, synth, tmp_path, capsys, case, message):
    video = synth / "videos" / "test-00000.mp4"
    args = {"--checkpoint": str(ckpt), "--video": str(video), "--text": "the man"}
    extra: list[str] = []
    if case == "missing video":
        args["--video"] = str(tmp_path / "nope.mp4")
    elif case == "text file as video":
        fake = tmp_path / "notes.mp4"
        fake.write_text("this is not a video\n")
        args["--video"] = str(fake)
    elif case == "time beyond the end":
        extra = ["--time", "99"]
    elif case == "negative time":
        extra = ["--time", "-1"]
    elif case == "empty text":
        args["--text"] = ""
    elif case == "blank text":
        extra = ["--text", "  \t "]
    elif case.startswith("every"):
        extra = ["--every", "0" if case == "every zero" else "-2"]
    elif case.startswith("checkpoint"):
        damage = case.split()[1]
        args["--checkpoint"] = str(
            tmp_path / "none" if damage == "missing" else _bad_checkpoint(ckpt, tmp_path, damage)
        )
    elif case == "bad boxes file":
        boxes = tmp_path / "boxes.json"
        boxes.write_text(json.dumps([{"time": 1.5}]))
        extra = ["--boxes", str(boxes)]
    elif case == "boxes file not json":
        boxes = tmp_path / "boxes.json"
        boxes.write_text("[{")
        extra = ["--boxes", str(boxes)]
    elif case == "detector none":
        extra = ["--detector", "none"]
    elif case == "unknown detector":
        extra = ["--detector", "yolo"]
    elif case == "threshold":
        extra = ["--threshold", "2"]
    out = tmp_path / "out"
    if case == "out is a file":
        out.write_text("")
    argv = ["predict", "--out", str(out)]
    for k, v in args.items():
        argv += [k, v]
    rc = main(argv + extra)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 1 and len(lines) == 1, captured.err
    assert lines[0].startswith("ravar: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in captured.err and not (out / "predictions.json").exists()
