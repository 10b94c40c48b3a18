"""Tiny datasets built on the fly for tests: frames that encode their own frame number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ravar.data.format import DatasetMeta, Detection, FrameSourceSpec, Record, write_split

H, W = 32, 48  # frame size of the test datasets


def frame_pixels(index: int, box: list[float] | None = None) -> np.ndarray:
    """A [H, W, 3] uint8 frame whose top band is gray level `index % 256` (its frame number), with
    a pure red square at the bottom left, a pure blue square at the bottom right and, if given,
    the normalised `box` painted white."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:8, :, :] = index % 256
    img[H - 8 :, :8] = (255, 0, 0)
    img[H - 8 :, W - 8 :] = (0, 0, 255)
    if box is not None:
        x1, y1, x2, y2 = (int(round(v * s)) for v, s in zip(box, (W, H, W, H), strict=True))
        img[y1:y2, x1:x2] = 255
    return img


BOX = [0.125, 0.375, 0.375, 0.625]  # on the left of the frame, away from the marker squares


def make_frames_dataset(
    root: Path,
    video_ids: tuple[str, ...] = ("vidA", "vidB"),
    times: tuple[int, ...] = (902, 903),
    fps: float = 30.0,
    ext: str = "png",
    box: list[float] | None = None,
) -> Path:
    """An AVA-layout dataset (time_offset 900) with every frame of each keyframe's window +-2 s,
    one record per (video, time), split 'train' and 'val' identical."""
    box = box or BOX
    spec = FrameSourceSpec(
        kind="frames",
        root="frames",
        pattern="{video_id}/image_{index:06d}." + ext,
        fps=fps,
        keyframe_window=2.0,
    )
    DatasetMeta(name="test", frame_source=spec, image_size=(W, H)).save(root)
    records = []
    for vid in video_ids:
        (root / "frames" / vid).mkdir(parents=True, exist_ok=True)
        for t in times:
            key = spec.frame_index(t)
            for i in range(key - int(2 * fps), key + int(2 * fps) + 1):
                path = root / "frames" / vid / f"image_{i:06d}.{ext}"
                if not path.exists():
                    Image.fromarray(frame_pixels(i, box)).save(path)
            records.append(
                Record(
                    video_id=vid,
                    time=t,
                    person_id=1,
                    text="the person on the left in the white shirt",
                    box=list(box),
                    actions=[12, 17],
                    detections=[
                        Detection(box=list(box), category="person", score=0.9),
                        Detection(box=[0.6, 0.1, 0.9, 0.5], category="cup", score=0.5),
                    ],
                )
            )
    write_split(root, "train", records)
    write_split(root, "val", records)
    return root


WINDOW_BOXES = ([0.05, 0.2, 0.3, 0.95], [0.4, 0.15, 0.6, 0.9], [0.7, 0.25, 0.95, 1.0])
WINDOW_TEXTS = ("the person on the left", "the person in the middle", "the person on the right")
WINDOW_ACTIONS = ([12, 17], [11, 79], [14, 80])


def make_refava_window_dataset(
    root: Path, video_ids: tuple[str, ...] = ("vidA", "vidB"), times: tuple[int, ...] = (902, 1480)
) -> Path:
    """A dataset as `ravar data import-refava` writes one from the release: the AVA frame layout
    (image_%06d.jpg, 30 fps, second s is file number (s - 900) * 30) holding only the frames
    within +-1.5 s (+-45 frames) of each keyframe, every person of a keyframe annotated (three,
    each also a person detection), the same records in 'train', 'val' and 'test'."""
    from ravar.data.importers import ava_frame_source

    spec = ava_frame_source("frames")
    DatasetMeta(name="refava-window", frame_source=spec, image_size=(W, H)).save(root)
    records = []
    for vid in video_ids:
        (root / "frames" / vid).mkdir(parents=True, exist_ok=True)
        for t in times:
            key = (t - 900) * 30
            for i in range(key - 45, key + 46):
                Image.fromarray(frame_pixels(i)).save(root / "frames" / vid / f"image_{i:06d}.jpg")
            people = [Detection(box=list(b), category="person", score=0.9) for b in WINDOW_BOXES]
            for pid, (b, text, actions) in enumerate(
                zip(WINDOW_BOXES, WINDOW_TEXTS, WINDOW_ACTIONS, strict=True)
            ):
                records.append(Record(vid, t, pid, text, list(b), list(actions), list(people)))
    for split in ("train", "val", "test"):
        write_split(root, split, records)
    return root


def write_video(path: Path, num_frames: int, fps: int = 30, box: list[float] | None = None) -> None:
    """An mp4 whose frame n has top band gray level (8 * n) % 256 (lossless enough to read back)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv444p"
        stream.options = {"crf": "0", "g": "12"}
        for n in range(num_frames):
            img = frame_pixels(8 * n, box)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def band_index(frame_chw: np.ndarray) -> int:
    """Read back the gray level of the top band of a [3, h, w] frame in [0, 1]."""
    return int(round(float(frame_chw[:, : frame_chw.shape[1] // 8].mean()) * 255))


def random_batch(b: int = 2, t: int = 4, size: int = 32, d: int = 3, seed: int = 0) -> dict:
    """A model-ready batch like `ravar.data.dataset.collate` makes, with random content."""
    from ravar.data.dummy import dummy_batch

    return dummy_batch(batch_size=b, num_frames=t, size=size, num_detections=d, seed=seed)


def save_tiny_detr(folder: Path) -> dict[int, str]:
    """A randomly initialised DETR with a tiny ResNet backbone, saved with its image processor."""
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    backbone = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
        out_features=["stage1", "stage2"],
    )  # fmt: skip
    labels = {0: "N/A", 1: "person", 2: "sports ball"}
    config = DetrConfig(
        use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False,
        d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10,
        id2label=labels, label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    torch.manual_seed(0)
    DetrForObjectDetection(config).save_pretrained(folder)
    DetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}).save_pretrained(folder)
    return labels


# RefAVA-like persons: three people per keyframe, shifted a little per keyframe
PERSON_BOXES = {1: [0.05, 0.1, 0.3, 0.9], 2: [0.35, 0.1, 0.6, 0.9], 3: [0.65, 0.1, 0.95, 0.9]}
PEOPLE_KEYFRAMES = (("vidA", 902), ("vidA", 903), ("vidB", 902), ("vidB", 903))
# (split, video, time, person, text): every person of a keyframe is annotated somewhere, except
# person 3 of vidB at 902; person 1 of vidA at 902 has two sentences (train and val: a key is
# unique within a split); persons of one keyframe are
# spread over several splits (vidA 902: train and val; vidB 903: train, val and test)
PEOPLE_RECORDS = (
    ("train", "vidA", 902, 1, "the person on the far left"),
    ("train", "vidA", 902, 2, "the person in the middle"),
    ("val", "vidA", 902, 1, "the leftmost person standing"),
    ("val", "vidA", 902, 3, "the person on the right"),
    ("train", "vidA", 903, 1, "the person on the far left"),
    ("train", "vidA", 903, 2, "the person in the middle"),
    ("train", "vidA", 903, 3, "the person on the right"),
    ("val", "vidB", 902, 1, "the person on the far left"),
    ("val", "vidB", 902, 2, "the person in the middle"),
    ("train", "vidB", 903, 1, "the person on the far left"),
    ("val", "vidB", 903, 2, "the person in the middle"),
    ("test", "vidB", 903, 3, "the person on the right"),
    ("test", "vidB", 903, 1, "someone on the left"),
)


def person_box(video_id: str, time: float, person: int) -> list[float]:
    """The box of `person` at a keyframe of `make_people_dataset` (shifted per keyframe)."""
    shift = 0.01 * PEOPLE_KEYFRAMES.index((video_id, int(time)))
    x1, y1, x2, y2 = PERSON_BOXES[person]
    return [round(x1 + shift, 6), y1, round(x2 - shift, 6), y2]


def make_people_dataset(root: Path) -> Path:
    """A RefAVA-format stand-in: AVA frame layout (PNG frames of `make_frames_dataset`), several
    persons annotated per keyframe over train / val / test (`PEOPLE_RECORDS`), no detections."""
    make_frames_dataset(root, video_ids=("vidA", "vidB"), times=(902, 903))
    for split in ("train", "val", "test"):
        write_split(
            root,
            split,
            [
                Record(vid, t, pid, text, person_box(vid, t, pid), [12])
                for s, vid, t, pid, text in PEOPLE_RECORDS
                if s == split
            ],
        )
    return root
