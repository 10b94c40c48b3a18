"""What the detections of a split cover: counts per keyframe and the Acc@0.5 ceiling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ravar.data.format import Record
from ravar.util.box_ops import box_iou

MATCH_IOU = 0.5
PERSON = "person"


@dataclass
class SplitSummary:
    """Detections of one split: `matched` referred boxes have a person detection of their
    keyframe at IoU >= 0.5, so no model choosing among those detections can exceed
    matched / records in Acc@0.5."""

    split: str
    records: int
    keyframes: int
    detections: int  # over keyframes (each keyframe once)
    persons: int  # detections of category "person", over keyframes
    matched: int
    status: str = "detected"  # "detected", "resumed" or "skipped (...)"

    @property
    def ceiling(self) -> float:
        """Share of referred boxes matched by a person detection at IoU >= 0.5."""
        return self.matched / self.records if self.records else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ceiling": self.ceiling}

    def format(self) -> str:
        per = max(self.keyframes, 1)
        return (
            f"{self.split}: {self.keyframes} keyframes ({self.status}), "
            f"{self.detections / per:.2f} detections and {self.persons / per:.2f} persons per "
            f"keyframe; referred boxes matched by a person at IoU >= {MATCH_IOU}: "
            f"{self.matched}/{self.records} = {100 * self.ceiling:.1f}% (the Acc@0.5 ceiling)"
        )


def summarise(split: str, records: Sequence[Record], status: str = "detected") -> SplitSummary:
    """Counts of the keyframe detections of `records` (records without any count as none)."""
    keyframes: dict[tuple[str, float], int] = {}
    detections = persons = matched = 0
    for rec in records:
        dets = [d for d in rec.detections or [] if d.time is None]
        people = [d.box for d in dets if d.category == PERSON]
        key = (rec.video_id, float(rec.time))
        if key not in keyframes:
            keyframes[key] = len(dets)
            detections += len(dets)
            persons += len(people)
        if people:
            iou = box_iou(
                torch.tensor([rec.box], dtype=torch.float64),
                torch.tensor(people, dtype=torch.float64),
            )  # [1, P]
            matched += int(bool((iou >= MATCH_IOU).any()))
    return SplitSummary(split, len(records), len(keyframes), detections, persons, matched, status)
