"""A stand-in for the RefAVA release, made by the tests: what a researcher downloads, in miniature.

Mimics the release exactly where it matters to `ravar`:
- three pickles per split, `{split}_keyframe.pkl` (value `[array([x1, y1, x2, y2])]`, float64
  numpy, normalised), `{split}_label.pkl` (lists of AVA ids) and `{split}_description.pkl`
  (`[caption]`), each a dict keyed `<video_id>___<second>___<person_id>` in its own order;
- every person of a keyframe annotated (each is a referred instance of its own);
- no detections anywhere;
- AVA frames `<video_id>/image_%06d.jpg`, file number `(second - 900) * 30`, and only the
  +-1.5 s (+-45 frames) around each keyframe on disk;
- AVA-style video ids (a leading '-', '_' inside).

Each person is a coloured figure; the sentence names the colour of their shirt, and their actions
follow from it, so a model that reads the sentence can find the person and their actions.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (80, 60)  # (width, height) of the frames
HALF_WINDOW = 45  # frames on each side of a keyframe that exist on disk (+-1.5 s at 30 fps)
COLOURS = {  # shirt colour -> (RGB, AVA actions of whoever wears it)
    "red": ((220, 30, 30), [12, 17]),  # stand, carry/hold
    "green": ((30, 180, 50), [11, 80]),  # sit, watch
    "blue": ((30, 60, 230), [14, 79]),  # walk, talk to
    "yellow": ((235, 215, 30), [12, 80]),  # stand, watch
}


@dataclass
class Person:
    person_id: int
    colour: str
    box: list[float]  # normalised xyxy


def _people(rng: np.random.Generator, count: int) -> list[Person]:
    """`count` people with distinct colours in distinct columns of the frame (no overlap)."""
    colours = rng.choice(list(COLOURS), size=count, replace=False)
    columns = rng.permutation(count)
    people = []
    for pid, (colour, col) in enumerate(zip(colours, columns, strict=True), start=1):
        width = 1.0 / count
        x1 = col * width + rng.uniform(0.05, 0.25) * width
        x2 = x1 + rng.uniform(0.45, 0.65) * width
        y1 = rng.uniform(0.05, 0.35)
        y2 = y1 + rng.uniform(0.45, 0.6)
        box = [round(float(v), 4) for v in (x1, y1, x2, min(y2, 0.98))]
        people.append(Person(pid, str(colour), box))
    return people


def _render(people: list[Person], rng: np.random.Generator) -> bytes:
    """One JPEG keyframe: a noisy grey room with each person as a shirt (their colour), a head
    and dark trousers."""
    w, h = SIZE
    img = rng.integers(90, 140, size=(h, w, 3), dtype=np.uint8)
    for p in people:
        x1, y1, x2, y2 = (int(round(v * s)) for v, s in zip(p.box, (w, h, w, h), strict=True))
        head = y1 + max(1, (y2 - y1) // 5)
        waist = head + (y2 - head) // 2
        img[y1:head, x1:x2] = (230, 190, 160)
        img[head:waist, x1:x2] = COLOURS[p.colour][0]
        img[waist:y2, x1:x2] = (40, 40, 50)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def make_refava_release(
    root: Path,
    keyframes: dict[str, int] | None = None,
    people: int = 3,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write a RefAVA-format release under `root`: pickles in `root/pkl`, AVA frames in
    `root/frames`. `keyframes` is the number of keyframes per split; returns (pkl, frames)."""
    keyframes = keyframes or {"train": 24, "val": 8, "test": 8}
    rng = np.random.default_rng(seed)
    pkl_dir, frame_dir = root / "pkl", root / "frames"
    pkl_dir.mkdir(parents=True, exist_ok=True)
    for s, (split, count) in enumerate(keyframes.items()):
        box_values, labels, texts = {}, {}, {}
        for k in range(count):
            video_id = f"-{split[:2]}{s}_{k // 3:02d}Xq"  # three keyframes per video
            second = 902 + 4 * (k % 3)  # 4 s apart: windows do not touch
            persons = _people(rng, people)
            jpeg = _render(persons, rng)
            key_index = (second - 900) * 30
            folder = frame_dir / video_id
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(key_index - HALF_WINDOW, key_index + HALF_WINDOW + 1):
                (folder / f"image_{index:06d}.jpg").write_bytes(jpeg)
            for p in persons:
                key = f"{video_id}___{second}___{p.person_id}"
                box_values[key] = [np.array(p.box, dtype=np.float64)]
                labels[key] = list(COLOURS[p.colour][1])
                texts[key] = [f"the person in the {p.colour} shirt"]
        keys = list(box_values)
        orders = {  # each dict in its own order: only the keys join them
            "keyframe": keys,
            "label": keys[::-1],
            "description": keys[1:] + keys[:1],
        }
        values = {"keyframe": box_values, "label": labels, "description": texts}
        for role, order in orders.items():
            with open(pkl_dir / f"{split}_{role}.pkl", "wb") as f:
                pickle.dump({key: values[role][key] for key in order}, f)
    return pkl_dir, frame_dir
