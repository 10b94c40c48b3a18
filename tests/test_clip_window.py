"""Clips stay where the data is: dataset.json's `frame_source.keyframe_window` says which frames
exist around each keyframe; clips, training jitter and multi-clip phases never read outside it,
and `ravar data validate` checks exactly those frames."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ravar.data.clip_config import ClipConfig
from ravar.data.dataset import RAVARDataset
from ravar.data.format import (
    REFAVA_KEYFRAME_WINDOW,
    DatasetMeta,
    FrameSourceSpec,
    Record,
    load_meta,
    write_split,
)
from ravar.data.sampling import clip_offsets, fit_offsets, jitter_offsets, multi_clip_offsets
from ravar.data.validate import validate_dataset
from ravar.errors import DataFormatError

from builders import BOX, make_refava_window_dataset

# ----------------------------------------------------------------------------------------------
# fit_offsets


def _is_increasing(row: np.ndarray) -> bool:
    return bool((np.diff(row) > 0).all())


def test_offsets_inside_the_window_do_not_move():
    offsets = clip_offsets(8, 90)  # [-45 .. 34]
    assert fit_offsets(offsets, -45, 45).tolist() == offsets.tolist()
    assert fit_offsets(offsets, -45, None).tolist() == offsets.tolist()
    clips = multi_clip_offsets(offsets, 3)  # [3, 8]
    assert fit_offsets(clips, -60, 60).tolist() == clips.tolist()


def test_offsets_are_clamped_at_both_ends_keeping_the_keyframe_and_distinct_slots():
    y = np.array([-50, -38, -23, -12, 0, 13, 21, 49])
    assert fit_offsets(y, -45, 45).tolist() == [-45, -38, -23, -12, 0, 13, 21, 45]
    # squeezed into a narrow window: the slots after the keyframe fit distinct into 1..4
    assert fit_offsets(y, -4, 4).tolist() == [-4, -3, -2, -1, 0, 2, 3, 4]
    # a whole [K, T] block, clip by clip
    both = fit_offsets(np.stack([y, y]), -45, 45)
    assert both.tolist() == [[-45, -38, -23, -12, 0, 13, 21, 45]] * 2


def test_too_few_frames_repeat_the_nearest_ones_and_the_keyframe_stays():
    y = np.array([-30, -20, -10, 0, 10, 20])
    assert fit_offsets(y, -2, 1).tolist() == [-2, -2, -1, 0, 1, 1]  # 3 slots, 2 frames before
    assert fit_offsets(y, 0, 1).tolist() == [0, 0, 0, 0, 1, 1]  # the keyframe is the first frame
    assert fit_offsets(y, -5, 0).tolist() == [-5, -4, -3, 0, 0, 0]  # ... and the last


def test_a_shifted_clip_without_the_keyframe_fits_the_whole_window():
    y = np.array([-48, -37, -26, -15, -4, 7, 18, 29])  # a multi-clip phase: no slot on 0
    assert fit_offsets(y, -45, 45).tolist() == [-45, -37, -26, -15, -4, 7, 18, 29]
    assert fit_offsets(y + 20, -45, 40).tolist() == [-28, -17, -6, 5, 16, 27, 38, 40]
    assert fit_offsets(y, -3, 3).tolist() == [-3, -3, -2, -1, 0, 1, 2, 3]  # 7 frames, 8 slots


def test_fitted_offsets_always_lie_in_the_window_property():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        t = int(rng.integers(1, 20))
        y = np.sort(rng.choice(np.arange(-80, 81), size=t, replace=False))
        if rng.random() < 0.5:  # a clip holding its keyframe at slot T // 2
            y = y - y[t // 2]
        lo = -int(rng.integers(0, 60))
        hi = int(rng.integers(0, 60))
        got = fit_offsets(y, lo, hi)
        assert got.min() >= lo and got.max() <= hi
        assert (np.diff(got) >= 0).all()  # time order kept
        if ((y >= lo) & (y <= hi)).all():
            assert got.tolist() == y.tolist()  # a clip inside the window does not move
        zero = np.flatnonzero(y == 0)
        if len(zero):  # a clip holding the keyframe: its slot stays on it
            k = int(zero[0])
            assert got[k] == 0
            if -lo >= k and hi >= t - k - 1:  # room on both sides
                assert _is_increasing(got)
        elif hi - lo + 1 >= t:
            assert _is_increasing(got)


# ----------------------------------------------------------------------------------------------
# the dataset's plans at both ends of the window

TIMES = (902, 903, 1480)  # keyframe file numbers 60, 90, 17400 (AVA numbering)


def _windowed_dataset(root, window=REFAVA_KEYFRAME_WINDOW, per_time=10, times=TIMES):
    """Annotations only (plans read no pixels): AVA numbering, `window` seconds of frames."""
    spec = FrameSourceSpec(keyframe_window=window)
    DatasetMeta(name="window", frame_source=spec).save(root)
    records = [
        Record(f"v{p}", t, 1, "the person on the left", list(BOX), [12])
        for t in times
        for p in range(per_time)
    ]
    write_split(root, "train", records)
    write_split(root, "val", records)
    return root


def _check_plans(ds, allowed, epochs=range(1)):
    """Every planned frame of every index and epoch in `allowed` (index -> (first, last)); the
    keyframe slot on the keyframe; each clip distinct and in time order. Returns the frames
    planned at each window end, as offsets from the keyframe."""
    ends = set()
    for epoch in epochs:
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            plan = ds.plan(i)
            first, last = allowed(i)
            assert plan.clips.min() >= first and plan.clips.max() <= last, (epoch, i, plan.clips)
            for clip in plan.clips:
                assert _is_increasing(clip), (epoch, i, clip)
            if plan.key_slot >= 0:
                assert plan.clips[0, plan.key_slot] == plan.key_frame
            ends |= {int(f) - plan.key_frame for f in plan.clips.ravel() if f in (first, last)}
    return ends


def test_training_jitter_stays_in_the_window_for_every_epoch_and_index(tmp_path):
    root = _windowed_dataset(tmp_path)
    cfg = ClipConfig(num_frames=8, window_seconds=3.0)  # reaches +-45 frames: the whole window
    ds = RAVARDataset(root, "train", cfg, train=True)
    # the jitter itself goes past the window (this is what read image_017352.jpg for 17400)
    raw = [jitter_offsets(ds.offsets, np.random.default_rng([0, e, 0])) for e in range(20)]
    assert min(r.min() for r in raw) < -45

    def allowed(i):
        key = ds.plan(i).key_frame
        return key - 45, key + 45

    ends = _check_plans(ds, allowed, epochs=range(20))
    assert ends == {-45}  # the first allowed frame is read; the clip's last slot is at +34
    for i in range(len(ds)):
        assert ds.plan(i).key_slot == 4
    # the keyframe at 60 (second 902) has frames from 15: the window, not the video's start
    assert min(ds.plan(i).clips.min() for i in range(len(ds)) if ds.records[i].time == 902) == 15


def test_training_jitter_reaches_both_ends_of_a_narrower_window(tmp_path):
    root = _windowed_dataset(tmp_path, window=1.0)  # +-30 frames
    ds = RAVARDataset(root, "train", ClipConfig(num_frames=6, window_seconds=2.0), train=True)
    assert ds.offsets.tolist() == [-30, -20, -10, 0, 10, 20]

    def allowed(i):
        key = ds.plan(i).key_frame
        return key - 30, key + 30

    assert _check_plans(ds, allowed, epochs=range(20)) == {-30}
    root2 = _windowed_dataset(tmp_path / "odd", window=0.5)  # +-15: the clip reaches +20
    ds2 = RAVARDataset(root2, "train", ClipConfig(num_frames=6, window_seconds=2.0), train=True)

    def allowed2(i):
        key = ds2.plan(i).key_frame
        return key - 15, key + 15

    assert _check_plans(ds2, allowed2, epochs=range(10)) == {-15, 15}  # first and last frame


@pytest.mark.parametrize("num_clips", [1, 2, 3, 4])
def test_multi_clip_phases_stay_in_the_window(tmp_path, num_clips):
    root = _windowed_dataset(tmp_path, per_time=2)
    for window_seconds, num_frames in ((3.0, 8), (3.0, 16), (2.0, 8), (6.0, 32)):
        cfg = ClipConfig(num_frames=num_frames, window_seconds=window_seconds, num_clips=num_clips)
        ds = RAVARDataset(root, "val", cfg)
        raw = multi_clip_offsets(ds.offsets, num_clips)  # [K, T] before fitting

        def allowed(i, ds=ds):
            key = ds.plan(i).key_frame
            return key - 45, key + 45

        ends = _check_plans(ds, allowed)
        assert ds.plan(0).clips.shape == (num_clips, num_frames)
        if raw.min() <= -45:
            assert -45 in ends  # a phase reaching the window's first frame reads exactly it
        if raw.max() >= 45:
            assert 45 in ends
        if num_clips == 1:
            assert all(ds.plan(i).key_slot == num_frames // 2 for i in range(len(ds)))


def test_a_clip_wider_than_the_window_is_clamped_with_one_warning(tmp_path, caplog):
    root = _windowed_dataset(tmp_path, per_time=2)
    cfg = ClipConfig(num_frames=8, window_seconds=4.0)  # offsets -60 .. 45
    with caplog.at_level(logging.WARNING, logger="ravar.data.dataset"):
        train = RAVARDataset(root, "train", cfg, train=True)
        RAVARDataset(root, "val", cfg)  # the same clip on the same data: no second warning
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "clip.window_seconds=4" in warnings[0] and "keyframe_window" in warnings[0]
    assert "+-60 frames" in warnings[0] and "+-45 frames" in warnings[0]
    plan = train.plan(0)
    assert plan.clips[0, 0] == plan.key_frame - 45 and _is_increasing(plan.clips[0])


def test_a_null_window_reads_as_before_up_to_the_first_frame(tmp_path):
    root = _windowed_dataset(tmp_path, window=None, per_time=2)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["frame_source"]["keyframe_window"] is None
    ds = RAVARDataset(root, "train", ClipConfig(num_frames=8, window_seconds=8.0), train=True)
    plans = [ds.plan(i) for i in range(len(ds))]
    late = [p for p, r in zip(plans, ds.records, strict=True) if r.time == 1480]
    assert all(p.clips[0, 0] < p.key_frame - 100 for p in late)  # whole video: no window
    early = [p for p, r in zip(plans, ds.records, strict=True) if r.time == 902]
    assert all(p.clips.min() >= 0 for p in early)  # the video's first frame still bounds it


# ----------------------------------------------------------------------------------------------
# dataset.json


def test_keyframe_window_is_read_checked_and_defaults_to_refava(tmp_path):
    spec = FrameSourceSpec(keyframe_window=2.5)
    DatasetMeta(name="w", frame_source=spec).save(tmp_path)
    assert load_meta(tmp_path).frame_source.keyframe_window == 2.5
    d = json.loads((tmp_path / "dataset.json").read_text())
    del d["frame_source"]["keyframe_window"]  # a dataset.json from before the key existed
    assert DatasetMeta.from_dict(d).frame_source.keyframe_window == 1.5
    assert FrameSourceSpec().frame_range(902) == (15, 105)
    assert FrameSourceSpec(keyframe_window=None).frame_range(902) == (0, None)
    assert FrameSourceSpec(keyframe_window=1.5).frame_range(900.5) == (0, 60)  # cut at frame 0
    for bad in ("1.5", -1, True, float("nan"), [1.5]):
        d["frame_source"]["keyframe_window"] = bad
        with pytest.raises(DataFormatError, match=r"key 'frame_source.keyframe_window'"):
            DatasetMeta.from_dict(d, where="x/dataset.json")
    d["frame_source"]["keyframe_window"] = None
    assert DatasetMeta.from_dict(d).frame_source.keyframe_window is None
    d["frame_source"]["keyframe_window"] = 0
    assert DatasetMeta.from_dict(d).frame_source.frame_range(902) == (60, 60)


# ----------------------------------------------------------------------------------------------
# validate checks exactly the window


@pytest.fixture(scope="module")
def refava_dir(tmp_path_factory):
    return make_refava_window_dataset(tmp_path_factory.mktemp("refava") / "ds")


def test_validate_checks_the_window_of_dataset_json(refava_dir, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(refava_dir, root)
    assert validate_dataset(root).ok  # frames 17355..17445 exist; 17354 and 17446 do not
    first = root / "frames" / "vidB" / "image_017355.jpg"  # second 1480's first frame
    first.unlink()
    report = validate_dataset(root)
    assert len(report.errors) == 1, report.errors
    err = report.errors[0]
    assert str(first) in err and "1 of the 91 frames" in err
    assert "+-1.5 s window (dataset.json frame_source.keyframe_window)" in err
    # a window of +-1 s in dataset.json: frames 17370..17430 only; the gone one is not needed
    meta = load_meta(root)
    meta.frame_source.keyframe_window = 1.0
    meta.save(root)
    assert validate_dataset(root).ok
    (root / "frames" / "vidB" / "image_017370.jpg").unlink()  # just inside +-1 s
    report = validate_dataset(root)
    assert len(report.errors) == 1 and "image_017370.jpg" in report.errors[0]
    assert "1 of the 61 frames" in report.errors[0]
    assert not validate_dataset(root, window_seconds=3.0).ok  # --window overrides


def test_validate_and_the_plans_agree_on_the_frames_that_must_exist(refava_dir):
    # every frame any plan reads (jitter over 20 epochs, K = 1..4) is one validate checks
    meta = load_meta(refava_dir)
    checked = {
        (r.video_id, f)
        for r in RAVARDataset(refava_dir, "train").records
        for f in range(*np.add(meta.frame_source.frame_range(r.time), (0, 1)))
    }
    read = set()
    train = RAVARDataset(refava_dir, "train", ClipConfig(num_frames=8), train=True)
    for epoch in range(20):
        train.set_epoch(epoch)
        read |= {(r.video_id, int(f)) for i, r in enumerate(train.records)
                 for f in train.plan(i).clips.ravel()}  # fmt: skip
    for k in (1, 2, 3, 4):
        ev = RAVARDataset(refava_dir, "val", ClipConfig(num_frames=8, num_clips=k))
        read |= {(r.video_id, int(f)) for i, r in enumerate(ev.records)
                 for f in ev.plan(i).clips.ravel()}  # fmt: skip
    assert read <= checked
    assert len(checked) == 4 * 91


# ----------------------------------------------------------------------------------------------
# the bug as a researcher met it: training and multi-clip evaluation on the RefAVA frames


def test_refava_frames_train_with_jitter_and_evaluate_three_clips(
    refava_dir, tmp_path, monkeypatch
):
    import test_engine_support  # registers the tiny test model
    from ravar.data.frames import FrameFolderSource
    from ravar.engine.config import resolve_run_config
    from ravar.engine.evaluate import evaluate_checkpoint
    from ravar.engine.train import fit

    read: list[str] = []
    load = FrameFolderSource._load

    def recording_load(self, path):
        read.append(str(path))
        return load(self, path)

    monkeypatch.setattr(FrameFolderSource, "_load", recording_load)
    clip = ["model.clip.num_frames=8", "model.clip.num_clips=3", "model.clip.temporal_jitter=true"]
    run = resolve_run_config(
        test_engine_support.NAME, overrides=["epochs=3", "batch_size=4", "lr=0.05", *clip]
    )
    result = fit(run, refava_dir, tmp_path / "run", device="cpu", quiet=True)
    assert result.finished and result.step == 9  # 12 records, 3 epochs
    trained = len(read)
    evaluate_checkpoint(tmp_path / "run" / "best", refava_dir, "test", num_clips=3, write=False)
    assert len(read) > trained  # the evaluation read frames too

    windows = {}  # video id -> frame numbers that exist
    for vid in ("vidA", "vidB"):
        windows[vid] = {
            n for t in (902, 1480) for n in range((t - 900) * 30 - 45, (t - 900) * 30 + 46)
        }
    numbers = [(p.split("/")[-2], int(p[-10:-4])) for p in read]
    outside = sorted({(v, n) for v, n in numbers if n not in windows[v]})
    assert outside == []
    edges = {n for _, n in numbers} & {15, 105, 17355, 17445}
    assert {15, 17355} <= edges  # jitter and the first phase reached the window's first frames
