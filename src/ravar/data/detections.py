"""Whether a split carries keyframe detections, and the refusal when a model needs them."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ravar.data.format import Record
from ravar.errors import RavarError


class MissingDetectionsError(RavarError):
    """A model with a location stream was given a split whose records have no detections."""


def has_detections(records: Sequence[Record]) -> bool:
    """True when at least one record carries a `detections` key (possibly an empty list)."""
    return any(rec.detections is not None for rec in records)


def require_detections(
    dataset_dir: str | os.PathLike,
    split: str,
    records: Sequence[Record],
    *,
    needs: bool,
    allow_missing: bool = False,
    override: str = "train.allow_missing_detections=true",
) -> None:
    """Refuse (one line naming the split and the fix) a model that `needs` detections on a
    split with none, unless `allow_missing`; `override` names the switch that allows it."""
    if not needs or allow_missing or not records or has_detections(records):
        return
    raise MissingDetectionsError(
        f"split {split!r} of {dataset_dir} has no detections and this model reads them (its "
        f"location stream would see no one): run `ravar data detect {dataset_dir} --detector "
        f"annotations --splits {split}` (or another detector), or pass {override} to go on "
        "without them"
    )
