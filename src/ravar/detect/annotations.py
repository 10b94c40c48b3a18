"""The `annotations` detector: every annotated person of a keyframe, as AVA annotates them all."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ravar.data.format import Detection, Record, list_splits, read_split
from ravar.data.importers import record_sort_key
from ravar.detect.base import DatasetDetector, DatasetKeyframe, KeyframeId

BOX_DIGITS = 6  # boxes equal to this many decimals are one person


def annotated_persons(records: Sequence[Record]) -> dict[KeyframeId, list[Detection]]:
    """(video_id, time) -> one "person" detection (score 1) per annotated person there.

    A person annotated several times (several sentences, or in several splits) counts once:
    records are deduplicated by person id, then by box. Persons are in person-id order."""
    persons: dict[KeyframeId, dict[Any, Record]] = {}
    for rec in sorted(records, key=record_sort_key):
        persons.setdefault((rec.video_id, float(rec.time)), {}).setdefault(rec.person_id, rec)
    out: dict[KeyframeId, list[Detection]] = {}
    for key, by_id in persons.items():
        seen: set[tuple[float, ...]] = set()
        dets = []
        for rec in by_id.values():
            box = tuple(round(v, BOX_DIGITS) for v in rec.box)
            if box not in seen:
                seen.add(box)
                dets.append(Detection(box=list(rec.box), category="person", score=1.0))
        out[key] = dets
    return out


class AnnotationDetector(DatasetDetector):
    """Keyframe detections from the dataset's own annotations: every person annotated at the same
    video and time in any split of the dataset (the usual training-time boxes on AVA, where every
    person of a keyframe is annotated)."""

    def __init__(self, dataset_dir: str | os.PathLike) -> None:
        self.dataset_dir = Path(dataset_dir)
        self.splits = list_splits(self.dataset_dir)
        records = [rec for split in self.splits for rec in read_split(self.dataset_dir, split)]
        self.persons = annotated_persons(records)

    def describe(self) -> dict[str, Any]:
        return {"kind": "annotations", "splits": list(self.splits)}

    def detect(self, keyframes: Sequence[DatasetKeyframe]) -> list[list[Detection]]:
        return [list(self.persons.get(k.id, [])) for k in keyframes]
