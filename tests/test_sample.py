"""`build_sample`, the one builder of model inputs, against sums done by hand on tiny frames; and
the check that the Dataset and video inference both go through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ravar.data.dataset
import ravar.inference.prepare
from ravar.data.clip_config import ClipConfig
from ravar.data.dataset import RAVARDataset, collate
from ravar.data.format import Detection
from ravar.data.sample import build_sample
from ravar.engine.batch import to_device
from ravar.errors import RavarError

from builders import make_frames_dataset, write_video

H, W = 6, 8
MEAN = np.array([0.485, 0.456, 0.406])  # imagenet, RGB
STD = np.array([0.229, 0.224, 0.225])
NUMBERS = [10, 11, 12, 13, 20]  # frame numbers of the decoded rows


@pytest.fixture
def raw() -> np.ndarray:
    """Five decoded uint8 RGB frames [5, H, W, 3] (frame numbers NUMBERS)."""
    return np.random.default_rng(0).integers(0, 256, (5, H, W, 3), dtype=np.uint8)


def by_hand(frame: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 -> [3, H, W] float32 `(x / 255 - mean) / std`, in float64 numpy."""
    x = (frame.astype(np.float64) / 255.0 - MEAN) / STD
    return torch.from_numpy(x.transpose(2, 0, 1)).float()


def config(**changes) -> ClipConfig:
    return ClipConfig(**{"num_frames": 3, "size": (H, W), "max_detections": 4} | changes)


DETS = [
    Detection([0.0, 0.0, 0.5, 0.5], "person", 0.2),
    Detection([0.1, 0.2, 0.3, 0.4], "person", 0.9),
    Detection([0.5, 0.1, 0.9, 0.8], "chair", 0.5),
]


def test_pixels_keyframe_and_targets(raw):
    clip = np.array([10, 12, 13])
    s = build_sample(raw, NUMBERS, clip, 12, "the man", DETS, config(), box=[0.1, 0.2, 0.3, 0.4],
                     actions=[3, 80])  # fmt: skip
    assert s["frames"].shape == (3, 3, H, W) and s["frames"].dtype == torch.float32
    for slot, row in enumerate([0, 2, 3]):
        torch.testing.assert_close(s["frames"][slot], by_hand(raw[row]), rtol=0, atol=1e-5)
    assert s["key_slot"] == 1 and torch.equal(s["keyframe"], s["frames"][1])
    assert s["frame_indices"].tolist() == [10, 12, 13] and s["image_size"] == (W, H)
    assert s["box"].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    labels = torch.zeros(80)
    labels[2] = labels[79] = 1.0
    assert torch.equal(s["labels"], labels) and s["text"] == "the man"
    assert "pixel_normalization" not in s and "visual_features" not in s


def test_keyframe_outside_the_clip_and_several_clips(raw):
    clips = np.array([[10, 11, 12], [11, 12, 13]])  # K = 2
    s = build_sample(raw, NUMBERS, clips, 20, "x", [], config(), image_size=(640, 480))
    assert s["frames"].shape == (2, 3, 3, H, W) and s["key_slot"] == -1
    torch.testing.assert_close(s["frames"][1, 2], by_hand(raw[3]), rtol=0, atol=1e-5)
    torch.testing.assert_close(s["keyframe"], by_hand(raw[4]), rtol=0, atol=1e-5)
    assert s["frame_indices"].tolist() == [10, 11, 12] and s["image_size"] == (640, 480)
    assert "box" not in s and "labels" not in s  # no targets: an inference input


def test_detections_padded_highest_score_first(raw):
    s = build_sample(raw, NUMBERS, np.array([10, 11, 12]), 11, "x", DETS, config())
    assert s["det_scores"].tolist() == pytest.approx([0.9, 0.5, 0.2, 0.0])
    assert s["det_categories"] == ["person", "chair", "person", ""]
    assert s["det_mask"].tolist() == [True, True, True, False]
    expected = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.1, 0.9, 0.8], [0.0, 0.0, 0.5, 0.5], [0.0] * 4]
    torch.testing.assert_close(s["det_boxes"], torch.tensor(expected))
    cut = build_sample(raw, NUMBERS, np.array([10, 11, 12]), 11, "x", DETS,
                       config(max_detections=2))  # fmt: skip
    assert cut["det_scores"].tolist() == pytest.approx([0.9, 0.5]) and cut["det_mask"].all()


def test_flip_mirrors_pixels_boxes_and_left_right_words(raw):
    args = (raw, NUMBERS, np.array([10, 11, 12]), 11, "The one on the Left, not the rightmost")
    kw = dict(box=[0.1, 0.2, 0.3, 0.4], actions=[1])
    plain = build_sample(*args, DETS, config(), **kw)
    flipped = build_sample(*args, DETS, config(), flip=True, **kw)
    assert torch.equal(flipped["frames"], plain["frames"].flip(-1))
    assert torch.equal(flipped["keyframe"], plain["keyframe"].flip(-1))
    torch.testing.assert_close(flipped["frames"][0], by_hand(raw[0][:, ::-1]), rtol=0, atol=1e-5)
    assert flipped["box"].tolist() == pytest.approx([0.7, 0.2, 0.9, 0.4])  # x -> 1 - x
    expected = [[0.7, 0.2, 0.9, 0.4], [0.1, 0.1, 0.5, 0.8], [0.5, 0.0, 1.0, 0.5], [0.0] * 4]
    torch.testing.assert_close(flipped["det_boxes"], torch.tensor(expected))  # padding: zero
    assert flipped["text"] == "The one on the Right, not the leftmost"
    assert torch.equal(flipped["labels"], plain["labels"])


def test_uint8_pixels_equal_the_float_ones_after_normalisation(raw):
    cfg = config(size=(4, 5))  # a real resize
    args = (raw, NUMBERS, np.array([[10, 11, 12], [11, 12, 13]]), 20, "x", DETS, cfg)
    floats = build_sample(*args)
    small = build_sample(*args, uint8=True)
    assert small["frames"].dtype == torch.uint8 and small["pixel_normalization"] == "imagenet"
    assert small["frames"].shape == (2, 3, 3, 4, 5) and small["keyframe"].shape == (3, 4, 5)
    got = to_device(collate([small]), torch.device("cpu"))
    for key in ("frames", "keyframe"):
        torch.testing.assert_close(got[key][0], floats[key], rtol=0, atol=1e-6)
    unresized = build_sample(raw, NUMBERS, np.array([10, 11, 12]), 11, "x", [], config(),
                             uint8=True)  # fmt: skip
    assert torch.equal(unresized["frames"][2], torch.from_numpy(raw[2]).permute(2, 0, 1))


def test_features_without_frames():
    feats = torch.randn(1, 3, 2, 4)  # [K, T, Q, C]
    s = build_sample(None, None, np.array([[5, 6, 7]]), 6, "x", [], config(), image_size=(9, 7),
                     visual_features=feats)  # fmt: skip
    assert torch.equal(s["visual_features"], feats[0]) and "frames" not in s
    assert s["key_slot"] == 1 and s["image_size"] == (9, 7)


def test_bad_input_is_one_named_error(raw):
    with pytest.raises(RavarError, match=r"frames \[14, 30\] of the clip were not decoded"):
        build_sample(raw, NUMBERS, np.array([10, 14, 12]), 30, "x", [], config())
    with pytest.raises(RavarError, match="5 decoded frames, 4 frame numbers"):
        build_sample(raw, NUMBERS[:4], np.array([10, 11, 12]), 11, "x", [], config())
    with pytest.raises(RavarError, match="no frames and no image_size"):
        build_sample(None, None, np.array([10, 11, 12]), 11, "x", [], config())


def test_dataset_and_inference_both_build_their_samples_with_it(tmp_path, monkeypatch):
    from ravar.data.frames import VideoReader
    from ravar.inference.detectors import NoDetector
    from ravar.inference.prepare import chunk_frames, prepare_chunk

    made = []

    def spy(*args, **kwargs):
        made.append(build_sample(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ravar.data.dataset, "build_sample", spy)
    monkeypatch.setattr(ravar.inference.prepare, "build_sample", spy)
    cfg = ClipConfig(num_frames=4, size=(16, 16))
    ds = RAVARDataset(make_frames_dataset(tmp_path / "ds", ("vidA",), (902,)), "val", cfg)
    item = ds[0]
    assert len(made) == 1 and all(item[k] is v for k, v in made[0].items())

    write_video(tmp_path / "v.mp4", 20, fps=10)
    frames = chunk_frames(VideoReader(tmp_path / "v.mp4"), [[0.5, 1.0]], cfg)
    samples = prepare_chunk(frames, 0, ["a", "b"], NoDetector(), cfg).samples
    assert len(made) == 3  # once per keyframe: its sentences share pixels and detections
    assert [s["text"] for s in samples] == ["a", "b", "a", "b"]
    for s, base in zip(samples, [made[1], made[1], made[2], made[2]], strict=True):
        assert s.keys() == base.keys() and s["frames"] is base["frames"]
