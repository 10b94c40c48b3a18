"""The canonical `ravar` dataset format.

A dataset is a folder::

    DIR/
      dataset.json                 # DatasetMeta: format version, frame source, image size, labels
      annotations/train.jsonl      # one Record per line (also val.jsonl, test.jsonl, other splits)
      frames/<video_id>/image_000060.jpg   (frame source "frames", the AVA layout)
      videos/<video_id>.mp4                (frame source "video", one file per video id)

A record is one referred person at one keyframe::

    {"video_id": "-5KQ66BBWC4", "time": 902, "person_id": 3,
     "text": "the man in the blue shirt on the left",
     "box": [0.12, 0.20, 0.35, 0.98],              # keyframe box, normalised xyxy
     "actions": [12, 17, 79],                      # AVA v2.2 ids (1..80)
     "detections": [{"box": [...], "category": "person", "score": 0.98}]}   # optional

`detections` are object detections on the keyframe (or, with a "time" key, on another frame) used
by the location-semantic stream. Frame numbers follow the AVA rule: the file number of time `t` is
``round((t - time_offset) * fps) + first_index`` (AVA: time_offset 900, fps 30, first_index 0, so
second 902 is ``image_000060.jpg``). Times are seconds in [0, MAX_TIME) (1e7 s, about 116 days),
so that frame numbers stay exact integers.

``frame_source.keyframe_window`` says which frames exist: those within +- that many seconds of
each keyframe (RefAVA ships +-1.5 s: 91 frames at 30 fps), or, when null, every frame of the
video. Clips, training jitter and multi-clip phases never read outside it, and `ravar data
validate` checks exactly those frames. A dataset.json written before the key existed reads as
+-1.5 s, the RefAVA window (never more than such a dataset is known to hold).

`load_meta` checks every key of dataset.json and refuses, naming the file and the key, a wrong
type, NaN or infinity, an unknown key (own data goes under "extra"), or a value out of range:
fps in (0, 1000], time_offset in [0, 1e7] s, first_index an integer in [0, 1e9],
keyframe_window in [0, 600] s or null, image_size sides in [1, 65536], num_classes 80 (ravar
reads the AVA v2.2 label set only), and a pattern using only ``{video_id}`` and (frames)
``{index}`` with an optional width such as ``{index:06d}``.
"""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ravar.errors import DataFormatError
from ravar.labels import NUM_CLASSES, is_valid_action_id
from ravar.util.box_ops import box_problem
from ravar.util.io import atomic_path, json_line, json_lines, read_json, write_json

FORMAT_NAME = "ravar-dataset"
FORMAT_VERSION = 1
META_FILE = "dataset.json"
ANNOTATION_DIR = "annotations"
STANDARD_SPLITS = ("train", "val", "test")
FRAME_SOURCE_KINDS = ("frames", "video")
REFAVA_KEYFRAME_WINDOW = 1.5  # seconds either side of a keyframe whose frames RefAVA ships
LABEL_SET = "ava_v2.2"
# dataset.json limits: beyond them a value is a mistake (or hostile), and frame arithmetic and
# window listings would overflow or grow without bound
MAX_FPS = 1000.0
MAX_TIME_OFFSET = 1e7  # seconds (about 115 days)
MAX_FIRST_INDEX = 10**9
MAX_KEYFRAME_WINDOW = 600.0  # seconds; null means every frame of the video
MAX_IMAGE_SIDE = 65536  # pixels
_INDEX_SPEC = re.compile(r"0?[1-9]?\d?d?")  # format spec of {index}: "", "06d", "6", "d"
MAX_TIME = 1e7  # seconds (~116 days): record and detection times must be below it


@dataclass
class FrameSourceSpec:
    """Where the pixels of a dataset live and how a time in seconds maps to a frame.

    kind "frames": `pattern` names one image per frame, e.g. ``{video_id}/image_{index:06d}.jpg``.
    kind "video": `pattern` names one video file per video id, e.g. ``{video_id}.mp4``; a record's
    time is then seconds from `time_offset` in that file.
    `root` is relative to the dataset folder unless absolute.
    `keyframe_window`: the frames that exist are those within +- this many seconds of each
    keyframe (None: every frame of the video).
    """

    kind: str = "frames"
    root: str = "frames"
    pattern: str = "{video_id}/image_{index:06d}.jpg"
    fps: float = 30.0
    time_offset: float = 900.0
    first_index: int = 0
    keyframe_window: float | None = REFAVA_KEYFRAME_WINDOW

    def frame_index(self, time: float) -> int:
        """File number (kind "frames") or decoded frame number (kind "video") at `time` seconds."""
        # round half up (Python's round() would send 28.5 to 28 and 29.5 to 30)
        return math.floor((time - self.time_offset) * self.fps + 0.5) + self.first_index

    def frame_range(self, time: float) -> tuple[int, int | None]:
        """First and last frame number that exist around the keyframe at `time` seconds (last
        None: up to the end of the video)."""
        if self.keyframe_window is None:
            return self.first_index, None
        first = max(self.frame_index(time - self.keyframe_window), self.first_index)
        return first, self.frame_index(time + self.keyframe_window)


@dataclass
class DatasetMeta:
    """Contents of `dataset.json`."""

    name: str
    frame_source: FrameSourceSpec = field(default_factory=FrameSourceSpec)
    image_size: tuple[int, int] | None = None  # (width, height); None when videos differ
    labels: str = LABEL_SET
    num_classes: int = NUM_CLASSES
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size) if self.image_size is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = META_FILE) -> DatasetMeta:
        """Parse and check a `dataset.json` dict: every key's type and range (see the module
        docstring's limits); errors name `where` and the key."""
        if not isinstance(d, dict):
            raise DataFormatError(f"{where}: expected a JSON object, got {type(d).__name__}")
        if d.get("format") != FORMAT_NAME:
            raise DataFormatError(
                f"{where}: key 'format' must be {FORMAT_NAME!r}, got {_short(d.get('format'))}"
            )
        version = d.get("format_version")
        if not _is_int(version) or version != FORMAT_VERSION:
            raise DataFormatError(
                f"{where}: key 'format_version' is {_short(version)}; "
                f"this ravar reads version {FORMAT_VERSION}"
            )
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise DataFormatError(
                f"{where}: unknown keys {sorted(unknown)} (put your own under 'extra')"
            )
        if "name" not in d or not isinstance(d["name"], str):
            raise DataFormatError(
                f"{where}: key 'name' must be a string, got {_short(d.get('name'))}"
            )
        if d.get("labels", LABEL_SET) != LABEL_SET:
            raise DataFormatError(
                f"{where}: key 'labels' must be {LABEL_SET!r}, got {_short(d.get('labels'))}"
            )
        num_classes = d.get("num_classes", NUM_CLASSES)
        if not _is_int(num_classes) or num_classes != NUM_CLASSES:
            raise DataFormatError(
                f"{where}: key 'num_classes' must be {NUM_CLASSES} (ravar reads the "
                f"{NUM_CLASSES} AVA v2.2 action classes only), got {_short(num_classes)}"
            )
        description = d.get("description", "")
        if not isinstance(description, str):
            raise DataFormatError(
                f"{where}: key 'description' must be a string, got {_short(description)}"
            )
        extra = d.get("extra", {})
        if not isinstance(extra, dict):
            raise DataFormatError(f"{where}: key 'extra' must be an object, got {_short(extra)}")
        return cls(
            name=d["name"],
            frame_source=_frame_source_from_dict(d.get("frame_source", {}), where),
            image_size=_image_size_from(d.get("image_size"), where),
            labels=LABEL_SET,
            num_classes=NUM_CLASSES,
            description=description,
            extra=dict(extra),
        )

    def save(self, dataset_dir: str | os.PathLike) -> Path:
        return write_json(Path(dataset_dir) / META_FILE, self.to_dict())


def load_meta(dataset_dir: str | os.PathLike) -> DatasetMeta:
    """Read `DIR/dataset.json`."""
    path = Path(dataset_dir) / META_FILE
    if not Path(dataset_dir).is_dir():
        raise DataFormatError(f"{dataset_dir}: not a directory")
    if not path.is_file():
        raise DataFormatError(f"{path}: missing (a ravar dataset folder needs {META_FILE})")
    d = read_json(path)
    return DatasetMeta.from_dict(d, where=str(path))


# ---------------------------------------------------------------------------------------------
# dataset.json checks


def _short(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters (a hostile value can be huge)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"an integer of more than {limit} digits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number_in(
    fs: dict[str, Any], key: str, where: str, lo: float, hi: float, *, positive: bool = False
) -> float:
    """`fs[key]` as a float, checked to be a finite number in [lo, hi] (> lo if `positive`)."""
    v = fs[key]
    if not _is_number(v) or not (v > lo if positive else v >= lo) or v > hi:
        low = f"> {lo:g}" if positive else f">= {lo:g}"
        raise DataFormatError(
            f"{where}: key 'frame_source.{key}' must be a number {low} and <= {hi:g}, "
            f"got {_short(v)}"
        )
    return float(v)


def _frame_source_from_dict(fs_raw: Any, where: str) -> FrameSourceSpec:
    """The checked `frame_source` object of dataset.json."""
    if not isinstance(fs_raw, dict):
        raise DataFormatError(
            f"{where}: key 'frame_source' must be an object, got {_short(fs_raw)}"
        )
    known = set(FrameSourceSpec.__dataclass_fields__)
    unknown = set(fs_raw) - known
    if unknown:
        raise DataFormatError(f"{where}: unknown keys in 'frame_source': {sorted(unknown)}")
    fs = {k: getattr(FrameSourceSpec, k) for k in known} | fs_raw
    fs.pop("keyframe_window")  # its default is read below
    kind = fs["kind"]
    if not isinstance(kind, str) or kind not in FRAME_SOURCE_KINDS:
        raise DataFormatError(
            f"{where}: key 'frame_source.kind' must be one of {FRAME_SOURCE_KINDS}, "
            f"got {_short(kind)}"
        )
    root = fs["root"]
    if not isinstance(root, str) or not root or "\x00" in root:
        raise DataFormatError(
            f"{where}: key 'frame_source.root' must be a non-empty path, got {_short(root)}"
        )
    if problem := _pattern_problem(fs["pattern"], kind):
        raise DataFormatError(f"{where}: key 'frame_source.pattern' {problem}")
    first_index = fs["first_index"]
    if not _is_int(first_index) or not 0 <= first_index <= MAX_FIRST_INDEX:
        raise DataFormatError(
            f"{where}: key 'frame_source.first_index' must be an integer in "
            f"[0, {MAX_FIRST_INDEX}], got {_short(first_index)}"
        )
    window = fs_raw.get("keyframe_window", REFAVA_KEYFRAME_WINDOW)
    if window is not None and (not _is_number(window) or not 0 <= window <= MAX_KEYFRAME_WINDOW):
        raise DataFormatError(
            f"{where}: key 'frame_source.keyframe_window' must be a number of seconds in "
            f"[0, {MAX_KEYFRAME_WINDOW:g}] (the frames that exist either side of each keyframe) "
            f"or null (every frame of the video), got {_short(window)}"
        )
    return FrameSourceSpec(
        kind=kind,
        root=root,
        pattern=fs["pattern"],
        fps=_number_in(fs, "fps", where, 0.0, MAX_FPS, positive=True),
        time_offset=_number_in(fs, "time_offset", where, 0.0, MAX_TIME_OFFSET),
        first_index=first_index,
        keyframe_window=None if window is None else float(window),
    )


def _pattern_problem(pattern: Any, kind: str) -> str | None:
    """Why `pattern` cannot name the files of frame source `kind`, or None if it can: only
    ``{video_id}`` (required) and, for kind "frames", ``{index}`` (required, with an optional
    width such as ``{index:06d}``) may appear."""
    if not isinstance(pattern, str):
        return f"must be a string, got {_short(pattern)}"
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as e:
        return f"is not a format string ({e}): {_short(pattern)}"
    fields = set()
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        ok = (name == "video_id" and not spec) or (
            name == "index" and kind == "frames" and _INDEX_SPEC.fullmatch(spec or "")
        )
        if not ok or conversion is not None:
            allowed = (
                "{video_id} and {index} (e.g. {index:06d})" if kind == "frames" else ("{video_id}")
            )
            return f"may only use {allowed}, got {{{name}...}} in {_short(pattern)}"
        fields.add(name)
    if "video_id" not in fields:
        return "must contain {video_id}"
    if kind == "frames" and "index" not in fields:
        return "must contain {index...} (the frame number)"
    return None


def _image_size_from(size: Any, where: str) -> tuple[int, int] | None:
    """The checked `image_size` of dataset.json: (width, height) or None."""
    if size is None:
        return None
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(_is_int(v) and 0 < v <= MAX_IMAGE_SIDE for v in size)
    ):
        raise DataFormatError(
            f"{where}: key 'image_size' must be [width, height] (integers in "
            f"[1, {MAX_IMAGE_SIDE}]) or null, got {_short(size)}"
        )
    return size[0], size[1]


@dataclass
class Detection:
    """One detected object: normalised xyxy box, category name (COCO-style), score."""

    box: list[float]
    category: str
    score: float = 1.0
    time: float | None = None  # None: on the keyframe

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"box": list(self.box), "category": self.category, "score": self.score}
        if self.time is not None:
            d["time"] = self.time
        return d


@dataclass
class Record:
    """One referred person at one keyframe (one line of an annotation file)."""

    video_id: str
    time: float
    person_id: int | str
    text: str
    box: list[float]
    actions: list[int]
    detections: list[Detection] | None = None

    @property
    def key(self) -> str:
        """RefAVA-style id ``<video_id>___<time>___<person_id>``."""
        return make_key(self.video_id, self.time, self.person_id)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "video_id": self.video_id,
            "time": self.time,
            "person_id": self.person_id,
            "text": self.text,
            "box": list(self.box),
            "actions": list(self.actions),
        }
        if self.detections is not None:
            d["detections"] = [det.to_dict() for det in self.detections]
        return d


def make_key(video_id: str, time: float, person_id: int | str) -> str:
    """``<video_id>___<time>___<person_id>``, with whole-number times written without ".0"."""
    t = int(time) if float(time).is_integer() else time
    return f"{video_id}___{t}___{person_id}"


def video_id_problem(video_id: Any) -> str | None:
    """Why `video_id` cannot name a folder or file under a frame root, or None if it can."""
    if not isinstance(video_id, str) or not video_id:
        return f"must be a non-empty string, got {video_id!r}"
    if video_id in (".", "..") or any(c in video_id for c in ("/", "\\", "\x00", ":")):
        return f"{video_id!r} is not a plain name (no '/', '\\\\', ':', '.' or '..')"
    if video_id != video_id.strip() or any(ord(c) < 32 for c in video_id):
        return f"{video_id!r} has surrounding whitespace or control characters"
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def record_problems(d: Any) -> list[tuple[str, str]]:
    """Every problem of one decoded annotation line, as (field, message) pairs."""
    if not isinstance(d, dict):
        return [("<line>", f"expected a JSON object, got {type(d).__name__}")]
    problems: list[tuple[str, str]] = []
    for key in ("video_id", "time", "person_id", "text", "box", "actions"):
        if key not in d:
            problems.append((key, "missing"))
    if "video_id" in d and (p := video_id_problem(d["video_id"])):
        problems.append(("video_id", p))
    if "time" in d and (not _is_number(d["time"]) or not 0 <= d["time"] < MAX_TIME):
        problems.append(
            ("time", f"must be a number of seconds in [0, {MAX_TIME:g}), got {d['time']!r}")
        )
    if "person_id" in d and (
        isinstance(d["person_id"], bool) or not isinstance(d["person_id"], (int, str))
    ):
        problems.append(("person_id", f"must be an integer or a string, got {d['person_id']!r}"))
    if "text" in d and (not isinstance(d["text"], str) or not d["text"].strip()):
        problems.append(("text", "must be a non-empty string"))
    if "box" in d and (p := box_problem(d["box"])):
        problems.append(("box", p))
    if "actions" in d:
        acts = d["actions"]
        if not isinstance(acts, list) or not acts:
            problems.append(("actions", f"must be a non-empty list of AVA ids, got {acts!r}"))
        else:
            bad = [a for a in acts if not is_valid_action_id(a)]
            if bad:
                problems.append(
                    ("actions", f"unknown AVA action ids {bad} (valid: 1..{NUM_CLASSES})")
                )
            elif len(set(acts)) != len(acts):
                problems.append(("actions", f"repeated ids in {acts}"))
    dets = d.get("detections")
    if dets is not None:
        if not isinstance(dets, list):
            problems.append(("detections", "must be a list"))
        else:
            for i, det in enumerate(dets):
                problems.extend((f"detections[{i}].{f}", m) for f, m in _detection_problems(det))
    unknown = set(d) - {"video_id", "time", "person_id", "text", "box", "actions", "detections"}
    if unknown:
        problems.append(("<line>", f"unknown fields {sorted(unknown)}"))
    return problems


def _detection_problems(det: Any) -> list[tuple[str, str]]:
    if not isinstance(det, dict):
        return [("", "must be an object with box, category, score")]
    out = []
    if p := box_problem(det.get("box")):
        out.append(("box", p))
    if not isinstance(det.get("category"), str) or not det.get("category"):
        out.append(("category", "must be a non-empty string"))
    score = det.get("score", 1.0)
    if not _is_number(score) or not 0.0 <= score <= 1.0:
        out.append(("score", f"must be a number in [0, 1], got {score!r}"))
    t = det.get("time")
    if t is not None and (not _is_number(t) or not -MAX_TIME < t < MAX_TIME):
        out.append(
            ("time", f"must be a number of seconds in (-{MAX_TIME:g}, {MAX_TIME:g}), got {t!r}")
        )
    unknown = set(det) - {"box", "category", "score", "time"}
    if unknown:
        out.append(("", f"unknown fields {sorted(unknown)}"))
    return out


def record_from_dict(d: dict[str, Any], where: str = "<record>") -> Record:
    """Build a Record from a decoded line, raising DataFormatError naming `where` and the field."""
    problems = record_problems(d)
    if problems:
        field_name, msg = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise DataFormatError(f"{where}: field '{field_name}': {msg}{more}")
    dets = d.get("detections")
    return Record(
        video_id=d["video_id"],
        time=d["time"],
        person_id=d["person_id"],
        text=d["text"],
        box=[float(v) for v in d["box"]],
        actions=[int(a) for a in d["actions"]],
        detections=None
        if dets is None
        else [
            Detection(
                box=[float(v) for v in det["box"]],
                category=det["category"],
                score=float(det.get("score", 1.0)),
                time=det.get("time"),
            )
            for det in dets
        ],
    )


def annotation_path(dataset_dir: str | os.PathLike, split: str) -> Path:
    """`DIR/annotations/<split>.jsonl`."""
    if video_id_problem(split):
        raise DataFormatError(f"split name {split!r} is not a plain name")
    return Path(dataset_dir) / ANNOTATION_DIR / f"{split}.jsonl"


def list_splits(dataset_dir: str | os.PathLike) -> list[str]:
    """Splits present in `DIR/annotations/`, standard ones first."""
    found = sorted(p.stem for p in (Path(dataset_dir) / ANNOTATION_DIR).glob("*.jsonl"))
    return [s for s in STANDARD_SPLITS if s in found] + [
        s for s in found if s not in STANDARD_SPLITS
    ]


def iter_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded JSON) for each non-blank line; a line that is not UTF-8 or not JSON
    (`util.io.decode_json`) raises DataFormatError naming file and line."""
    for lineno, value, problem in json_lines(path):
        if problem is not None:
            raise DataFormatError(f"{path}:{lineno}: {problem}")
        yield lineno, value


def duplicate_key_message(where: str, key: str, first_line: int, line: int) -> str:
    """The error of a record whose key (`Record.key`) an earlier line of its split has."""
    return f"{where}: key: duplicate key {key!r} (lines {first_line} and {line})"


def read_split(dataset_dir: str | os.PathLike, split: str) -> list[Record]:
    """All records of one split; the first bad line, or the second line of a key (video_id,
    time, person_id) already seen, raises DataFormatError naming file and line."""
    path = annotation_path(dataset_dir, split)
    if not path.is_file():
        raise DataFormatError(f"{path}: missing (no split {split!r} in {dataset_dir})")
    records = []
    first_line_of_key: dict[str, int] = {}
    for lineno, d in iter_lines(path):
        rec = record_from_dict(d, where=f"{path}:{lineno}")
        first = first_line_of_key.setdefault(rec.key, lineno)
        if first != lineno:
            raise DataFormatError(duplicate_key_message(f"{path}:{lineno}", rec.key, first, lineno))
        records.append(rec)
    return records


def write_split(dataset_dir: str | os.PathLike, split: str, records: Iterable[Record]) -> Path:
    """Write records as `DIR/annotations/<split>.jsonl` (one compact JSON object per line)."""
    path = annotation_path(dataset_dir, split)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json_line(rec.to_dict(), ensure_ascii=False))
    return path
