"""`detect_dataset`: fill the keyframe detections of a dataset's records, resumably."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ravar.data.format import (
    META_FILE,
    DatasetMeta,
    Detection,
    Record,
    annotation_path,
    list_splits,
    load_meta,
    read_split,
    write_split,
)
from ravar.data.frames import open_frame_source
from ravar.detect import build_dataset_detector
from ravar.detect.base import DatasetDetector, DatasetKeyframe, KeyframeId
from ravar.detect.progress import ProgressWriter, progress_path, read_progress
from ravar.detect.summary import SplitSummary, summarise
from ravar.errors import DataFormatError, RavarError
from ravar.util.heartbeat import Heartbeat
from ravar.util.io import write_json

EXTRA_KEY = "detections"  # dataset.json extra: split -> the detector that made its detections
LOG_EVERY_S = 30.0
PROGRESS_MODES = ("auto", "bar", "lines", "off")


def keyframe_ids(records: Sequence[Record]) -> list[KeyframeId]:
    """Each (video_id, time) of `records` once, in first-seen order."""
    return list(dict.fromkeys((r.video_id, float(r.time)) for r in records))


def split_done_by(meta: DatasetMeta, split: str) -> dict[str, Any] | None:
    """What dataset.json says made the detections of `split`, or None."""
    made = meta.extra.get(EXTRA_KEY, {})
    entry = made.get(split) if isinstance(made, dict) else None
    return entry if isinstance(entry, dict) else None


def _save_meta(dataset_dir: Path, meta: DatasetMeta) -> None:
    write_json(dataset_dir / META_FILE, meta.to_dict())


class _Progress:
    """Mode "bar": a tqdm bar; "lines": a line every `every` seconds (and at the end)."""

    def __init__(self, desc: str, total: int, initial: int, mode: str, every: float) -> None:
        self.desc, self.total, self.count = desc, total, initial
        self.initial, self.mode = initial, mode
        self.heartbeat = Heartbeat(lambda line: print(line, file=sys.stderr, flush=True), every)
        bar = mode == "bar"
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="kf") if bar else None

    def _line(self) -> str:
        rate = (self.count - self.initial) / max(self.heartbeat.elapsed(), 1e-9)
        return (
            f"{self.desc}: {self.count}/{self.total} keyframes "
            f"({100 * self.count / max(self.total, 1):.0f}%), {rate:.1f} keyframes/s"
        )

    def update(self, n: int) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines":
            self.heartbeat.tick(self._line, force=self.count == self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _detect_split(
    detector: DatasetDetector,
    dataset_dir: Path,
    meta: DatasetMeta,
    split: str,
    records: list[Record],
    batch_size: int,
    progress_mode: str,
    log_every: float,
) -> tuple[dict[KeyframeId, list[Detection]], int]:
    """Detections of every keyframe of `records` (continuing a killed run), and how many
    keyframes an earlier run had finished."""
    settings = detector.describe()
    path = progress_path(dataset_dir, split)
    done = read_progress(path, settings)
    wanted = keyframe_ids(records)
    done = {k: done[k] for k in wanted if k in done}
    resumed = len(done)
    todo = [k for k in wanted if k not in done]
    source = open_frame_source(dataset_dir, meta) if detector.needs_image and todo else None
    writer = ProgressWriter(path, settings, done)
    progress = _Progress(f"detect {split}", len(wanted), resumed, progress_mode, log_every)
    try:
        for start in range(0, len(todo), batch_size):
            keys = todo[start : start + batch_size]
            batch = [
                DatasetKeyframe(
                    video_id,
                    t,
                    None
                    if source is None
                    else source.read(video_id, [meta.frame_source.frame_index(t)])[0],
                )
                for video_id, t in keys
            ]
            found = detector.detect(batch)
            if len(found) != len(keys):
                raise RavarError(f"detector returned {len(found)} lists for {len(keys)} keyframes")
            writer.add(keys, found)
            done.update(zip(keys, found, strict=True))
            progress.update(len(keys))
    finally:
        writer.close()
        progress.close()
    return done, resumed


def detect_dataset(
    dataset_dir: str | os.PathLike,
    detector: str | DatasetDetector,
    *,
    splits: Sequence[str] | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    batch_size: int = 8,
    min_score: float | None = None,
    progress: str = "auto",
    log_every: float = LOG_EVERY_S,
    say: Callable[[str], None] = print,
) -> list[SplitSummary]:
    """Give every record of `splits` (default: all) the keyframe detections of `detector` (a
    spec string, see `ravar.detect`, or a built DatasetDetector), computed once per (video_id,
    time). Finished keyframes are kept in a progress file while a split runs, so a killed run
    continues; each annotation file is replaced atomically once its split is complete, and
    dataset.json records (in `extra.detections`) which detector made it. A split already made
    by the same detector is skipped unless `overwrite`. `progress`: "bar" (tqdm), "lines" (a
    line on stderr every `log_every` seconds and at the end of a split), "off", or "auto" (a bar
    when stderr is a terminal, else lines). Returns one summary per split."""
    root = Path(dataset_dir)
    meta = load_meta(root)
    if batch_size < 1:
        raise RavarError(f"--batch-size: must be >= 1, got {batch_size}")
    names = list(splits) if splits else list_splits(root)
    if not names:
        raise DataFormatError(f"{root}: no annotation files under annotations/")
    for split in names:
        if not annotation_path(root, split).is_file():
            raise DataFormatError(
                f"--splits {split}: {annotation_path(root, split)} is missing "
                f"(splits here: {', '.join(list_splits(root)) or 'none'})"
            )
    if isinstance(detector, str):
        spec = detector
        built = build_dataset_detector(detector, root, device=device, min_score=min_score)
    else:
        spec, built = detector.describe()["kind"], detector
    settings = json.loads(json.dumps(built.describe()))
    if progress not in PROGRESS_MODES:
        raise RavarError(f"progress: must be one of {PROGRESS_MODES}, got {progress!r}")
    if progress == "auto":
        progress = "bar" if sys.stderr.isatty() else "lines"
    summaries = []
    for split in names:
        records = read_split(root, split)
        made = split_done_by(meta, split)
        complete = all(r.detections is not None for r in records)
        if not overwrite and made is not None and made.get("settings") == settings and complete:
            summaries.append(summarise(split, records, "skipped: done by this detector"))
            say(summaries[-1].format())
            continue
        found, resumed = _detect_split(
            built, root, meta, split, records, batch_size, progress, log_every
        )
        for rec in records:
            rec.detections = list(found[(rec.video_id, float(rec.time))])
        write_split(root, split, records)
        meta.extra.setdefault(EXTRA_KEY, {})[split] = {
            "detector": spec,
            "settings": settings,
            "keyframes": len(found),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _save_meta(root, meta)
        progress_path(root, split).unlink(missing_ok=True)
        status = f"resumed after {resumed}" if resumed else "detected"
        summaries.append(summarise(split, records, status))
        say(summaries[-1].format())
    for note in built.notes():
        say(f"note: {note}")
    with contextlib.suppress(OSError):  # not empty (another split is unfinished) or absent
        progress_path(root, names[0]).parent.rmdir()
    return summaries
