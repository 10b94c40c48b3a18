"""The error-analysis script: grouped Acc@0.5 against a hand count on a tiny RefAVA-Synth split."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from ravar.errors import RavarError
from ravar.synth.generate import generate

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "error_analysis.py"
FAR = [0.0, 0.0, 0.02, 0.02]  # a box that overlaps no person


def _module():
    spec = importlib.util.spec_from_file_location("error_analysis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["error_analysis"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, preset="small", seed=0, splits=("val",), with_card=False)
    return out


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _write_predictions(data: Path, path: Path) -> list[tuple[dict, bool]]:
    """Every third record missed (a far box), the rest hit (the true box); returns (record, hit)."""
    out = []
    with open(path, "w") as f:
        for n, rec in enumerate(_lines(data / "annotations" / "val.jsonl")):
            hit = n % 3 != 0
            key = f"{rec['video_id']}___{rec['time']}___{rec['person_id']}"
            probs = [0.9 if c + 1 in rec["actions"] else 0.1 for c in range(80)]
            f.write(json.dumps({"key": key, "box": rec["box"] if hit else FAR, "probs": probs}))
            f.write("\n")
            out.append((rec, hit))
    return out


def _rows(tables, title: str) -> dict[str, tuple]:
    table = next(t for t in tables if t.title == title)
    return {r[0]: r[1:] for r in table.rows}


def test_grouped_accuracy_matches_hand_count(synth: Path, tmp_path: Path) -> None:
    ea = _module()
    pred = tmp_path / "pred.jsonl"
    truth = _write_predictions(synth, pred)
    scenes = {s["video_id"]: s for s in _lines(synth / "synth" / "val.jsonl")}
    style: dict[str, list[bool]] = {}
    people: dict[str, list[bool]] = {}
    for rec, hit in truth:
        scene = scenes[rec["video_id"]]
        q = next(t for t in scene["targets"] if t["person_id"] == rec["person_id"])["query"]
        kind = "relation" if q["relation"] else "position" if q["position"] else "attributes only"
        style.setdefault(kind, []).append(hit)
        people.setdefault(f"{len(scene['people']):02d}", []).append(hit)
    tables = ea.analyse(synth, pred, "val")

    assert _rows(tables, "All")["all"][:2] == (len(truth), sum(h for _, h in truth) / len(truth))
    got = _rows(tables, "Expression kind")
    assert set(got) == set(style) and len(style) == 3
    for kind, hits in style.items():
        assert got[kind][0] == len(hits)
        assert got[kind][1] == pytest.approx(sum(hits) / len(hits))
    got = _rows(tables, "People in the clip")
    assert {k: v[0] for k, v in got.items()} == {k: len(v) for k, v in people.items()}
    for k, hits in people.items():
        assert got[k][1] == pytest.approx(sum(hits) / len(hits))
    # a missed box (far corner) is near no detection; a hit is the referred person's box
    picked = _rows(tables, "Where the predicted box came from")
    assert picked[ea.PICK_NONE][0] >= sum(not h for _, h in truth)
    assert picked[ea.PICK_NONE][1] < picked.get(ea.PICK_RIGHT, (0, 1.0))[1]
    # perfect-separation probabilities: every class with a positive has AP 1
    actions = next(t for t in tables if t.title == "AP per action class")
    assert actions.rows and all(r[2] == pytest.approx(1.0) for r in actions.rows)
    on_hits = next(t for t in tables if t.title.endswith("instances with the right box"))
    assert sum(r[1] for r in on_hits.rows) == sum(len(r["actions"]) for r, h in truth if h)
    text = ea.to_markdown(tables)
    assert "### Expression kind" in text and "| attributes only |" in text


def test_non_synth_dataset_drops_scene_tables(synth: Path, tmp_path: Path) -> None:
    ea = _module()
    data = tmp_path / "plain"
    shutil.copytree(synth, data, ignore=shutil.ignore_patterns("videos"))
    shutil.rmtree(data / "synth")
    pred = tmp_path / "pred.jsonl"
    truth = _write_predictions(data, pred)
    titles = [t.title for t in ea.analyse(data, pred, "val")]
    assert "Expression kind" not in titles and "People in the clip" not in titles
    assert titles[0] == "All" and "AP per action class" in titles
    assert ea.main(["--data", str(data), "--predictions", str(pred), "--split", "val"]) == 0
    assert len(truth) > 0


def test_unknown_key_is_one_clear_error(synth: Path, tmp_path: Path) -> None:
    ea = _module()
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"key": "nope___1.5___0", "box": FAR, "probs": [0.1] * 80}) + "\n")
    with pytest.raises(RavarError, match="keys not in split 'val'"):
        ea.analyse(synth, pred, "val")
    pred.write_text('{"key": 1}\n')
    with pytest.raises(RavarError, match=r"pred.jsonl:1: missing box, probs"):
        ea.read_predictions(pred)
