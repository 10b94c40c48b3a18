"""Check a dataset folder in the canonical format and describe what it holds.

`validate_dataset` collects every problem it finds (bad `dataset.json`, bad annotation lines,
duplicate keys, frames missing from a clip window, corrupt frames with ``deep=True``) instead of
stopping at the first, and summarises the splits (sizes, persons per keyframe, action histogram,
text lengths, box areas) even when there are errors.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from ravar.data.format import (
    DatasetMeta,
    Record,
    annotation_path,
    duplicate_key_message,
    list_splits,
    load_meta,
    make_key,
    record_from_dict,
    record_problems,
)
from ravar.data.frames import VideoFileSource, open_frame_source
from ravar.errors import RavarError
from ravar.labels import NUM_CLASSES, action_name
from ravar.util.io import json_lines

DEFAULT_WINDOW_SECONDS = 3.0  # checked around keyframes of whole videos: the default clip
FPS_TOLERANCE = 0.01  # relative difference between a video's fps and dataset.json's that warns
PATHS_SHOWN = 2  # missing paths named per keyframe
TOP_ACTIONS = 10


@dataclass
class ValidationReport:
    """What `validate_dataset` found: errors, warnings and a summary of the splits."""

    dataset_dir: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    meta: DatasetMeta | None = None  # None when dataset.json could not be read
    errors_not_kept: int = 0  # errors counted but not kept (past `max_errors`)

    @property
    def num_errors(self) -> int:
        """All errors found, kept or not."""
        return len(self.errors) + self.errors_not_kept

    @property
    def ok(self) -> bool:
        """True when no error was found (warnings allowed)."""
        return self.num_errors == 0

    def add_error(self, message: str, limit: int | None = None) -> None:
        """Record one error; past `limit` kept messages it is only counted."""
        if limit is not None and len(self.errors) >= limit:
            self.errors_not_kept += 1
        else:
            self.errors.append(message)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return {
            "dataset_dir": self.dataset_dir,
            "ok": self.ok,
            "num_errors": self.num_errors,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "summary": self.summary,
        }

    def format(self, max_errors: int = 50) -> str:
        """A readable summary: a table of the splits, their top actions, warnings and errors."""
        return _format_report(self, max_errors)


# ---------------------------------------------------------------------------------------------
# validation


@dataclass
class _SplitData:
    """The records of one split that passed `record_problems`, with their line numbers."""

    name: str
    lines: int = 0
    invalid: int = 0
    records: list[tuple[int, Record]] = field(default_factory=list)


def validate_dataset(
    dataset_dir: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    window_seconds: float | None = None,
    check_frames: bool = True,
    deep: bool = False,
    max_errors: int | None = None,
) -> ValidationReport:
    """Check the dataset folder `dataset_dir` and summarise it.

    splits: the splits to check (default: every `annotations/*.jsonl`).
    window_seconds: the length of the window around each keyframe whose frames must all exist;
        default: the frames training and evaluation can read, those dataset.json's
        `frame_source.keyframe_window` says exist (+- that many seconds), or, when it says every
        frame of the video exists (null), the default clip's 3 s.
    check_frames: check that the frames (or video files) of every clip window exist.
    deep: also decode the keyframe and the window's first and last frame of each keyframe.
    max_errors: keep at most this many error messages (the rest are only counted) and stop
        the frame checks once that many are found.
    """
    if window_seconds is not None and not window_seconds >= 0:
        raise ValueError(f"window_seconds must be >= 0, got {window_seconds!r}")
    report = ValidationReport(dataset_dir=str(dataset_dir))
    report.summary = {"dataset": None, "frame_source": None, "splits": {}, "shared_videos": {}}
    try:
        meta = load_meta(dataset_dir)
    except RavarError as e:
        report.add_error(str(e), max_errors)
        return report
    report.meta = meta
    report.summary["dataset"] = meta.name
    report.summary["frame_source"] = meta.frame_source.kind

    data = _read_splits(report, Path(dataset_dir), splits, max_errors)
    for sd in data:
        report.summary["splits"][sd.name] = _split_summary(sd)
        if sd.lines == 0:
            report.warnings.append(f"{sd.name}.jsonl: has no records")
    _check_shared_videos(report, data)
    if check_frames and any(sd.records for sd in data):
        _check_frames(report, Path(dataset_dir), meta, data, window_seconds, deep, max_errors)
    return report


def _read_splits(
    report: ValidationReport,
    dataset_dir: Path,
    splits: Sequence[str] | None,
    limit: int | None,
) -> list[_SplitData]:
    """Every line of every split, with all its problems added to `report`."""
    names = list(splits) if splits is not None else list_splits(dataset_dir)
    if not names:
        report.add_error(
            f"{dataset_dir / 'annotations'}: no annotation files (<split>.jsonl) found", limit
        )
    out = []
    for name in names:
        try:
            path = annotation_path(dataset_dir, name)
        except RavarError as e:
            report.add_error(str(e), limit)
            continue
        if not path.is_file():
            report.add_error(f"{path}: missing (no split {name!r})", limit)
            continue
        sd = _SplitData(name)
        first_line_of_key: dict[str, int] = {}
        for lineno, d, decode_problem in json_lines(path):
            sd.lines += 1
            where = f"{name}.jsonl:{lineno}"
            problems = [("<line>", decode_problem)] if decode_problem else record_problems(d)
            if problems:
                sd.invalid += 1
                for field_name, msg in problems:
                    report.add_error(f"{where}: {field_name}: {msg}", limit)
                continue
            rec = record_from_dict(d, where=where)
            key = make_key(rec.video_id, rec.time, rec.person_id)
            if key in first_line_of_key:
                sd.invalid += 1
                report.add_error(
                    duplicate_key_message(where, key, first_line_of_key[key], lineno), limit
                )
                continue
            first_line_of_key[key] = lineno
            sd.records.append((lineno, rec))
        out.append(sd)
    return out


def _check_shared_videos(report: ValidationReport, data: list[_SplitData]) -> None:
    """Count (and warn about) video ids that occur in more than one split."""
    videos = {sd.name: {rec.video_id for _, rec in sd.records} for sd in data}
    names = list(videos)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = videos[a] & videos[b]
            report.summary["shared_videos"][f"{a}/{b}"] = len(shared)
            if shared:
                example = sorted(shared)[0]
                report.warnings.append(
                    f"video ids in both {a} and {b}: {len(shared)} (e.g. {example!r})"
                )


def _check_frames(
    report: ValidationReport,
    dataset_dir: Path,
    meta: DatasetMeta,
    data: list[_SplitData],
    window_seconds: float | None,
    deep: bool,
    limit: int | None,
) -> None:
    """Check that every frame of every keyframe's window exists (and decodes, if deep)."""
    try:
        source = open_frame_source(dataset_dir, meta)
    except RavarError as e:
        report.add_error(f"frame source: {e}", limit)
        return
    spec = meta.frame_source
    if not source.root.is_dir():
        report.add_error(
            f"{source.root}: frame root missing (dataset.json frame_source.root is {spec.root!r})",
            limit,
        )
        return
    # first (split, line) that uses each keyframe, and how many records do
    first_use: dict[tuple[str, float], tuple[str, int]] = {}
    uses: Counter[tuple[str, float]] = Counter()
    for sd in data:
        for lineno, rec in sd.records:
            kf = (rec.video_id, float(rec.time))
            first_use.setdefault(kf, (sd.name, lineno))
            uses[kf] += 1

    if window_seconds is not None:
        half: float = window_seconds / 2
        window = f"+-{half:g} s window (--window {window_seconds:g})"
    elif spec.keyframe_window is not None:
        half = spec.keyframe_window
        window = f"+-{half:g} s window (dataset.json frame_source.keyframe_window)"
    else:
        half = DEFAULT_WINDOW_SECONDS / 2
        window = f"+-{half:g} s window (the default clip's; keyframe_window is null)"
    fps_checked: set[str] = set()  # video ids whose file's fps was compared
    size_checked: set[str] = set()  # video ids whose frame size was compared (deep)
    for (vid, t), (split, lineno) in first_use.items():
        if limit is not None and report.num_errors >= limit:
            report.warnings.append(f"frame checks stopped after {limit} errors")
            return
        where = f"{split}.jsonl:{lineno}"
        users = f" (keyframe of {uses[(vid, t)]} records)" if uses[(vid, t)] > 1 else ""
        key_index = spec.frame_index(t)
        if key_index < spec.first_index:
            report.add_error(
                f"{where}: time: {t:g} s is before the first frame of video_id {vid!r} "
                f"(frame_source.time_offset is {spec.time_offset:g}){users}",
                limit,
            )
            continue
        lo = max(spec.frame_index(t - half), spec.first_index)
        hi = spec.frame_index(t + half)
        indices = list(range(lo, hi + 1))  # the window, frame numbers
        try:
            missing = source.missing(vid, indices)
        except RavarError as e:
            report.add_error(f"{where}: frames: video_id {vid!r}: {e}{users}", limit)
            continue
        if isinstance(source, VideoFileSource) and vid not in fps_checked:
            fps_checked.add(vid)
            _check_video_fps(report, source, vid)
        if missing:
            shown = ", ".join(str(p) for p in missing[:PATHS_SHOWN])
            more = ", ..." if len(missing) > PATHS_SHOWN else ""
            report.add_error(
                f"{where}: frames: video_id {vid!r} at {t:g} s: {len(missing)} of the "
                f"{len(indices)} frames of the {window} are missing "
                f"({shown}{more}){users}",
                limit,
            )
            continue
        if deep:
            _decode_window(
                report, source, meta, vid, (lo, key_index, hi), where, size_checked, limit
            )


def _check_video_fps(report: ValidationReport, source: VideoFileSource, vid: str) -> None:
    """Warn when the file of `vid` runs at another frame rate than dataset.json says."""
    if not source.video_path(vid).is_file():
        return
    reader = source.reader(vid)
    want = source.spec.fps
    if abs(reader.fps - want) > FPS_TOLERANCE * want:
        report.warnings.append(
            f"{reader.path}: {reader.fps:g} fps, but dataset.json frame_source.fps is {want:g}"
        )


def _decode_window(
    report: ValidationReport,
    source: Any,
    meta: DatasetMeta,
    vid: str,
    indices: tuple[int, int, int],
    where: str,
    size_checked: set[str],
    limit: int | None,
) -> None:
    """Decode frames `indices` (window start, keyframe, window end) one by one; warn once per
    video when their size differs from dataset.json's image_size."""
    for index in sorted(set(indices)):
        try:
            frame = source.read(vid, [index])  # [1, H, W, 3]
        except RavarError as e:
            report.add_error(f"{where}: frames: {e}", limit)
            continue
        height, width = frame.shape[1], frame.shape[2]
        if meta.image_size is not None and vid not in size_checked:
            size_checked.add(vid)
            if (width, height) != tuple(meta.image_size):
                report.warnings.append(
                    f"video_id {vid!r}: frames are {width}x{height}, dataset.json image_size "
                    f"is {meta.image_size[0]}x{meta.image_size[1]}"
                )


# ---------------------------------------------------------------------------------------------
# summary


def _mean(values: Sequence[float]) -> float | None:
    return fmean(values) if values else None


def _split_summary(sd: _SplitData) -> dict[str, Any]:
    """Sizes and distributions of the valid records of one split."""
    recs = [rec for _, rec in sd.records]
    per_keyframe = Counter((r.video_id, float(r.time)) for r in recs)
    actions = Counter(a for r in recs for a in r.actions)
    words = [len(r.text.split()) for r in recs]
    with_dets = [len(r.detections) for r in recs if r.detections is not None]
    return {
        "lines": sd.lines,
        "instances": len(recs),
        "invalid": sd.invalid,
        "keyframes": len(per_keyframe),
        "videos": len({r.video_id for r in recs}),
        "persons_per_keyframe": {
            "mean": _mean(list(per_keyframe.values())),
            "max": max(per_keyframe.values(), default=0),
            "histogram": dict(sorted(Counter(per_keyframe.values()).items())),
        },
        "actions": dict(sorted(actions.items())),
        "classes_present": len(actions),
        "actions_per_instance": _mean([len(r.actions) for r in recs]),
        "text_words": {
            "mean": _mean(words),
            "min": min(words, default=None),
            "max": max(words, default=None),
        },
        "box_area": _mean([(r.box[2] - r.box[0]) * (r.box[3] - r.box[1]) for r in recs]),
        "records_with_detections": len(with_dets),
        "detections_per_record": _mean(with_dets),
    }


# ---------------------------------------------------------------------------------------------
# text output


def _num(v: float | int | None, digits: int = 2) -> str:
    if v is None:
        return "-"
    return str(v) if isinstance(v, int) else f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned first column, right-aligned others, two spaces apart."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _format_report(report: ValidationReport, max_errors: int) -> str:
    s = report.summary
    out = []
    if report.meta is not None:
        fs = report.meta.frame_source
        out.append(
            f"dataset {report.meta.name!r} at {report.dataset_dir} "
            f"(frame source {fs.kind!r}, {fs.fps:g} fps)"
        )
    else:
        out.append(f"dataset at {report.dataset_dir}: dataset.json could not be read")
    splits = s.get("splits", {})
    if splits:
        header = [
            "split", "lines", "instances", "invalid", "keyframes", "videos",
            "persons/kf", "actions/inst", "classes", "words",
            "box area", "dets/rec",
        ]  # fmt: skip
        rows = []
        for name, sp in splits.items():
            ppk, tw = sp["persons_per_keyframe"], sp["text_words"]
            rows.append(
                [
                    name, str(sp["lines"]), str(sp["instances"]), str(sp["invalid"]),
                    str(sp["keyframes"]), str(sp["videos"]), f"{_num(ppk['mean'])}/{ppk['max']}",
                    _num(sp["actions_per_instance"]), f"{sp['classes_present']}/{NUM_CLASSES}",
                    f"{_num(tw['mean'], 1)} ({_num(tw['min'])}-{_num(tw['max'])})",
                    _num(sp["box_area"], 3), _num(sp["detections_per_record"], 1),
                ]
            )  # fmt: skip
        out.append("")
        out.extend(_table(header, rows))
        out.append("(persons/kf: mean/max per keyframe; words: mean (min-max) per text)")
        for name, sp in splits.items():
            top = sorted(sp["actions"].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ACTIONS]
            if not top:
                continue
            total = sp["instances"]
            out.append("")
            out.append(f"{name}: top {len(top)} actions (instances, share)")
            out.extend(
                f"  {aid:3d}  {action_name(int(aid)):<45} {count:8d}  {count / total:6.1%}"
                for aid, count in top
            )
    shared = {k: v for k, v in s.get("shared_videos", {}).items() if v}
    if shared:
        out.append("")
        out.append(
            "video ids shared between splits: " + ", ".join(f"{k} {v}" for k, v in shared.items())
        )
    if report.warnings:
        out.append("")
        out.append(f"{len(report.warnings)} warnings:")
        out.extend(f"  {w}" for w in report.warnings)
    out.append("")
    if report.ok:
        out.append("OK: no errors")
    else:
        out.append(f"{report.num_errors} errors:")
        shown = report.errors[: max(max_errors, 0)]
        out.extend(f"  {e}" for e in shown)
        if report.num_errors > len(shown):
            out.append(f"  ... and {report.num_errors - len(shown)} more")
    return "\n".join(out)
