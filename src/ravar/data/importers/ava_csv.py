"""Import AVA-style CSV annotations plus a file of referring sentences into the canonical format.

Rows are ``video_id,second,x1,y1,x2,y2,action_id,person_id`` (no header, as AVA ships them; a
header line is tolerated), one row per (person box, action); rows of one (video_id, second,
person_id) become one multi-label record, and their boxes must agree within `BOX_TOLERANCE`.

Descriptions are a CSV with header ``video_id,second,person_id,text`` or a JSON object keyed
``<video_id>___<second>___<person_id>`` -> text; one file for all splits, or one per split.
Persons without a description and descriptions without rows are reported and skipped. See the
package docstring for what is skipped, reported or raised; every entry names its file and line
(or key).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ravar.data.format import DatasetMeta, Record, make_key, video_id_problem
from ravar.data.importers import (
    Dropped,
    ImportReport,
    KeyProblem,
    SplitReport,
    ava_frame_source,
    check_out_dir,
    check_record,
    finish_import,
    frame_root_note,
    parse_key,
    parse_person_id,
    parse_time,
)
from ravar.errors import DataFormatError
from ravar.labels import NUM_CLASSES, is_valid_action_id
from ravar.util.box_ops import box_problem
from ravar.util.io import read_json
from ravar.util.text import short_repr

ROW_COLUMNS = ("video_id", "second", "x1", "y1", "x2", "y2", "action_id", "person_id")
DESCRIPTION_COLUMNS = ("video_id", "second", "person_id", "text")
HEADER_WORDS = set(ROW_COLUMNS) | {"time", "timestamp", "entity_id", "label", "action"}
BOX_TOLERANCE = 1e-3

Ident = tuple[str, "int | float", "int | str"]
Description = tuple[str, str]  # (text, where)


class _RowProblem(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class _Person:
    """One (video_id, second, person_id) gathered from its rows."""

    ident: Ident
    box: list[float]
    where: str  # file:line of its first row
    actions: set[int] = field(default_factory=set)
    conflict: bool = False  # a later row's box disagreed: the person is skipped


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each non-blank CSV line; unreadable files raise."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                cells = [c.strip() for c in row]
                if any(cells):
                    yield reader.line_num, cells
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason})") from None
    except csv.Error as e:
        raise DataFormatError(f"{path}: not a valid CSV ({e})") from None
    except OSError as e:
        raise DataFormatError(f"{path}: cannot read ({e.strerror or e})") from None


def _is_header(cells: list[str]) -> bool:
    try:
        parse_time(cells[1] if len(cells) > 1 else "")
        return False
    except ValueError:
        return any(c.lower() in HEADER_WORDS for c in cells)


def parse_row(cells: list[str]) -> tuple[Ident, list[float], int]:
    """((video_id, second, person_id), box, action id) of one AVA CSV row; _RowProblem if bad."""
    if len(cells) != len(ROW_COLUMNS):
        raise _RowProblem(
            "wrong number of columns",
            f"expected {len(ROW_COLUMNS)} ({','.join(ROW_COLUMNS)}), got {len(cells)}",
        )
    video_id = cells[0]
    if (p := video_id_problem(video_id)) is not None:
        raise _RowProblem("unsafe video id", p)
    try:
        time = parse_time(cells[1])
    except ValueError as e:
        raise _RowProblem("bad second", str(e)) from None
    try:
        box = [float(c) for c in cells[2:6]]
    except ValueError:
        raise _RowProblem("bad box", f"not numbers: {cells[2:6]}") from None
    if (p := box_problem(box)) is not None:
        raise _RowProblem("bad box", p)
    try:
        action = int(cells[6])
    except ValueError:
        action = None
    if action is None or not is_valid_action_id(action):
        raise _RowProblem("unknown action id", f"{cells[6]!r} is not in 1..{NUM_CLASSES}")
    try:
        person_id = parse_person_id(cells[7])
    except ValueError as e:
        raise _RowProblem("bad person id", str(e)) from None
    return (video_id, time, person_id), box, action


def read_rows(path: Path, report: SplitReport) -> dict[str, _Person]:
    """Persons (key -> rows merged) of one AVA CSV; bad rows and box conflicts go to `report`."""
    persons: dict[str, _Person] = {}
    first = True
    for lineno, cells in _csv_rows(path):
        where = f"{path.name}:{lineno}"
        if first and _is_header(cells):
            first = False
            continue
        first = False
        try:
            ident, box, action = parse_row(cells)
        except _RowProblem as e:
            report.dropped.append(Dropped(where, e.reason, e.detail))
            continue
        key = make_key(*ident)
        person = persons.get(key)
        if person is None:
            persons[key] = _Person(ident, box, where, {action})
            continue
        if person.conflict:
            continue
        diff = max(abs(a - b) for a, b in zip(box, person.box, strict=True))
        if diff > BOX_TOLERANCE:
            person.conflict = True
            report.dropped.append(
                Dropped(
                    where,
                    "boxes of one person disagree",
                    f"{key}: box {box} differs from {person.box} of {person.where} by {diff:.4g}",
                )
            )
            continue
        person.actions.add(action)
    return persons


def _add_description(
    out: dict[str, Description | None], key: str, text: str, where: str, dropped: list[Dropped]
) -> None:
    """Store one description; a second, different one for the same person voids both."""
    if key not in out:
        out[key] = (text, where)
        return
    previous = out[key]
    if previous is not None and previous[0] == text:
        return
    out[key] = None
    first = f"{previous[1]}" if previous is not None else "an earlier entry"
    dropped.append(Dropped(where, "repeated description", f"{key} differs from {first}"))


def _read_description_csv(path: Path, dropped: list[Dropped]) -> dict[str, Description | None]:
    out: dict[str, Description | None] = {}
    rows = _csv_rows(path)
    header = next(rows, None)
    if header is None:
        raise DataFormatError(f"{path}: empty (expected a header {','.join(DESCRIPTION_COLUMNS)})")
    columns = [c.lower() for c in header[1]]
    absent = [c for c in DESCRIPTION_COLUMNS if c not in columns]
    if absent:
        raise DataFormatError(
            f"{path}:{header[0]}: header lacks columns {absent} "
            f"(expected {','.join(DESCRIPTION_COLUMNS)})"
        )
    pos = {c: columns.index(c) for c in DESCRIPTION_COLUMNS}
    for lineno, cells in rows:
        where = f"{path.name}:{lineno}"
        if len(cells) != len(columns):
            dropped.append(
                Dropped(
                    where,
                    "wrong number of columns",
                    f"expected {len(columns)}, got {len(cells)} (quote texts with commas)",
                )
            )
            continue
        video_id = cells[pos["video_id"]]
        if (p := video_id_problem(video_id)) is not None:
            dropped.append(Dropped(where, "unsafe video id", p))
            continue
        try:
            time = parse_time(cells[pos["second"]])
            person_id = parse_person_id(cells[pos["person_id"]])
        except ValueError as e:
            dropped.append(Dropped(where, "bad key", str(e)))
            continue
        key = make_key(video_id, time, person_id)
        _add_description(out, key, cells[pos["text"]], where, dropped)
    return out


def _read_description_json(path: Path, dropped: list[Dropped]) -> dict[str, Description | None]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(
            f"{path}: expected a JSON object '<video_id>___<second>___<person_id>' -> text, "
            f"got {type(data).__name__}"
        )
    out: dict[str, Description | None] = {}
    for raw, text in data.items():
        where = f"{path.name}: key {raw!r}"
        try:
            key = make_key(*parse_key(raw))
        except KeyProblem as e:
            dropped.append(Dropped(where, e.reason, e.detail))
            continue
        if not isinstance(text, str):
            got = f"expected text, got {short_repr(text)}"
            dropped.append(Dropped(where, "bad description value", got))
            continue
        _add_description(out, key, text.strip(), where, dropped)
    return out


def read_descriptions(path: Path, dropped: list[Dropped]) -> dict[str, Description | None]:
    """Key -> (text, where) from a descriptions CSV or JSON file; a key whose descriptions
    disagree maps to None. Bad entries are appended to `dropped`."""
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file (the descriptions)")
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if path.suffix.lower() == ".json" or head.startswith(b"{"):
        return _read_description_json(path, dropped)
    return _read_description_csv(path, dropped)


def _join_split(
    persons: dict[str, _Person],
    descriptions: dict[str, Description | None],
    report: SplitReport,
) -> list[Record]:
    """Records of persons that have a description; persons without one are reported missing."""
    records = []
    without = []
    for key, person in persons.items():
        if person.conflict:
            continue
        if key not in descriptions:
            without.append(key)
            continue
        desc = descriptions[key]
        if desc is None:  # contradictory descriptions, already reported
            continue
        text, where = desc
        if not text.strip():
            report.dropped.append(Dropped(where, "empty description", key))
            continue
        video_id, time, person_id = person.ident
        rec = Record(video_id, time, person_id, text.strip(), person.box, sorted(person.actions))
        if (p := check_record(rec)) is not None:
            report.dropped.append(Dropped(person.where, "invalid", p))
            continue
        records.append(rec)
    if without:
        report.missing["description"] = sorted(without)
    return records


def _as_paths(
    split_csvs: Mapping[str, str | os.PathLike],
    descriptions: str | os.PathLike | Mapping[str, str | os.PathLike],
) -> tuple[dict[str, Path], Path | dict[str, Path]]:
    if not split_csvs:
        raise DataFormatError("split_csvs: give at least one split NAME -> CSV file")
    csvs = {}
    for split, path in split_csvs.items():
        if video_id_problem(split) is not None:
            raise DataFormatError(f"split_csvs: {split!r} is not a plain split name")
        csvs[split] = Path(path)
        if not csvs[split].is_file():
            raise DataFormatError(f"{path}: no such file (the CSV of split {split!r})")
    if not isinstance(descriptions, Mapping):
        return csvs, Path(descriptions)
    if set(descriptions) != set(csvs):
        raise DataFormatError(
            f"descriptions: per-split files must name the same splits as the CSVs "
            f"({sorted(csvs)}), got {sorted(descriptions)}"
        )
    return csvs, {split: Path(p) for split, p in descriptions.items()}


def import_ava_csv(
    split_csvs: Mapping[str, str | os.PathLike],
    descriptions: str | os.PathLike | Mapping[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    frame_root: str | os.PathLike,
    name: str = "ava",
    strict: bool = False,
) -> ImportReport:
    """Convert AVA CSVs (split name -> file) and their descriptions (one file, or split name ->
    file) into a canonical dataset folder `out_dir` (new or empty) whose frames are AVA frames
    under `frame_root` (absolute, or relative to `out_dir`).

    Bad rows, persons without a description and descriptions without rows are skipped and
    reported; with `strict` they raise ImportProblemsError and nothing is written.
    """
    csvs, desc_paths = _as_paths(split_csvs, descriptions)
    out = check_out_dir(out_dir)
    report = ImportReport(name=name, out_dir=str(out))
    shared = None
    if isinstance(desc_paths, Path):
        shared = read_descriptions(desc_paths, report.dropped)
    records: dict[str, list[Record]] = {}
    seen: set[str] = set()  # every person key found in the rows of any split
    for split, csv_path in csvs.items():
        desc_path = desc_paths if isinstance(desc_paths, Path) else desc_paths[split]
        split_report = SplitReport(
            split, sources={"rows": str(csv_path), "description": str(desc_path)}
        )
        report.splits[split] = split_report
        persons = read_rows(csv_path, split_report)
        seen.update(persons)
        if shared is not None:
            descs = shared
        else:
            descs = read_descriptions(desc_path, split_report.dropped)
            unused = sorted(k for k in descs if k not in persons)
            if unused:
                split_report.missing["rows"] = unused
        records[split] = _join_split(persons, descs, split_report)
    if shared is not None:
        unused = sorted(k for k in shared if k not in seen)
        if unused:
            report.unused[str(desc_paths)] = unused
    if (note := frame_root_note(out, frame_root)) is not None:
        report.notes.append(note)
    meta = DatasetMeta(
        name=name,
        frame_source=ava_frame_source(frame_root),
        description="imported from AVA CSV rows and referring descriptions",
        extra={"imported_from": {split: str(p.resolve()) for split, p in csvs.items()}},
    )
    return finish_import(report, meta, records, strict=strict)
