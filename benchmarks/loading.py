"""Clips per second of the `ravar` loader against a naive one, from JPEG folders and from mp4.

    python benchmarks/loading.py [--video ../shared/videos/two_players_basketball.mp4]
        [--instances 48] [--workers 0 2] [--size 224]

A dataset is built from one real video (default: the shared 426x240, 29.97 fps basketball clip;
without it, a synthetic moving-pattern video): every frame as a JPEG in the AVA folder layout,
and the same frames re-encoded as an mp4 with a keyframe every second (as AVA-style footage
has). Instances are keyframes spread over the video; clips are 8 frames at `--size` over a 3 s
window (90 frames at 30 fps), as in the papers.

Loaders, each through a DataLoader (batch 8) with the given worker counts:
- ravar, JPEG: `RAVARDataset` (decodes the 8 clip frames + keyframe only)
- ravar, JPEG draft: the same with `clip.jpeg_draft` (JPEGs decoded at a reduced scale)
- ravar, mp4: `RAVARDataset` on the video files (seek, decode the span of the clip)
- ravar, ... uint8: the same with `uint8=True` (what `ravar train` does on a GPU): resized
  uint8 pixels, normalised to floats by `to_device` on the GPU, a quarter of the bytes through
  worker queues and pinned memory; that normalisation's cost on this CPU is printed too
- naive, JPEG / mp4: decode all 90 frames of the window, then keep 8 and normalise them in the
  loader (what the authors did)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ravar.data.clip_config import ClipConfig
from ravar.data.dataset import RAVARDataset, collate
from ravar.data.format import DatasetMeta, FrameSourceSpec, Record, read_split, write_split
from ravar.data.frames import VideoReader
from ravar.data.transforms import frames_to_tensor, normalize_frames
from ravar.util.machine import describe_machine

SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared/videos/two_players_basketball.mp4"
JPEG_PATTERN = "{video_id}/image_{index:06d}.jpg"


def read_all_frames(video: Path | None, n: int = 300) -> tuple[np.ndarray, float]:
    """Every frame of `video` `[N, H, W, 3]` and its fps; without a video, `n` synthetic frames."""
    if video is not None and video.is_file():
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            return np.stack(frames), float(stream.average_rate)
    y, x = np.mgrid[0:240, 0:426]
    frames = [
        np.stack([(x + 3 * i) % 256, (y + 2 * i) % 256, (x + y + i) % 256], -1).astype(np.uint8)
        for i in range(n)
    ]
    return np.stack(frames), 30.0


def build_dataset(root: Path, frames: np.ndarray, fps: float, instances: int) -> None:
    """JPEG folders + an mp4 of the same frames (keyframe every second), two dataset folders."""
    vid = "clip"
    (root / "jpg" / "frames" / vid).mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(
            root / "jpg" / "frames" / vid / f"image_{i:06d}.jpg", quality=90
        )
    (root / "mp4" / "videos").mkdir(parents=True)
    with av.open(str(root / "mp4" / "videos" / f"{vid}.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=round(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = round(fps)
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    duration = len(frames) / fps
    times = np.linspace(1.6, duration - 1.6, instances)
    box = [0.1, 0.1, 0.5, 0.9]
    records = [
        Record(video_id=vid, time=float(t), person_id=i, text="the person", box=box, actions=[12])
        for i, t in enumerate(times)
    ]
    h, w = frames.shape[1:3]
    for kind, spec in (
        ("jpg", FrameSourceSpec(kind="frames", root="frames", pattern=JPEG_PATTERN, fps=fps,
                                time_offset=0.0, first_index=0, keyframe_window=None)),
        ("mp4", FrameSourceSpec(kind="video", root="videos", pattern="{video_id}.mp4", fps=fps,
                                time_offset=0.0, first_index=0, keyframe_window=None)),
    ):  # fmt: skip
        DatasetMeta(name=f"loading-{kind}", frame_source=spec, image_size=(w, h)).save(root / kind)
        write_split(root / kind, "train", records)


class NaiveJPEG(Dataset):
    """Decode every JPEG of the window, then keep the clip's frames and resize them."""

    def __init__(self, ref: RAVARDataset) -> None:
        self.ref = ref

    def __len__(self) -> int:
        return len(self.ref)

    def window(self, index: int) -> tuple[list[int], np.ndarray]:
        plan = self.ref.plan(index)
        key, half = plan.key_frame, self.ref.half_window
        return list(range(key - half, key + half)), plan.clips[0]

    def __getitem__(self, index: int) -> dict:
        window, clip = self.window(index)
        root = Path(self.ref.dataset_dir) / "frames" / "clip"
        frames = {
            i: np.asarray(Image.open(root / f"image_{i:06d}.jpg").convert("RGB")) for i in window
        }
        cfg = self.ref.config
        picked = np.stack([frames[int(i)] for i in clip])
        return {"frames": frames_to_tensor(picked, cfg.size, cfg.normalization)}


class NaiveMP4(NaiveJPEG):
    """Decode every frame of the window from the video, then keep the clip's frames."""

    def __getitem__(self, index: int) -> dict:
        window, clip = self.window(index)
        path = Path(self.ref.dataset_dir) / "videos" / "clip.mp4"
        decoded = VideoReader(path).read(window)  # [90, H, W, 3]
        picked = decoded[[window.index(int(i)) for i in clip]]
        cfg = self.ref.config
        return {"frames": frames_to_tensor(picked, cfg.size, cfg.normalization)}


def clips_per_second(dataset: Dataset, workers: int, batch: int = 8) -> float:
    """Clips per second through a DataLoader over the whole dataset, from the first batch on
    (worker start-up, paid once per epoch, left out)."""
    loader = iter(DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=collate))
    next(loader)
    start = time.perf_counter()
    n = sum(len(b["frames"]) for b in loader)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--video", type=Path, default=SHARED_VIDEO)
    p.add_argument("--instances", type=int, default=48)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # the loader's cost alone, as in a worker process

    frames, fps = read_all_frames(args.video)
    work = Path(tempfile.mkdtemp(prefix="ravar-loading-"))
    try:
        build_dataset(work, frames, fps, args.instances)
        clip = ClipConfig(num_frames=8, window_seconds=3.0, size=(args.size, args.size))
        jpg = RAVARDataset(work / "jpg", "train", clip)
        mp4 = RAVARDataset(work / "mp4", "train", clip)
        loaders = {
            "ravar, JPEG": jpg,
            "ravar, JPEG draft": RAVARDataset(
                work / "jpg", "train", replace(clip, jpeg_draft=True)
            ),
            "ravar, mp4": mp4,
            "ravar, JPEG, uint8": RAVARDataset(work / "jpg", "train", clip, uint8=True),
            "ravar, JPEG draft, uint8": RAVARDataset(
                work / "jpg", "train", replace(clip, jpeg_draft=True), uint8=True
            ),
            "ravar, mp4, uint8": RAVARDataset(work / "mp4", "train", clip, uint8=True),
            "naive, JPEG (all 90 frames)": NaiveJPEG(jpg),
            "naive, mp4 (all 90 frames)": NaiveMP4(mp4),
        }
        assert len(read_split(work / "jpg", "train")) == args.instances
        h, w = frames.shape[1:3]
        clips = f"{args.instances} clips of 8x{args.size}x{args.size}"
        source = f"{w}x{h} video at {fps:.2f} fps (window {2 * jpg.half_window} frames)"
        print(f"{describe_machine()}; {clips} from a {source}\n")
        header = " | ".join(f"clips/s, {n} workers" for n in args.workers)
        print(f"| loader | {header} |\n|---|" + "---|" * len(args.workers))
        rates = {}
        for name, ds in loaders.items():
            rates[name] = [clips_per_second(ds, n) for n in args.workers]
            print(f"| {name} | " + " | ".join(f"{r:.1f}" for r in rates[name]) + " |", flush=True)
        for fast in (name for name in loaders if name.startswith("ravar")):
            slow = "naive, mp4 (all 90 frames)" if "mp4" in fast else "naive, JPEG (all 90 frames)"
            ratio = ", ".join(
                f"{a / b:.1f}x" for a, b in zip(rates[fast], rates[slow], strict=True)
            )
            print(f"\n{fast} vs {slow}: {ratio}", end="")
        batch = torch.randint(0, 256, (8, 8, 3, args.size, args.size), dtype=torch.uint8)
        start = time.perf_counter()
        for _ in range(5):
            normalize_frames(batch, clip.normalization)
        ms = (time.perf_counter() - start) * 1000 / 5 / 8
        print(f"\nuint8 -> normalised float32 on this CPU (to_device): {ms:.1f} ms per clip")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
