"""Writing a clip's frames to disk: one H.264 (4:4:4, near-lossless) video file, or JPEG frames
in the AVA folder layout."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from ravar.data.format import FrameSourceSpec

VIDEO_PATTERN = "{video_id}.mp4"
FRAME_PATTERN = "{video_id}/image_{index:06d}.jpg"


def frame_source(kind: str, fps: float, clip_seconds: float) -> FrameSourceSpec:
    """The FrameSourceSpec of a synthetic dataset written as "mp4" or "jpg". Each clip is a
    whole video of `clip_seconds` with its keyframe in the middle, so the frames that exist are
    the keyframe's +- clip_seconds / 2 (`keyframe_window`), which is every frame of the video."""
    video = kind == "mp4"
    return FrameSourceSpec(
        kind="video" if video else "frames",
        root="videos" if video else "frames",
        pattern=VIDEO_PATTERN if video else FRAME_PATTERN,
        fps=fps,
        time_offset=0.0,
        keyframe_window=clip_seconds / 2,
    )


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """Encode frames [T, H, W, 3] uint8 RGB as H.264 yuv444p (every frame kept, in order)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "17", "preset": "superfast", "bf": "0", "threads": "1"}
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_jpgs(folder: Path, frames: np.ndarray, first_index: int = 0) -> None:
    """Save frames [T, H, W, 3] uint8 RGB as folder/image_000000.jpg, ... (quality 95)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(frames):
        Image.fromarray(img).save(folder / f"image_{first_index + i:06d}.jpg", quality=95)


def write_clip(dataset_dir: Path, spec: FrameSourceSpec, video_id: str, frames: np.ndarray) -> None:
    """Write one clip where `spec` says its frames live."""
    root = dataset_dir / spec.root
    if spec.kind == "video":
        write_video(root / spec.pattern.format(video_id=video_id), frames, spec.fps)
    else:
        write_jpgs(root / video_id, frames, spec.first_index)
