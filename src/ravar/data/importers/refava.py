"""Import RefAVA / RefAVA++ annotations (three pickles per split) into the canonical format.

Each split is released as three dicts keyed ``<video_id>___<second>___<person_id>``: the keyframe
box at ``value[0][:4]``, the AVA action ids (a list or array of 1..80), and the referring sentence
at ``value[0]``. File names: RefAVA++ ``{split}_keyframe.pkl``, ``{split}_label.pkl``,
``{split}_description.pkl``; RefAVA ``{split}_set_keyframe_crr_final.pkl`` and so on.

The dicts are joined by key (after normalising the key, so "0902" meets "902"), never by their
order. Pickles are loaded with `safe_load_pickle`, so a crafted file cannot run code. See the
package docstring for what is skipped, reported or raised.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ravar.data.format import STANDARD_SPLITS, DatasetMeta, Record, make_key, video_id_problem
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
)
from ravar.data.importers.safe_pickle import PickleLimits, safe_load_pickle
from ravar.errors import DataFormatError
from ravar.labels import is_valid_action_id
from ravar.util.box_ops import box_problem
from ravar.util.text import short_repr

ROLES = ("keyframe", "label", "description")
FILE_STYLES = {
    "RefAVA++": "{split}_{role}.pkl",
    "RefAVA": "{split}_set_{role}_crr_final.pkl",
}

Ident = tuple[str, "int | float", "int | str"]


class _BadValue(Exception):
    """A pickle value that cannot become a record field: a reason and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def split_files(src_dir: Path, split: str) -> tuple[str, dict[str, Path]]:
    """(file style, role -> path) of one split's three pickles in `src_dir`; DataFormatError
    naming the expected files when they are absent, incomplete or present in both styles."""
    found: dict[str, dict[str, Path]] = {}
    for style, pattern in FILE_STYLES.items():
        paths = {role: src_dir / pattern.format(split=split, role=role) for role in ROLES}
        if any(p.is_file() for p in paths.values()):
            found[style] = paths
    if not found:
        expected = " or ".join(
            ", ".join(pattern.format(split=split, role=r) for r in ROLES)
            for pattern in FILE_STYLES.values()
        )
        raise DataFormatError(
            f"{src_dir}: no files for split {split!r} (expected {expected}); "
            "choose the splits you have with splits= / --splits"
        )
    if len(found) > 1:
        names = [p.name for paths in found.values() for p in paths.values() if p.is_file()]
        raise DataFormatError(
            f"{src_dir}: split {split!r} has files in both the RefAVA++ and RefAVA naming "
            f"({', '.join(names)}); keep one set"
        )
    style, paths = next(iter(found.items()))
    absent = [p.name for p in paths.values() if not p.is_file()]
    if absent:
        raise DataFormatError(
            f"{src_dir}: split {split!r} ({style} naming) lacks {', '.join(absent)}"
        )
    return style, paths


def _load_dict(path: Path, limits: PickleLimits | None) -> dict[Any, Any]:
    data = safe_load_pickle(path, limits)
    if not isinstance(data, dict):
        raise DataFormatError(
            f"{path}: expected a dict keyed '<video_id>___<second>___<person_id>', "
            f"got {type(data).__name__}"
        )
    return data


def _number(v: Any) -> float | None:
    if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
        return float(v)
    return None


def box_from_value(value: Any) -> list[float]:
    """The keyframe box ``value[0][:4]`` as floats; _BadValue if it is not a valid box."""
    try:
        first = value[0]
        if isinstance(first, (str, bytes)) or isinstance(value, (str, bytes, dict)):
            raise TypeError
        raw = list(first[:4])
    except (TypeError, IndexError, KeyError):
        raise _BadValue(
            "bad keyframe value", f"expected [[x1, y1, x2, y2, ...], ...], got {short_repr(value)}"
        ) from None
    box = [_number(v) for v in raw]
    if len(box) != 4 or any(v is None for v in box):
        raise _BadValue("bad box", f"expected 4 numbers, got {short_repr(raw)}")
    if (p := box_problem(box)) is not None:
        raise _BadValue("bad box", p)
    return box  # type: ignore[return-value]


def actions_from_value(value: Any) -> list[int]:
    """Sorted distinct AVA ids of a label value (list, tuple or 1-D array of ids 1..80)."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        items = value.tolist()
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise _BadValue("bad label value", f"expected a list of AVA ids, got {short_repr(value)}")
    ids: list[int] = []
    for a in items:
        num = _number(a)
        if num is None or not num.is_integer() or not is_valid_action_id(int(num)):
            raise _BadValue("unknown action id", f"{short_repr(a)} is not an AVA v2.2 id (1..80)")
        ids.append(int(num))
    if not ids:
        raise _BadValue("no actions", "empty label list")
    return sorted(set(ids))


def text_from_value(value: Any) -> str:
    """The referring sentence at ``value[0]`` (or the value itself when it is a string)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = value[0]
        except (TypeError, IndexError, KeyError):
            text = None
        if not isinstance(text, str):
            raise _BadValue(
                "bad description value", f"expected [sentence, ...], got {short_repr(value)}"
            )
    text = str(text).strip()
    if not text:
        raise _BadValue("empty description", "the sentence is empty")
    return text


_EXTRACTORS = {
    "keyframe": box_from_value,
    "label": actions_from_value,
    "description": text_from_value,
}


def _index_dict(
    data: dict[Any, Any], path: Path, bad_keys: dict[str, tuple[list[str], KeyProblem]]
) -> dict[str, tuple[Ident, str, Any]]:
    """Normalised key -> (identity, key as written, value); keys that do not parse are added to
    `bad_keys` (key -> files, problem) instead."""
    out: dict[str, tuple[Ident, str, Any]] = {}
    for raw, value in data.items():
        try:
            ident = parse_key(raw)
        except KeyProblem as e:
            files, _ = bad_keys.setdefault(short_repr(raw), ([], e))
            files.append(path.name)
            continue
        key = make_key(*ident)
        if key in out:  # e.g. "v___0902___1" and "v___902___1": which one is meant is unknown
            first, second = short_repr(out[key][1]), short_repr(raw)
            raise DataFormatError(f"{path}: keys {first} and {second} name the same person")
        out[key] = (ident, raw, value)
    return out


def _import_split(
    paths: dict[str, Path], report: SplitReport, limits: PickleLimits | None = None
) -> list[Record]:
    """Records of one split, joined by key; every skipped entry is added to `report`."""
    bad_keys: dict[str, tuple[list[str], KeyProblem]] = {}
    index = {
        role: _index_dict(_load_dict(paths[role], limits), paths[role], bad_keys) for role in ROLES
    }
    for raw, (files, problem) in bad_keys.items():
        report.dropped.append(
            Dropped(f"{', '.join(files)}: key {raw}", problem.reason, problem.detail)
        )
    everyone: dict[str, str] = {}  # normalised key -> key as first written
    for role in ROLES:
        for key, (_, raw, _) in index[role].items():
            everyone.setdefault(key, raw)
    for role in ROLES:
        absent = sorted(raw for key, raw in everyone.items() if key not in index[role])
        if absent:
            report.missing[role] = absent
    records = []
    for key, raw in everyone.items():
        if not all(key in index[role] for role in ROLES):
            continue
        fields: dict[str, Any] = {}
        for role, extract in _EXTRACTORS.items():
            try:
                fields[role] = extract(index[role][key][2])
            except _BadValue as e:
                where = f"{paths[role].name}: key {index[role][key][1]!r}"
                report.dropped.append(Dropped(where, e.reason, e.detail))
                break
        if len(fields) != len(ROLES):
            continue
        video_id, time, person_id = index["keyframe"][key][0]
        rec = Record(
            video_id,
            time,
            person_id,
            text=fields["description"],
            box=fields["keyframe"],
            actions=fields["label"],
        )
        if (p := check_record(rec)) is not None:
            report.dropped.append(Dropped(f"{paths['keyframe'].name}: key {raw!r}", "invalid", p))
            continue
        records.append(rec)
    return records


def import_refava(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    frame_root: str | os.PathLike,
    splits: Sequence[str] = STANDARD_SPLITS,
    name: str = "refava",
    strict: bool = False,
    limits: PickleLimits | None = None,
) -> ImportReport:
    """Convert the RefAVA / RefAVA++ pickles of `splits` in `src_dir` into a canonical dataset
    folder `out_dir` (which must be new or empty) whose frames are AVA frames under `frame_root`
    (absolute, or relative to `out_dir`).

    Persons absent from some of the three files and bad entries are skipped and reported; with
    `strict` they raise ImportProblemsError and nothing is written. A pickle asking for more
    than `limits` (default `PickleLimits()`: objects, nesting depth, array sizes, entries)
    raises PickleLimitError naming the file and the limit.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise DataFormatError(f"{src}: not a directory (expected the RefAVA pickles there)")
    splits = list(splits)
    if not splits:
        raise DataFormatError("splits: choose at least one split")
    for split in splits:
        if video_id_problem(split) is not None:
            raise DataFormatError(f"splits: {split!r} is not a plain split name")
    if len(set(splits)) != len(splits):
        raise DataFormatError(f"splits: repeated split names in {splits}")
    out = check_out_dir(out_dir)
    report = ImportReport(name=name, out_dir=str(out))
    records: dict[str, list[Record]] = {}
    styles: dict[str, str] = {}
    for split in splits:
        styles[split], paths = split_files(src, split)
        report.splits[split] = SplitReport(
            split, sources={role: str(p) for role, p in paths.items()}
        )
        records[split] = _import_split(paths, report.splits[split], limits)
    if (note := frame_root_note(out, frame_root)) is not None:
        report.notes.append(note)
    meta = DatasetMeta(
        name=name,
        frame_source=ava_frame_source(frame_root),
        description=f"imported from {'/'.join(sorted(set(styles.values())))} pickles",
        extra={"imported_from": str(src.resolve()), "file_style": styles},
    )
    return finish_import(report, meta, records, strict=strict)
