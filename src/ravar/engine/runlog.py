"""A run's `metrics.jsonl`: one JSON line per epoch (epoch, step, train loss parts, val metrics,
learning rate, time)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ravar.metrics import metrics_to_json
from ravar.util.io import atomic_write_text, json_line

METRICS_LOG = "metrics.jsonl"


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete line of a metrics log (a torn last line, from a kill, is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def append_log(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one line (NaN written as null) and flush it to disk."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json_line(metrics_to_json(row)))
        f.flush()
        os.fsync(f.fileno())


def truncate_log(path: str | os.PathLike, last_epoch: int) -> list[dict[str, Any]]:
    """Keep only the lines of epochs <= `last_epoch` (resuming from that epoch); returns them."""
    rows = [r for r in read_log(path) if int(r.get("epoch", 0)) <= last_epoch]
    path = Path(path)
    if path.exists() or rows:
        atomic_write_text(path, "".join(json_line(r) for r in rows))
    return rows
