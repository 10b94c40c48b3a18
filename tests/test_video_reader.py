"""Video decoding for inference: one forward pass over a video's frames (`VideoReader.iter_frames`)
and a frame stream over groups of keyframe clips (`FrameStream`)."""

from __future__ import annotations

import numpy as np
import pytest

from ravar.data.frames import FrameStream, VideoReader
from ravar.errors import FrameError

from builders import write_video

N = 32  # frame n has a top band of gray level 8 * n: 0 .. 248, distinct


def band(frame_hwc: np.ndarray) -> int:
    """Frame number read back from the gray level of the top band of `[H, W, 3]` uint8."""
    return int(round(float(frame_hwc[: frame_hwc.shape[0] // 8].mean()) / 8))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "bands.mp4"
    write_video(path, num_frames=N)  # a keyframe every 12 frames
    return path


def counting(reader: VideoReader) -> list[list[int]]:
    """Record the frame lists of every decoding pass `reader` starts."""
    passes: list[list[int]] = []
    original = reader.iter_frames

    def wrapped(indices, *args, **kwargs):
        passes.append(sorted(indices))
        return original(indices, *args, **kwargs)

    reader.iter_frames = wrapped  # type: ignore[method-assign]
    return passes


@pytest.mark.parametrize("seek_gap", [300, 2])
def test_iter_frames_gives_each_frame_once_in_order(video, seek_gap):
    reader = VideoReader(video)
    asked = [30, 3, 3, 17, 0, 31, 16]
    got = list(reader.iter_frames(asked, seek_gap=seek_gap))  # seek_gap 2: a seek per jump
    assert [n for n, _ in got] == sorted(set(asked))
    assert [band(f) for _, f in got] == sorted(set(asked))
    with pytest.raises(FrameError, match=r"bands.mp4: frames 5..32 asked for, the video has 32"):
        list(reader.iter_frames([5, 32]))
    frames = reader.read([17, 3, 17])  # read keeps the order and repeats asked for
    assert frames.shape == (3, *frames.shape[1:]) and [band(f) for f in frames] == [17, 3, 17]


def test_frame_stream_reads_time_ordered_groups_in_one_pass(video):
    reader = VideoReader(video)
    passes = counting(reader)
    groups = [[0, 4, 8, 12], [6, 10, 14, 18], [16, 20, 24, 31]]  # overlapping, as keyframe clips
    stream = FrameStream(reader, groups)
    for g, wanted in enumerate(groups):
        numbers, frames = stream.read(g)
        assert numbers == wanted and [band(f) for f in frames] == wanted
        later = {n for group in groups[g + 1 :] for n in group}
        assert set(stream._buffer) <= later  # only frames a later group needs are kept
    assert len(passes) == 1  # one forward pass of the decoder for all three groups
    assert passes[0] == sorted({n for g in groups for n in g})


def test_frame_stream_starts_a_new_pass_for_frames_it_has_passed(video):
    reader = VideoReader(video)
    passes = counting(reader)
    groups = [[20, 24], [2, 6], [6, 28]]  # the second group lies behind the first
    stream = FrameStream(reader, groups)
    for g in (0, 1, 2, 0):  # and a group read again
        numbers, frames = stream.read(g)
        assert numbers == groups[g] and [band(f) for f in frames] == groups[g]
    assert len(passes) == 3  # group 0, then back to 2 (and on to 28), then group 0 again
