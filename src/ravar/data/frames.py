"""Frame sources: read the RGB frames of a clip from an AVA-style image folder or a video file.

Both kinds decode only the frames asked for, return `[T, H, W, 3]` uint8 RGB arrays, keep every
path inside the frame root, and raise `FrameError` naming the file when a frame is missing or
corrupt (or, with ``on_error="nearest"``, use the nearest good frame and log a warning).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ravar.data.format import DatasetMeta, FrameSourceSpec, video_id_problem
from ravar.errors import FrameError

log = logging.getLogger(__name__)

ON_ERROR_CHOICES = ("raise", "nearest")
NEAREST_SEARCH = 15  # how many frames either side to look for a good one with on_error="nearest"


def safe_join(root: Path, relative: str, what: str = "path") -> Path:
    """`root / relative`, refusing anything that would leave `root` (``..``, absolute parts)."""
    if not relative or os.path.isabs(relative) or "\x00" in relative:
        raise FrameError(f"{what} {relative!r} is not a relative path inside {root}")
    root_norm = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(root_norm, relative))
    if os.path.commonpath([root_norm, full]) != root_norm:
        raise FrameError(f"{what} {relative!r} points outside the frame root {root}")
    return Path(full)


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
        self._listing: dict[Path, frozenset[str]] = {}

    def frame_path(self, video_id: str, index: int) -> Path:
        """Path of frame number `index` of `video_id` (always inside the root)."""
        _check_video_id(video_id)
        rel = self.spec.pattern.format(video_id=video_id, index=index)
        return safe_join(self.root, rel, what=f"frame of video_id {video_id!r}")

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
        import av

        if not len(indices):
            raise ValueError("indices is empty")
        wanted = sorted(set(int(i) for i in indices))
        if wanted[0] < 0 or wanted[-1] >= self.num_frames:
            raise FrameError(
                f"{self.path}: frames {wanted[0]}..{wanted[-1]} asked for, the video has "
                f"{self.num_frames} (0..{self.num_frames - 1}, {self.duration:.2f} s)"
            )
        got: dict[int, np.ndarray] = {}
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                # seek to the last keyframe at or before the first wanted frame
                target_pts = self._start + int(Fraction(wanted[0]) / self._rate / self._time_base)
                container.seek(target_pts, stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    t = float((frame.pts - self._start) * self._time_base)
                    n = int(round(t * self.fps))
                    if n in got or n < wanted[0]:
                        continue
                    if n > wanted[-1]:
                        break
                    if n in wanted:
                        got[n] = frame.to_ndarray(format="rgb24")
                    if len(got) == len(wanted):
                        break
        except FrameError:
            raise
        except Exception as e:
            raise FrameError(f"{self.path}: cannot decode ({e})") from None
        missing = [i for i in wanted if i not in got]
        if missing:
            raise FrameError(f"{self.path}: could not decode frames {missing[:5]}")
        return np.stack([got[int(i)] for i in indices])  # [T, H, W, 3]


class VideoFileSource:
    """One video file per video id, e.g. ``<root>/<video_id>.mp4``; frame n = n-th decoded frame."""

    def __init__(self, root: str | os.PathLike, spec: FrameSourceSpec) -> None:
        self.root = Path(root)
        self.spec = spec
        self._readers: dict[str, VideoReader] = {}

    def video_path(self, video_id: str) -> Path:
        """Path of the file of `video_id` (always inside the root)."""
        _check_video_id(video_id)
        rel = self.spec.pattern.format(video_id=video_id)
        return safe_join(self.root, rel, what=f"video file of video_id {video_id!r}")

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
