"""Importers of released RAVAR annotations into the canonical dataset format, and what they share:
the import report, RefAVA key parsing, the AVA frame source and writing the output folder.

The importers live in their own modules: `ravar.data.importers.refava.import_refava` (RefAVA /
RefAVA++ pickles) and `ravar.data.importers.ava_csv.import_ava_csv` (AVA CSV rows plus a file of
descriptions); `ravar.data.importers.safe_pickle.safe_load_pickle` loads pickles as plain data.

Policy of both importers: a file that cannot be read at all raises. A bad entry (a key that does
not parse, an unsafe video id, a bad box, an unknown action id, an empty description) or a person
found in only some of the files is, by default, skipped and listed in the report; with
``strict=True`` any of these raises `ImportProblemsError` (naming split, file and key or line) and
nothing is written.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ravar.data.format import (
    REFAVA_KEYFRAME_WINDOW,
    DatasetMeta,
    FrameSourceSpec,
    Record,
    record_problems,
    video_id_problem,
    write_split,
)
from ravar.errors import DataFormatError
from ravar.util.text import short_repr

EXAMPLES_SHOWN = 3

# AVA: frames extracted at 30 fps as <video_id>/image_%06d.jpg, second 900 is file number 0.
AVA_FRAME_PATTERN = "{video_id}/image_{index:06d}.jpg"
AVA_FPS = 30.0
AVA_TIME_OFFSET = 900.0

_INT_RE = re.compile(r"[0-9]+")


class ImportProblemsError(DataFormatError):
    """A strict import found entries it would have skipped; `report` lists all of them."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Dropped:
    """One skipped entry: where it is (file and key or line), why (category, then detail)."""

    where: str
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class SplitReport:
    """What happened to one split: records written, persons absent from some file, entries
    skipped."""

    split: str
    sources: dict[str, str] = field(default_factory=dict)  # role -> file
    written: int = 0
    missing: dict[str, list[str]] = field(default_factory=dict)  # role -> keys absent from it
    dropped: list[Dropped] = field(default_factory=list)

    def missing_count(self, role: str) -> int:
        """How many keys present elsewhere are absent from the file of `role`."""
        return len(self.missing.get(role, []))

    def dropped_by_reason(self) -> dict[str, int]:
        """Number of skipped entries per reason, most frequent first."""
        counts: dict[str, int] = {}
        for d in self.dropped:
            counts[d.reason] = counts.get(d.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def problems(self) -> int:
        """Missing keys plus skipped entries."""
        return sum(len(v) for v in self.missing.values()) + len(self.dropped)

    def first_problem(self) -> str | None:
        """One line naming the first missing key or skipped entry, or None."""
        for role, keys in self.missing.items():
            if keys:
                src = self.sources.get(role, role)
                return f"split {self.split!r}: key {keys[0]!r} is missing from {src}"
        if self.dropped:
            return f"split {self.split!r}: {self.dropped[0]}"
        return None

    def format(self) -> str:
        """A few indented lines: records written, missing keys and skipped entries with
        examples."""
        lines = [f"split {self.split}: {self.written} records written"]
        for role, keys in self.missing.items():
            if keys:
                src = Path(self.sources.get(role, role)).name
                shown = ", ".join(keys[:EXAMPLES_SHOWN])
                lines.append(f"  missing from {src}: {len(keys)} keys (skipped), e.g. {shown}")
        if self.dropped:
            lines.append(f"  skipped {len(self.dropped)} entries:")
            for reason, n in self.dropped_by_reason().items():
                lines.append(f"    {n} x {reason}")
            for d in self.dropped[:EXAMPLES_SHOWN]:
                lines.append(f"    e.g. {d}")
        return "\n".join(lines)


@dataclass
class ImportReport:
    """Outcome of one import: per-split reports, plus entries of shared files no split used."""

    name: str
    out_dir: str
    splits: dict[str, SplitReport] = field(default_factory=dict)
    unused: dict[str, list[str]] = field(default_factory=dict)  # file -> keys no split used
    dropped: list[Dropped] = field(default_factory=list)  # skipped entries of shared files
    notes: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        """Records written over all splits."""
        return sum(s.written for s in self.splits.values())

    @property
    def problems(self) -> int:
        """Missing keys, skipped entries and unused entries, over all splits and shared files."""
        unused = sum(len(v) for v in self.unused.values())
        return sum(s.problems for s in self.splits.values()) + unused + len(self.dropped)

    @property
    def clean(self) -> bool:
        """True when nothing was missing, skipped or unused."""
        return self.problems == 0

    def first_problem(self) -> str | None:
        """One line naming the first problem (split, file, key or line), or None."""
        for s in self.splits.values():
            if (p := s.first_problem()) is not None:
                return p
        if self.dropped:
            return str(self.dropped[0])
        for src, keys in self.unused.items():
            if keys:
                return f"{src}: key {keys[0]!r} matches no annotated person in any split"
        return None

    def format(self) -> str:
        """A human-readable summary for printing."""
        lines = [f"imported {self.name!r} into {self.out_dir}: {self.written} records"]
        lines.extend(s.format() for s in self.splits.values())
        if self.dropped:
            lines.append(f"skipped {len(self.dropped)} entries of shared files:")
            lines.extend(f"  {d}" for d in self.dropped[:EXAMPLES_SHOWN])
        for src, keys in self.unused.items():
            if keys:
                shown = ", ".join(keys[:EXAMPLES_SHOWN])
                lines.append(
                    f"unused in {Path(src).name}: {len(keys)} entries match no annotated person "
                    f"in any split, e.g. {shown}"
                )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


class KeyProblem(ValueError):
    """Why a person key or id does not parse: a short `reason` (for counting) and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_time(text: str) -> int | float:
    """A keyframe time in seconds from its text ("0902" -> 902); ValueError if not one."""
    text = text.strip()
    if _INT_RE.fullmatch(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"time {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"time {text!r} is not a number of seconds >= 0")
    return int(value) if value.is_integer() else value


def parse_person_id(text: str) -> int | str:
    """A person id from its text: an integer when it is all digits, else the stripped text."""
    text = text.strip()
    if not text or any(c.isspace() or ord(c) < 32 for c in text):
        raise ValueError(f"person id {text!r} is empty or contains whitespace")
    return int(text) if _INT_RE.fullmatch(text) else text


def parse_key(key: object) -> tuple[str, int | float, int | str]:
    """(video_id, time, person_id) of a RefAVA key ``<video_id>___<second>___<person_id>``.

    Raises KeyProblem when the key does not parse or its video id is not a safe plain name
    (``../../etc`` or ``a/b`` never become a path)."""
    if not isinstance(key, str):
        raise KeyProblem("key does not parse", f"{short_repr(key)} is not a string")
    parts = key.rsplit("___", 2)
    if len(parts) != 3:
        raise KeyProblem("key does not parse", "expected <video_id>___<second>___<person_id>")
    video_id, second, person = parts
    if (p := video_id_problem(video_id)) is not None:
        raise KeyProblem("unsafe video id", p)
    try:
        time = parse_time(second)
        person_id = parse_person_id(person)
    except ValueError as e:
        raise KeyProblem("key does not parse", str(e)) from None
    return video_id, time, person_id


def record_sort_key(rec: Record) -> tuple[str, float, int, int | str]:
    """Deterministic order of records: video id, time, then person id (integers first)."""
    pid = rec.person_id
    return (rec.video_id, float(rec.time), 0 if isinstance(pid, int) else 1, pid)  # type: ignore[return-value]


def check_record(rec: Record) -> str | None:
    """The first problem of `rec` under the canonical format's rules, or None."""
    problems = record_problems(rec.to_dict())
    if not problems:
        return None
    name, msg = problems[0]
    return f"field '{name}': {msg}"


def ava_frame_source(frame_root: str | os.PathLike) -> FrameSourceSpec:
    """The AVA frame layout under `frame_root` (absolute, or relative to the dataset folder),
    with the frames of RefAVA: +-1.5 s around each keyframe."""
    return FrameSourceSpec(
        kind="frames",
        root=str(frame_root),
        pattern=AVA_FRAME_PATTERN,
        fps=AVA_FPS,
        time_offset=AVA_TIME_OFFSET,
        first_index=0,
        keyframe_window=REFAVA_KEYFRAME_WINDOW,
    )


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """`out_dir` as a Path, which must not exist yet or be an empty folder."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataFormatError(
            f"{out}: output folder exists and is not empty (choose a new folder, so that no "
            "stale split from an earlier import is mixed in)"
        )
    return out


def frame_root_note(out_dir: Path, frame_root: str | os.PathLike) -> str | None:
    """A note when the frame root does not exist (yet); frames may be extracted later."""
    root = Path(frame_root)
    resolved = root if root.is_absolute() else out_dir / root
    if not resolved.is_dir():
        return f"frame root {resolved} does not exist yet (extract AVA frames there before use)"
    return None


def finish_import(
    report: ImportReport,
    meta: DatasetMeta,
    records: dict[str, list[Record]],
    *,
    strict: bool,
) -> ImportReport:
    """Raise ImportProblemsError if `strict` and anything was skipped; else write the dataset
    folder (dataset.json and one sorted annotation file per split) and return `report`."""
    if strict and not report.clean:
        raise ImportProblemsError(
            f"strict import of {report.name!r}: {report.problems} problems, nothing written; "
            f"first: {report.first_problem()}",
            report,
        )
    out = Path(report.out_dir)
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    meta.save(out)
    for split, recs in records.items():
        write_split(out, split, sorted(recs, key=record_sort_key))
        report.splits[split].written = len(recs)
    return report
