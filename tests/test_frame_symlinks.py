"""Symbolic links under a frame root may not lead out of it (containment by real location, not
by the spelling of the path); a frame root that is itself a link is fine."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ravar.cli import main
from ravar.data.format import FrameSourceSpec, load_meta
from ravar.data.frames import FrameFolderSource, VideoFileSource, open_frame_source
from ravar.data.validate import validate_dataset
from ravar.errors import FrameError

from builders import make_frames_dataset


@pytest.fixture()
def data(tmp_path):
    return make_frames_dataset(tmp_path / "data", video_ids=("vidA",), times=(902,), fps=2.0)


def _source(data) -> FrameFolderSource:
    source = open_frame_source(data, load_meta(data))
    assert isinstance(source, FrameFolderSource)
    return source


def test_a_frame_linked_outside_the_root_is_refused(data, tmp_path):
    source = _source(data)
    key = load_meta(data).frame_source.frame_index(902)
    frame = source.frame_path("vidA", key)
    outside = tmp_path / "secret.png"
    shutil.copy(frame, outside)  # a readable image: only the link's target is wrong
    frame.unlink()
    frame.symlink_to(outside)
    with pytest.raises(FrameError) as info:
        _source(data).read("vidA", [key])
    message = str(info.value)
    assert "\n" not in message and str(frame) in message and str(outside) in message
    assert "outside the frame root" in message
    report = validate_dataset(data)
    assert not report.ok and any("outside the frame root" in e for e in report.errors)


def test_a_video_folder_linked_outside_the_root_is_refused(data, tmp_path):
    folder = data / "frames" / "vidA"
    moved = tmp_path / "elsewhere" / "vidA"
    shutil.move(folder, moved)
    folder.symlink_to(moved, target_is_directory=True)
    key = load_meta(data).frame_source.frame_index(902)
    with pytest.raises(FrameError, match="outside the frame root"):
        _source(data).read("vidA", [key])
    assert main(["data", "validate", str(data)]) == 1


def test_links_that_stay_inside_the_root_are_followed(data):
    source = _source(data)
    key = load_meta(data).frame_source.frame_index(902)
    before = source.read("vidA", [key - 1, key])
    frame = source.frame_path("vidA", key)
    frame.unlink()
    frame.symlink_to(source.frame_path("vidA", key - 1))  # a frame linked to its neighbour
    after = _source(data).read("vidA", [key - 1, key])
    np.testing.assert_array_equal(after[1], before[0])


def test_a_frame_root_that_is_a_link_is_allowed(data, tmp_path):
    source = _source(data)
    key = load_meta(data).frame_source.frame_index(902)
    want = source.read("vidA", [key])
    shutil.move(data / "frames", tmp_path / "real_frames")
    (data / "frames").symlink_to(tmp_path / "real_frames", target_is_directory=True)
    np.testing.assert_array_equal(_source(data).read("vidA", [key]), want)
    assert validate_dataset(data).ok


def test_a_video_file_linked_outside_the_root_is_refused(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    outside = tmp_path / "other.mp4"
    outside.write_bytes(b"not looked at")
    (root / "v1.mp4").symlink_to(outside)
    (root / "v2.mp4").symlink_to(root / "v1.mp4")  # a link to a link to outside
    source = VideoFileSource(root, FrameSourceSpec(kind="video", pattern="{video_id}.mp4"))
    for vid in ("v1", "v2"):
        with pytest.raises(FrameError, match="outside the frame root"):
            source.video_path(vid)
    (root / "v3.mp4").write_bytes(b"x")
    assert source.video_path("v3") == root / "v3.mp4"
