"""Clip sampling through RAVARDataset: real frames in time order, RGB, consistent flips."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from ravar.data.clip_config import ClipConfig
from ravar.data.dataset import RAVARDataset, collate
from ravar.data.format import DatasetMeta, FrameSourceSpec, Record, write_split
from ravar.data.frames import FrameFolderSource, safe_join
from ravar.data.transforms import denormalize, swap_left_right
from ravar.errors import DataFormatError, FrameError, RavarError
from ravar.util.box_ops import hflip_boxes

from builders import BOX, H, W, band_index, frame_pixels, make_frames_dataset, write_video

RAW = dict(normalization="none", size=(H, W))  # keep pixels exact so frame numbers can be read back


@pytest.fixture
def ds_dir(tmp_path):
    return make_frames_dataset(tmp_path / "ds")


def test_clip_is_distinct_frames_in_time_order_with_keyframe(ds_dir):
    ds = RAVARDataset(ds_dir, "val", ClipConfig(num_frames=8, **RAW))
    s = ds[0]
    assert s["frames"].shape == (8, 3, H, W)
    read_back = [band_index(f.numpy()) for f in s["frames"]]
    expected = s["frame_indices"].tolist()
    assert read_back == [i % 256 for i in expected]
    assert len(set(expected)) == 8 and expected == sorted(expected)
    key = ds.meta.frame_source.frame_index(902)  # (902 - 900) * 30 = 60
    assert key == 60 and expected[s["key_slot"]] == key
    assert expected[0] >= key - 45 and expected[-1] <= key + 45  # within +-1.5 s
    assert band_index(s["keyframe"].numpy()) == key
    # consecutive frames really differ (the authors' loader repeated one frame)
    diffs = (s["frames"][1:] - s["frames"][:-1]).abs().flatten(1).amax(1)
    assert bool((diffs > 0).all())


def test_channel_order_is_rgb_after_normalisation(ds_dir):
    ds = RAVARDataset(ds_dir, "val", ClipConfig(num_frames=2, size=(H, W)))  # imagenet stats
    rgb = denormalize(ds[0]["frames"][0], "imagenet")  # [3, H, W] in [0, 1]
    red = rgb[:, H - 4, 2]  # inside the red square, bottom left
    blue = rgb[:, H - 4, W - 3]
    assert red[0] > 0.95 and red[1] < 0.05 and red[2] < 0.05
    assert blue[2] > 0.95 and blue[0] < 0.05


def test_jpeg_frames_are_rgb(tmp_path):
    ds = RAVARDataset(make_frames_dataset(tmp_path / "j", ext="jpg"), "val", ClipConfig(**RAW))
    rgb = ds[0]["frames"][0]
    assert rgb[0, H - 4, 2] > 0.85 and rgb[2, H - 4, 2] < 0.15  # red stays red (not BGR)


def test_flip_keeps_box_frames_and_text_consistent(ds_dir):
    cfg = ClipConfig(num_frames=4, hflip_prob=1.0, **RAW)
    flipped = RAVARDataset(ds_dir, "train", cfg, train=True)[0]
    plain = RAVARDataset(ds_dir, "train", ClipConfig(num_frames=4, hflip_prob=0.0, **RAW), True)[0]
    assert flipped["flipped"] and not plain["flipped"]
    assert flipped["text"] == "the person on the right in the white shirt"
    assert plain["text"] == "the person on the left in the white shirt"
    assert torch.allclose(flipped["box"], hflip_boxes(torch.tensor(BOX)))
    # the white target region of every frame lies inside the returned box, flipped or not
    for s in (flipped, plain):
        x1, y1, x2, y2 = (s["box"] * torch.tensor([W, H, W, H])).round().int().tolist()
        for frame in list(s["frames"]) + [s["keyframe"]]:
            assert bool((frame[:, y1:y2, x1:x2] == 1.0).all())
            assert not bool((frame[:, 12:20, :] == 1.0).all(0).any(0)[:x1].any())
        assert s["frames"][0][0, H - 4, (2 if s is plain else W - 3)] == 1.0  # red square side
    # detections flipped too; padding stays zero
    assert torch.allclose(flipped["det_boxes"][0], hflip_boxes(torch.tensor(BOX)))
    assert flipped["det_mask"].sum() == 2 and flipped["det_boxes"][2:].abs().sum() == 0


def test_swap_left_right_words():
    assert swap_left_right("Left of the rightmost man") == "Right of the leftmost man"
    assert swap_left_right("the LEFT one, left-handed") == "the RIGHT one, right-handed"
    assert swap_left_right("bright lefty") == "bright lefty"  # whole words only


def test_train_jitter_is_seeded_ordered_and_keeps_keyframe(ds_dir):
    cfg = ClipConfig(num_frames=8, hflip_prob=0.0, **RAW)
    ds = RAVARDataset(ds_dir, "train", cfg, train=True, seed=3)
    plans = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        p = ds.plan(0)
        idx = p.clips[0]
        assert list(idx) == sorted(set(idx)) and idx[p.key_slot] == p.key_frame
        plans.append(tuple(idx))
    assert len(set(plans)) > 1  # epochs differ
    ds.set_epoch(2)
    again = RAVARDataset(ds_dir, "train", cfg, train=True, seed=3)
    again.set_epoch(2)
    assert tuple(again.plan(0).clips[0]) == tuple(ds.plan(0).clips[0])  # reproducible


def test_eval_is_deterministic_and_multi_clip(ds_dir):
    ds = RAVARDataset(ds_dir, "val", ClipConfig(num_frames=4, num_clips=3, **RAW))
    a, b = ds[1], ds[1]
    assert torch.equal(a["frames"], b["frames"])
    assert a["frames"].shape == (3, 4, 3, H, W)
    phases = ds.plan(1).clips  # [3, 4]
    assert len({tuple(r) for r in phases}) == 3
    assert (np.abs(phases - ds.plan(1).key_frame) <= 45).all()


def test_collate_batches(ds_dir):
    ds = RAVARDataset(ds_dir, "val", ClipConfig(num_frames=4, max_detections=5, **RAW))
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["frames"].shape == (3, 4, 3, H, W)
    assert batch["labels"].shape == (3, 80) and batch["labels"][0, [11, 16]].tolist() == [1, 1]
    assert batch["det_boxes"].shape == (3, 5, 4) and batch["det_mask"].sum() == 6
    assert batch["det_categories"][0][:3] == ["person", "cup", ""]
    assert batch["text"][0].startswith("the person") and len(batch["key"]) == 3


def test_missing_frame_raises_naming_the_file(ds_dir):
    missing = ds_dir / "frames" / "vidA" / "image_000060.png"
    missing.unlink()
    ds = RAVARDataset(ds_dir, "val", ClipConfig(**RAW))
    with pytest.raises(FrameError, match="image_000060.png"):
        ds[0]


def test_missing_frame_can_use_nearest_with_warning(ds_dir, caplog):
    (ds_dir / "frames" / "vidA" / "image_000060.png").unlink()
    ds = RAVARDataset(ds_dir, "val", ClipConfig(on_missing_frame="nearest", **RAW))
    with caplog.at_level(logging.WARNING):
        s = ds[0]
    assert "image_000060.png" in caplog.text
    assert band_index(s["keyframe"].numpy()) in (59, 61)  # a neighbour, never zeros


def test_corrupt_frame_raises_naming_the_file(ds_dir):
    (ds_dir / "frames" / "vidA" / "image_000049.png").write_bytes(b"not a png at all")
    with pytest.raises(FrameError, match="image_000049.png.*cannot decode"):
        RAVARDataset(ds_dir, "val", ClipConfig(num_frames=8, **RAW))[0]


def test_video_file_source_reads_the_right_frames(tmp_path):
    root = tmp_path / "vds"
    spec = FrameSourceSpec(
        kind="video",
        root="videos",
        pattern="{video_id}.mp4",
        fps=30,
        time_offset=0.0,
        first_index=0,
    )
    DatasetMeta(name="v", frame_source=spec, image_size=(W, H)).save(root)
    write_video(root / "videos" / "clip1.mp4", num_frames=30, box=BOX)
    rec = Record("clip1", 0.5, 0, "the one on the left", list(BOX), [14])
    write_split(root, "test", [rec])
    ds = RAVARDataset(root, "test", ClipConfig(num_frames=5, window_seconds=0.5, **RAW))
    s = ds[0]
    idx = s["frame_indices"].tolist()
    assert idx == [9, 12, 15, 18, 21] and idx[s["key_slot"]] == 15
    got = [band_index(f.numpy()) for f in s["frames"]]
    assert all(abs(g - 8 * i) <= 3 for g, i in zip(got, idx, strict=True))
    # a window running past the end is clamped to the video, never read out of range
    write_split(root, "late", [Record("clip1", 0.95, 0, "x", list(BOX), [14])])
    late = RAVARDataset(root, "late", ClipConfig(num_frames=5, window_seconds=0.5, **RAW))[0]
    assert max(late["frame_indices"].tolist()) == 29


def test_traversal_video_id_is_refused(tmp_path, ds_dir):
    line = (
        '{"video_id":"../../etc","time":902,"person_id":1,"text":"a","box":[0,0,1,1],"actions":[1]}'
    )
    (ds_dir / "annotations" / "evil.jsonl").write_text(line + "\n")
    with pytest.raises(DataFormatError, match=r"evil.jsonl:1: field 'video_id'"):
        RAVARDataset(ds_dir, "evil")
    src = FrameFolderSource(ds_dir / "frames", FrameSourceSpec())
    with pytest.raises(FrameError, match="not a plain name"):
        src.frame_path("..", 60)
    evil = FrameSourceSpec(pattern="../../{video_id}/image_{index:06d}.jpg")
    with pytest.raises(FrameError, match="outside the frame root"):
        FrameFolderSource(ds_dir / "frames", evil).frame_path("vidA", 60)
    with pytest.raises(FrameError, match="outside"):
        safe_join(tmp_path, "a/../../b")


def test_bad_clip_config_is_refused():
    with pytest.raises(ValueError, match="normalization"):
        ClipConfig(normalization="bgr")
    with pytest.raises(ValueError, match="hflip_prob"):
        ClipConfig(hflip_prob=2.0)


def test_frame_pixels_helper_is_what_the_tests_assume():
    img = frame_pixels(60, BOX)
    assert Image.fromarray(img).size == (W, H) and img[0, 0, 0] == 60


def test_frames_to_tensor_matches_a_float_resize_within_one_level():
    from torch.nn import functional as F

    from ravar.data.transforms import frames_to_tensor, normalization_stats

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (3, 40, 70, 3), dtype=np.uint8)
    got = frames_to_tensor(raw, (24, 24), "imagenet")  # [T, 3, 24, 24]
    x = torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False, antialias=True)
    mean, std = normalization_stats("imagenet")
    want = (x - mean) / std
    assert got.shape == (3, 3, 24, 24) and got.is_contiguous()
    level = (1.0 / 255.0) / std.min().item()
    assert (got - want).abs().max().item() <= level + 1e-5
    # no resize: exact normalisation
    same = frames_to_tensor(raw, (40, 70), "none")
    assert torch.allclose(same, torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255.0)


def test_jpeg_draft_decodes_smaller_and_reports_the_stored_size(tmp_path):
    root = make_frames_dataset(tmp_path / "d", ext="jpg")
    # replace the frames by large ones (8x the size) so that draft decoding can reduce them
    for path in (root / "frames").rglob("*.jpg"):
        small = Image.open(path).convert("RGB")
        small.resize((W * 8, H * 8), Image.BILINEAR).save(path, quality=95)
    plain = RAVARDataset(root, "val", ClipConfig(num_frames=4, size=(32, 48)))
    draft = RAVARDataset(root, "val", ClipConfig(num_frames=4, size=(32, 48), jpeg_draft=True))
    a, b = plain[0], draft[0]
    assert a["image_size"] == b["image_size"] == (W * 8, H * 8)
    assert a["frames"].shape == b["frames"].shape == (4, 3, 32, 48)
    assert (a["frames"] - b["frames"]).abs().mean().item() < 0.05  # the same picture
    source = draft.source
    assert isinstance(source, FrameFolderSource)
    decoded = source.read("vidA", [source.spec.frame_index(902)])
    assert decoded.shape[1:3] == (H, W)  # decoded at 1/8 scale: the smallest still >= (32, 48)


@pytest.mark.parametrize("train", [False, True])
def test_uint8_items_normalised_by_to_device_equal_float_items(ds_dir, train):
    from ravar.engine.batch import flatten_clips, to_device

    # imagenet stats, a resize, multi-clip evaluation; training adds flips and temporal jitter
    cfg = ClipConfig(num_frames=4, size=(24, 20), num_clips=2, hflip_prob=0.5)
    floats = RAVARDataset(ds_dir, "val", cfg, train=train, seed=3)
    small = RAVARDataset(ds_dir, "val", cfg, train=train, seed=3, uint8=True)
    n = len(floats)
    item = small[0]
    assert item["frames"].dtype == torch.uint8 and item["keyframe"].dtype == torch.uint8
    assert item["pixel_normalization"] == "imagenet" and "pixel_normalization" not in floats[0]
    ref = collate([floats[i] for i in range(n)])
    got = to_device(collate([small[i] for i in range(n)]), torch.device("cpu"))
    assert "pixel_normalization" not in got and got["frames"].dtype == torch.float32
    for key in ("frames", "keyframe"):
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-6)
    assert got["text"] == ref["text"] and torch.equal(got["det_boxes"], ref["det_boxes"])
    if not train:  # multi-clip batches flatten the same way
        flat, k = flatten_clips(collate([small[i] for i in range(n)]))
        assert k == 2 and len(flat["pixel_normalization"]) == 2 * n
        torch.testing.assert_close(
            to_device(flat, torch.device("cpu"))["frames"], flatten_clips(ref)[0]["frames"]
        )


def test_uint8_pixels_without_their_normalisation_are_refused(ds_dir):
    from ravar.engine.batch import to_device

    batch = collate([RAVARDataset(ds_dir, "val", ClipConfig(num_frames=2), uint8=True)[0]])
    batch.pop("pixel_normalization")
    with pytest.raises(RavarError, match="frames.*uint8 pixels without one pixel_normalization"):
        to_device(batch, torch.device("cpu"))
