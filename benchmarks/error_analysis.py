"""Where a model's misses are: Acc@0.5 grouped by kind of referring expression, by people in the
clip and by detection quality, and AP per action class.

    python benchmarks/error_analysis.py --data DIR --predictions PRED.jsonl --split test \
        [--md OUT.md]

PRED.jsonl is a `predictions.jsonl` of `ravar eval` or a run's `test_predictions.jsonl` (one line
per instance with `key`, `box` and `probs`). Predictions are joined with the records of
`DIR/annotations/<split>.jsonl` by key and, on RefAVA-Synth, with the scene lines of
`DIR/synth/<split>.jsonl` (the query the generator wrote for each target). Without the scene file
the expression and people tables are left out. Prints markdown tables, each row with its n.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ravar.data.format import Record, read_split
from ravar.errors import RavarError
from ravar.labels import NUM_CLASSES, action_name
from ravar.metrics import compute_metrics
from ravar.synth import vocab as V
from ravar.synth.referring import ATTR_KEYS
from ravar.util.box_ops import box_iou

IOU_BINS = ((0.0, 0.5, "< 0.5"), (0.5, 0.7, "0.5 - 0.7"), (0.7, 1.01, ">= 0.7"))
PICK_RIGHT = "a detection of the referred person"
PICK_OTHER = "a detection of another person"
PICK_STRAY = "a detection matching no annotated person"
PICK_NONE = "no detection (IoU < 0.5 with all)"


@dataclass
class Instance:
    """One prediction joined with its record and (on RefAVA-Synth) its scene."""

    record: Record
    pred_box: list[float]
    probs: list[float]
    people: list[dict] | None = None  # synth scene people, None off RefAVA-Synth
    query: dict | None = None
    others: list[list[float]] = field(default_factory=list)  # other annotated boxes, same frame


@dataclass
class Table:
    """A grouped result: rows of (label, n, Acc@0.5, mIoU) or, for actions, (label, n, AP)."""

    title: str
    note: str
    header: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def read_predictions(path: Path) -> dict[str, dict]:
    """Prediction rows by key; bad lines raise one RavarError naming the file and line."""
    if not path.is_file():
        raise RavarError(f"--predictions: {path} does not exist")
    out: dict[str, dict] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise RavarError(f"{path}:{n}: not JSON ({e.msg})") from e
        missing = [k for k in ("key", "box", "probs") if not isinstance(row, dict) or k not in row]
        if missing:
            raise RavarError(f"{path}:{n}: missing {', '.join(missing)}")
        if len(row["box"]) != 4 or len(row["probs"]) != NUM_CLASSES:
            raise RavarError(f"{path}:{n}: box needs 4 numbers and probs {NUM_CLASSES}")
        out[row["key"]] = row
    if not out:
        raise RavarError(f"{path}: no predictions")
    return out


def read_scenes(data: Path, split: str) -> dict[str, dict] | None:
    """RefAVA-Synth scene lines by video id, or None when the dataset has none."""
    path = data / "synth" / f"{split}.jsonl"
    if not path.is_file():
        return None
    scenes = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            scene = json.loads(line)
            scenes[scene["video_id"]] = scene
    return scenes


def join(data: Path, predictions: Path, split: str) -> list[Instance]:
    """Every prediction with its record, other annotated boxes of its frame and its scene."""
    preds = read_predictions(predictions)
    records = {r.key: r for r in read_split(data, split)}
    unknown = sorted(set(preds) - set(records))
    if unknown:
        raise RavarError(
            f"{predictions}: {len(unknown)} keys not in split {split!r} of {data} "
            f"(first: {unknown[0]})"
        )
    frames: dict[tuple[str, float], list[Record]] = {}
    for r in records.values():
        frames.setdefault((r.video_id, r.time), []).append(r)
    scenes = read_scenes(data, split)
    out = []
    for key, row in preds.items():
        rec = records[key]
        inst = Instance(rec, [float(v) for v in row["box"]], [float(p) for p in row["probs"]])
        if scenes is not None:
            scene = scenes.get(rec.video_id)
            if scene is None:
                raise RavarError(f"{data}/synth/{split}.jsonl: no scene for {rec.video_id!r}")
            inst.people = scene["people"]
            targets = {t["person_id"]: t for t in scene["targets"]}
            if rec.person_id not in targets:
                raise RavarError(
                    f"{data}/synth/{split}.jsonl: {rec.video_id!r} has no target {rec.person_id!r}"
                )
            inst.query = targets[rec.person_id]["query"]
            inst.others = [p["box"] for p in scene["people"] if p["person_id"] != rec.person_id]
        else:
            frame = frames[(rec.video_id, rec.time)]
            inst.others = [r.box for r in frame if r.person_id != rec.person_id]
        out.append(inst)
    return out


def _iou(a: list[list[float]], b: list[list[float]]) -> np.ndarray:
    """[len(a), len(b)] IoU of xyxy boxes."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return box_iou(
        torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    ).numpy()


def keyframe_people(rec: Record) -> list[list[float]]:
    """Boxes of the record's person detections on the keyframe."""
    dets = rec.detections or []
    return [d.box for d in dets if d.time is None and d.category == "person"]


def detection_bin(inst: Instance) -> str:
    """IoU bin of the best keyframe person detection with the true box."""
    dets = keyframe_people(inst.record)
    if not dets:
        return "no person detection"
    best = float(_iou(dets, [inst.record.box]).max())
    return next(label for lo, hi, label in IOU_BINS if lo <= best < hi)


def picked_from(inst: Instance) -> str:
    """Which person the detection nearest to the predicted box belongs to."""
    dets = keyframe_people(inst.record)
    near = _iou([inst.pred_box], dets)[0] if dets else np.zeros(0)  # [D]
    if not len(near) or near.max() < 0.5:
        return PICK_NONE
    det = dets[int(near.argmax())]
    people = [inst.record.box, *inst.others]
    owner = _iou([det], people)[0]  # [P], the referred person first
    if owner.max() < 0.5:
        return PICK_STRAY
    return PICK_RIGHT if int(owner.argmax()) == 0 else PICK_OTHER


_NOVEL = [re.compile(rf"\b{re.escape(p)}\b") for p in sorted(V.novel_phrases())]


def has_novel_phrase(text: str) -> bool:
    """Whether the sentence uses a held-out synonym (only test_novel's do)."""
    return any(p.search(text.lower()) for p in _NOVEL)


def expression_style(q: dict) -> str:
    """'position', 'relation' or 'attributes only'."""
    if q.get("relation") is not None:
        return "relation"
    if q.get("position") is not None:
        return "position"
    return "attributes only"


def _box_table(
    title: str, note: str, instances: list[Instance], keys: Callable[[Instance], list[str]]
) -> Table:
    """Acc@0.5 and mIoU (ravar.metrics) per group; an instance may fall in several groups."""
    groups: dict[str, list[Instance]] = {}
    for inst in instances:
        for k in keys(inst):
            groups.setdefault(k, []).append(inst)
    rows = []
    for label, members in groups.items():
        m = compute_metrics(
            np.array([i.pred_box for i in members]), np.array([i.record.box for i in members]),
            None, None,
        )  # fmt: skip
        rows.append((label, m["n"], m["Acc@0.5"], m["mIoU"]))
    return Table(title, note, ("group", "n", "Acc@0.5", "mIoU"), rows)


def _sorted_rows(table: Table, order: list[str] | None = None) -> Table:
    """Rows in `order` (labels listed), else by label."""
    if order is not None:
        rank = {k: i for i, k in enumerate(order)}
        table.rows.sort(key=lambda r: rank.get(r[0], len(rank)))
    else:
        table.rows.sort(key=lambda r: r[0])
    return table


def is_hit(inst: Instance) -> bool:
    """Whether the predicted box has IoU >= 0.5 with the true box."""
    return bool(_iou([inst.pred_box], [inst.record.box])[0, 0] >= 0.5)


def action_table(instances: list[Instance], title: str = "AP per action class") -> Table:
    """AP per action class (ravar.metrics), highest first, with positives per class."""
    scores = np.array([i.probs for i in instances])  # [N, C]
    labels = np.zeros_like(scores)  # [N, C]
    for n, inst in enumerate(instances):
        labels[n, [a - 1 for a in inst.record.actions]] = 1.0
    m = compute_metrics(None, None, scores, labels)
    support = labels.sum(axis=0)
    rows = [
        (f"{c} {action_name(c)}", int(support[c - 1]), ap)
        for c, ap in sorted(m["per_class_AP"].items(), key=lambda kv: -kv[1])
    ]
    note = (
        f"mAP (w) {100 * m['mAP_weighted']:.2f}, mAP (macro) {100 * m['mAP_macro']:.2f} over "
        f"{m['ap_classes']} classes with a positive; n = positives of the class"
    )
    return Table(title, note, ("action", "n", "AP"), rows)


def analyse(data: Path, predictions: Path, split: str) -> list[Table]:
    """All tables for one predictions file."""
    inst = join(data, predictions, split)
    tables = [_box_table("All", "", inst, lambda i: ["all"])]
    synth = [i for i in inst if i.query is not None]
    if synth:
        tables.append(
            _sorted_rows(
                _box_table("Expression kind", "", synth, lambda i: [expression_style(i.query)]),
                ["attributes only", "position", "relation"],
            )
        )
        tables.append(
            _sorted_rows(
                _box_table(
                    "Attribute keys, attribute-only expressions",
                    "an expression with several keys counts in each of their rows",
                    [i for i in synth if expression_style(i.query) == "attributes only"],
                    lambda i: sorted(i.query["attrs"]),
                ),
                list(ATTR_KEYS),
            )
        )
        tables.append(
            _sorted_rows(
                _box_table(
                    "Attribute keys, all expressions",
                    "keys of the target's own attributes (not the relation's anchor); "
                    "an expression counts in each of its keys' rows",
                    synth,
                    lambda i: sorted(i.query["attrs"]) or ["(none)"],
                ),
                [*ATTR_KEYS, "(none)"],
            )
        )
        tables.append(
            _sorted_rows(
                _box_table(
                    "Number of target attributes",
                    "",
                    synth,
                    lambda i: [str(len(i.query["attrs"]))],
                )  # fmt: skip
            )
        )
        tables.append(
            _sorted_rows(
                _box_table(
                    "Position word",
                    "position expressions",
                    [i for i in synth if i.query["position"]],
                    lambda i: [i.query["position"]],
                )  # fmt: skip
            )
        )
        tables.append(
            _sorted_rows(
                _box_table(
                    "Relation",
                    "relation expressions",
                    [i for i in synth if i.query["relation"]],
                    lambda i: [i.query["relation"]["type"]],
                )  # fmt: skip
            )
        )
        tables.append(
            _sorted_rows(
                _box_table(
                    "Held-out synonym in the sentence",
                    "",
                    synth,
                    lambda i: ["yes" if has_novel_phrase(i.record.text) else "no"],
                ),  # fmt: skip
                ["no", "yes"],
            )
        )
        tables.append(
            _sorted_rows(
                _box_table(
                    "People in the clip", "", synth, lambda i: [f"{len(i.people or []):02d}"]
                )
            )
        )
    tables.append(
        _sorted_rows(
            _box_table(
                "Best keyframe person detection, IoU with the true box",
                "the Acc@0.5 ceiling is the share of rows from 0.5 up",
                inst,
                lambda i: [detection_bin(i)],
            ),
            ["no person detection", *(b[2] for b in IOU_BINS)],
        )
    )
    tables.append(
        _sorted_rows(
            _box_table(
                "Where the predicted box came from",
                "the keyframe person detection nearest the predicted box (IoU >= 0.5), "
                "assigned to the annotated person it overlaps most (IoU >= 0.5)",
                inst,
                lambda i: [picked_from(i)],
            ),
            [PICK_RIGHT, PICK_OTHER, PICK_STRAY, PICK_NONE],
        )
    )
    tables.append(action_table(inst))
    hits = [i for i in inst if is_hit(i)]
    if hits and len(hits) < len(inst):
        tables.append(action_table(hits, "AP per action class, instances with the right box"))
    return tables


def _fmt(v: Any) -> str:
    return f"{100 * v:.1f}" if isinstance(v, float) else str(v)


def to_markdown(tables: list[Table]) -> str:
    """Tables as markdown, a heading each."""
    parts = []
    for t in tables:
        lines = [f"### {t.title}", ""]
        if t.note:
            lines += [f"({t.note})", ""]
        lines.append("| " + " | ".join(t.header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(t.header) - 1)) + "|")
        lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in t.rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="dataset folder")
    ap.add_argument("--predictions", type=Path, required=True, help="predictions .jsonl")
    ap.add_argument("--split", default="test")
    ap.add_argument("--md", type=Path, help="also write the tables to this file")
    args = ap.parse_args(argv)
    try:
        text = to_markdown(analyse(args.data, args.predictions, args.split))
    except RavarError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.md:
        args.md.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
