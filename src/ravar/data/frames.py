"""Frame sources: read the RGB frames of a clip from an AVA-style image folder or a video file.

Both kinds decode only the frames asked for, return `[T, H, W, 3]` uint8 RGB arrays, keep every
path inside the frame root, and raise `FrameError` naming the file when a frame is missing or
corrupt (or, with ``on_error="nearest"``, use the nearest good frame and log a warning).

Containment follows symbolic links: the frame root itself may be a link (it is resolved once),
but a frame or video path whose real location (every link on the way resolved) lies outside the
root's real location is refused with one line, as a ``..`` in the path is. To read frames that
live elsewhere, point ``frame_source.root`` there (an absolute path is allowed) or make the root
itself the link.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ravar.data.format import DatasetMeta, FrameSourceSpec, video_id_problem
from ravar.errors import FrameError

log = logging.getLogger(__name__)

ON_ERROR_CHOICES = ("raise", "nearest")
NEAREST_SEARCH = 15  # how many frames either side to look for a good one with on_error="nearest"
SEEK_GAP = 300  # a video decoder seeks rather than decode more frames than this (x264's GOP: 250)


def safe_join(root: Path, relative: str, what: str = "path") -> Path:
    """`root / relative`, refusing anything that would leave `root` (``..``, absolute parts)."""
    if not relative or os.path.isabs(relative) or "\x00" in relative:
        raise FrameError(f"{what} {relative!r} is not a relative path inside {root}")
    root_norm = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(root_norm, relative))
    if os.path.commonpath([root_norm, full]) != root_norm:
        raise FrameError(f"{what} {relative!r} points outside the frame root {root}")
    return Path(full)


def _inside(root: str, path: str) -> bool:
    return path == root or os.path.commonpath([root, path]) == root


class RootGuard:
    """Refuses paths under `root` whose real location (symbolic links resolved) leaves the real
    location of `root`; the root is resolved once, each folder once, each file by one lstat."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real_root: str | None = None
        self._folders: dict[str, bool] = {}  # folder -> its real location is inside the root

    def check(self, path: Path, what: str) -> Path:
        """`path` itself; raises FrameError when it leads outside the root."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        root = self._real_root
        folder = os.path.dirname(path)
        inside = self._folders.get(folder)
        if inside is None:
            inside = self._folders[folder] = _inside(root, os.path.realpath(folder))
        if inside and os.path.islink(path):
            inside = _inside(root, os.path.realpath(path))
        if not inside:
            raise FrameError(
                f"{what} {path} is a symbolic link (or lies under one) to "
                f"{os.path.realpath(path)}, outside the frame root {self.root}"
            )
        return path


def _check_video_id(video_id: str) -> None:
    if problem := video_id_problem(video_id):
        raise FrameError(f"video_id {problem}")


class FrameFolderSource:
    """One image file per frame, e.g. the AVA layout ``<root>/<video_id>/image_%06d.jpg``."""

    def __init__(
        self,
        root: str | os.PathLike,
        spec: FrameSourceSpec,
        on_error: str = "raise",
        draft_size: tuple[int, int] | None = None,
    ) -> None:
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
        self.root = Path(root)
        self.spec = spec
        self.on_error = on_error
        self.draft_size = draft_size  # decode JPEGs at reduced size (>= this), see PIL's draft()
        self._guard = RootGuard(self.root)
        self._listing: dict[Path, frozenset[str]] = {}

    def frame_path(self, video_id: str, index: int) -> Path:
        """Path of frame number `index` of `video_id` (inside the root, symbolic links resolved)."""
        _check_video_id(video_id)
        rel = self.spec.pattern.format(video_id=video_id, index=index)
        what = f"frame of video_id {video_id!r}"
        return self._guard.check(safe_join(self.root, rel, what=what), what)

    def num_frames(self, video_id: str) -> int | None:
        """Unknown for image folders (frames are addressed by number)."""
        return None

    def _exists(self, path: Path) -> bool:
        # one directory listing per folder, not one stat per frame
        parent = path.parent
        if parent not in self._listing:
            try:
                self._listing[parent] = frozenset(os.listdir(parent))
            except OSError:
                self._listing[parent] = frozenset()
        return path.name in self._listing[parent]

    def missing(self, video_id: str, indices: Sequence[int]) -> list[Path]:
        """Paths among `indices` that do not exist."""
        return [p for p in (self.frame_path(video_id, i) for i in indices) if not self._exists(p)]

    def _load(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as img:
                if self.draft_size is not None:
                    img.draft("RGB", self.draft_size)
                if img.mode != "RGB":
                    img = img.convert("RGB")  # RGB whatever the file mode
                img.load()
                return np.asarray(img)  # [H, W, 3] uint8
        except FileNotFoundError:
            raise FrameError(f"{path}: frame file is missing") from None
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise FrameError(f"{path}: cannot decode frame ({e})") from None

    def full_size(self, video_id: str, index: int) -> tuple[int, int]:
        """(width, height) of frame `index` as stored (not reduced by `draft_size`); reads the
        file header only."""
        path = self.frame_path(video_id, index)
        try:
            with Image.open(path) as img:
                return img.size
        except (OSError, ValueError) as e:
            raise FrameError(f"{path}: cannot read frame header ({e})") from None

    def _load_or_nearest(self, video_id: str, index: int) -> np.ndarray:
        try:
            return self._load(self.frame_path(video_id, index))
        except FrameError as first:
            if self.on_error != "nearest":
                raise
            for d in range(1, NEAREST_SEARCH + 1):
                for j in (index - d, index + d):
                    if j < 0:
                        continue
                    try:
                        frame = self._load(self.frame_path(video_id, j))
                    except FrameError:
                        continue
                    log.warning("%s; using frame %d instead", first, j)
                    return frame
            raise FrameError(f"{first} (and no good frame within {NEAREST_SEARCH})") from None

    def read(self, video_id: str, indices: Sequence[int]) -> np.ndarray:
        """Frames `indices` of `video_id` as `[T, H, W, 3]` uint8 RGB (each file decoded once)."""
        cache: dict[int, np.ndarray] = {}
        for i in indices:
            if i not in cache:
                cache[i] = self._load_or_nearest(video_id, int(i))
        frames = [cache[i] for i in indices]
        if len({f.shape for f in frames}) > 1:
            raise FrameError(
                f"frames of video_id {video_id!r} differ in size: "
                f"{sorted({f.shape for f in frames})}"
            )
        return np.stack(frames)  # [T, H, W, 3]


class VideoReader:
    """Random access to the frames of one video file with PyAV, seeking to what is needed."""

    def __init__(self, path: str | os.PathLike) -> None:
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise FrameError(f"{self.path}: video file is missing")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise FrameError(f"{self.path}: has no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                if not rate:
                    raise FrameError(f"{self.path}: frame rate unknown")
                self.fps = float(rate)
                self._rate = Fraction(rate)
                self.width, self.height = stream.codec_context.width, stream.codec_context.height
                self._time_base = stream.time_base
                self._start = stream.start_time or 0
                if stream.frames:
                    self.num_frames = int(stream.frames)
                elif stream.duration is not None:
                    self.num_frames = int(
                        round(float(stream.duration * self._time_base) * self.fps)
                    )
                else:
                    self.num_frames = int(round((container.duration or 0) / 1e6 * self.fps))
        except FrameError:
            raise
        except Exception as e:  # PyAV raises many types (InvalidDataError, OSError, ...)
            raise FrameError(f"{self.path}: cannot open as a video ({e})") from None

    @property
    def duration(self) -> float:
        """Length in seconds (number of frames / fps)."""
        return self.num_frames / self.fps

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Decoded frames `indices` (0 = first frame) as `[T, H, W, 3]` uint8 RGB."""
        if not len(indices):
            raise ValueError("indices is empty")
        got = dict(self.iter_frames(indices))
        missing = [i for i in sorted(set(int(i) for i in indices)) if i not in got]
        if missing:
            raise FrameError(f"{self.path}: could not decode frames {missing[:5]}")
        return np.stack([got[int(i)] for i in indices])  # [T, H, W, 3]

    def iter_frames(
        self, indices: Sequence[int], seek_gap: int = SEEK_GAP
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(frame number, `[H, W, 3]` uint8 RGB) for each of `indices` once, in increasing order,
        from one forward pass of the decoder. It seeks (to the keyframe before the target) at the
        start and when the next frame asked for is more than `seek_gap` frames ahead; frames it
        cannot find are left out (`read` names them)."""
        import av

        wanted = sorted(set(int(i) for i in indices))
        if not wanted:
            return
        if wanted[0] < 0 or wanted[-1] >= self.num_frames:
            raise FrameError(
                f"{self.path}: frames {wanted[0]}..{wanted[-1]} asked for, the video has "
                f"{self.num_frames} (0..{self.num_frames - 1}, {self.duration:.2f} s)"
            )
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                k = 0  # wanted[k] is the next frame to give
                while k < len(wanted):
                    self._seek(container, stream, wanted[k])
                    for frame in container.decode(stream):
                        if frame.pts is None:
                            continue
                        n = self._frame_number(frame.pts)
                        while k < len(wanted) and wanted[k] < n:
                            k += 1  # not in the stream (a gap in the timestamps): left out
                        if k == len(wanted):
                            break
                        if n == wanted[k]:
                            yield n, frame.to_ndarray(format="rgb24")
                            k += 1
                            if k < len(wanted) and wanted[k] - n > seek_gap:
                                break  # far ahead: seek instead of decoding the gap
                    else:
                        break  # end of the stream
        except FrameError:
            raise
        except Exception as e:  # PyAV raises many types (InvalidDataError, OSError, ...)
            raise FrameError(f"{self.path}: cannot decode ({e})") from None

    def _frame_number(self, pts: int) -> int:
        """Frame number of a decoded frame with timestamp `pts`."""
        return int(round(float((pts - self._start) * self._time_base) * self.fps))

    def _seek(self, container: Any, stream: Any, index: int) -> None:
        """Position the decoder at the last keyframe at or before frame `index`."""
        target_pts = self._start + int(Fraction(index) / self._rate / self._time_base)
        container.seek(target_pts, stream=stream, backward=True, any_frame=False)


class FrameStream:
    """Frames of one video for a planned sequence of reads (groups of frame numbers, e.g. the
    clips of successive keyframe batches), decoded in one forward pass when the groups come in
    time order: a frame shared by several groups is decoded once, and frames between groups are
    not decoded twice (a new `VideoReader.read` per group would seek back to a keyframe)."""

    def __init__(self, reader: VideoReader, groups: Sequence[Sequence[int]]) -> None:
        self.reader = reader
        self.groups = [sorted(set(int(i) for i in g)) for g in groups]
        self._last_use = {n: g for g, frames in enumerate(self.groups) for n in frames}
        self._buffer: dict[int, np.ndarray] = {}  # decoded frames a later group needs
        self._pass: Iterator[tuple[int, np.ndarray]] | None = None
        self._position = -1  # last frame number the current pass gave

    def read(self, group: int) -> tuple[list[int], np.ndarray]:
        """(frame numbers, `[F, H, W, 3]` uint8 RGB) of group `group`, frame numbers sorted."""
        wanted = self.groups[group]
        missing = [n for n in wanted if n not in self._buffer]
        if missing and (self._pass is None or missing[0] <= self._position):
            rest = {n for n, g in self._last_use.items() if g > group and n > missing[0]}
            self._pass = self.reader.iter_frames(sorted(set(missing) | rest))
        if missing:
            needed = set(wanted)
            for n, frame in self._pass:
                self._position = n
                if n in needed or self._last_use[n] > group:
                    self._buffer[n] = frame
                if n >= missing[-1]:
                    break
        lost = [n for n in wanted if n not in self._buffer]
        if lost:
            raise FrameError(f"{self.reader.path}: could not decode frames {lost[:5]}")
        frames = np.stack([self._buffer[n] for n in wanted])  # [F, H, W, 3]
        # keep only what a later group reads
        self._buffer = {n: f for n, f in self._buffer.items() if self._last_use[n] > group}
        return wanted, frames


class VideoFileSource:
    """One video file per video id, e.g. ``<root>/<video_id>.mp4``; frame n = n-th decoded frame."""

    def __init__(self, root: str | os.PathLike, spec: FrameSourceSpec) -> None:
        self.root = Path(root)
        self.spec = spec
        self._guard = RootGuard(self.root)
        self._readers: dict[str, VideoReader] = {}

    def video_path(self, video_id: str) -> Path:
        """Path of the file of `video_id` (inside the root, symbolic links resolved)."""
        _check_video_id(video_id)
        rel = self.spec.pattern.format(video_id=video_id)
        what = f"video file of video_id {video_id!r}"
        return self._guard.check(safe_join(self.root, rel, what=what), what)

    def reader(self, video_id: str) -> VideoReader:
        """The (cached) reader of `video_id`'s file."""
        if video_id not in self._readers:
            self._readers[video_id] = VideoReader(self.video_path(video_id))
        return self._readers[video_id]

    def num_frames(self, video_id: str) -> int | None:
        return self.reader(video_id).num_frames

    def missing(self, video_id: str, indices: Sequence[int]) -> list[Path]:
        """The file itself if absent; frames past the end are reported as "path#frame"."""
        path = self.video_path(video_id)
        if not path.is_file():
            return [path]
        n = self.reader(video_id).num_frames
        return [Path(f"{path}#frame{i}") for i in indices if not 0 <= i < n]

    def read(self, video_id: str, indices: Sequence[int]) -> np.ndarray:
        """Frames `indices` of `video_id` as `[T, H, W, 3]` uint8 RGB."""
        return self.reader(video_id).read(indices)


FrameSource = FrameFolderSource | VideoFileSource


def open_frame_source(
    dataset_dir: str | os.PathLike,
    meta: DatasetMeta,
    on_error: str = "raise",
    draft_size: tuple[int, int] | None = None,
) -> FrameSource:
    """The frame source that `meta` (a dataset's `dataset.json`) describes."""
    spec = meta.frame_source
    root = Path(spec.root)
    if not root.is_absolute():
        root = Path(dataset_dir) / root
    if spec.kind == "video":
        return VideoFileSource(root, spec)
    return FrameFolderSource(root, spec, on_error=on_error, draft_size=draft_size)
