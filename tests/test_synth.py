"""RefAVA-Synth: format, determinism, referring-expression uniqueness, class coverage, motion,
and the text-blind baselines, on the `small` preset generated once per session."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from ravar.data.format import (
    list_splits,
    load_meta,
    read_split,
    record_problems,
)
from ravar.errors import RavarError
from ravar.labels import action_id_by_name
from ravar.synth import catalog as C
from ravar.synth import vocab as V
from ravar.synth.generate import generate
from ravar.synth.presets import SPLITS, get_preset

SEED = 3


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "small"
    generate(out, preset="small", seed=SEED, workers=2, with_card=False)
    return out


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _scenes(d: Path, split: str) -> dict[str, dict]:
    return {s["video_id"]: s for s in _lines(d / "synth" / f"{split}.jsonl")}


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


# --- an independent reading of the queries the generator stores -----------------------------


def _people_matching(people: list[dict], attrs: dict) -> list[int]:
    out = []
    for i, p in enumerate(people):
        if all(p["facts"][k] == v for k, v in attrs.items()):
            out.append(i)
    return out


def _referents(people: list[dict], query: dict) -> list[int]:
    """Who a stored query describes, re-derived from the people's stored facts."""
    cand = _people_matching(people, query["attrs"])
    x = [p["facts"]["x"] for p in people]
    rel = query["relation"]
    if rel is not None:
        anchor = _people_matching(people, rel["anchor"])
        if len(anchor) != 1:
            return []
        a = anchor[0]
        left_to_right = list(np.argsort(x, kind="stable"))
        k = left_to_right.index(a)
        if rel["type"] == "next_to":
            allowed = set(left_to_right[max(k - 1, 0) : k + 2]) - {a}
        elif rel["type"] == "left_of":
            allowed = {i for i in range(len(people)) if x[i] < x[a]}
        else:
            allowed = {i for i in range(len(people)) if x[i] > x[a]}
        cand = [i for i in cand if i in allowed and i != a]
    pos = query["position"]
    if pos is None:
        return cand
    if pos in ("front", "back"):
        depth = {i: people[i]["facts"]["depth"] for i in cand}
        best = (max if pos == "front" else min)(depth, key=depth.get)
        rest = [v for i, v in depth.items() if i != best]
        clear = all(abs(depth[best] - v) > 0 for v in rest) and len(cand) >= 2
        return [best] if clear else []
    order = sorted(cand, key=lambda i: x[i])
    index = {
        "leftmost": 0,
        "rightmost": len(order) - 1,
        "second_left": 1,
        "second_right": len(order) - 2,
        "middle": len(order) // 2,
    }[pos]
    if pos == "middle" and len(order) != 3:
        return []
    return [order[index]] if 0 <= index < len(order) and len(order) >= 2 else []


# --- tests -----------------------------------------------------------------------------------


def test_every_line_is_valid_and_boxes_are_normalised(small_dir: Path) -> None:
    meta = load_meta(small_dir)
    assert meta.frame_source.kind == "video" and meta.image_size == (64, 64)
    assert list_splits(small_dir) == ["train", "val", "test", "test_novel"]
    for split in SPLITS:
        lines = _lines(small_dir / "annotations" / f"{split}.jsonl")
        assert len(lines) > 20
        for d in lines:
            assert record_problems(d) == [], d
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
            assert all(0 <= v <= 1 for det in d["detections"] for v in det["box"])
        assert len(read_split(small_dir, split)) == len(lines)


def test_clips_cover_the_window_and_keyframe_box_fits_the_person(small_dir: Path) -> None:
    meta = load_meta(small_dir)
    spec = meta.frame_source
    rec = read_split(small_dir, "val")[0]
    frames = _decode(small_dir / spec.root / spec.pattern.format(video_id=rec.video_id))
    assert frames.shape[1:] == (64, 64, 3)
    assert spec.frame_index(rec.time - 1.5) >= 0
    assert spec.frame_index(rec.time + 1.5) <= len(frames) - 1
    # dataset.json says which frames exist: the keyframe's +-1.5 s, every frame of the clip
    assert spec.keyframe_window == 1.5
    assert spec.frame_range(rec.time) == (0, len(frames) - 1)


def test_same_seed_gives_identical_annotations(small_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, preset="small", seed=SEED, workers=1, splits=("val",), with_card=False)
    a = (small_dir / "annotations" / "val.jsonl").read_bytes()
    b = (again / "annotations" / "val.jsonl").read_bytes()
    assert a == b
    other = tmp_path / "other"
    generate(other, preset="small", seed=SEED + 1, workers=1, splits=("val",), with_card=False)
    assert (other / "annotations" / "val.jsonl").read_bytes() != a


def test_every_expression_picks_out_exactly_its_person(small_dir: Path) -> None:
    checked = 0
    for split in SPLITS:
        scenes = _scenes(small_dir, split)
        records = read_split(small_dir, split)
        by_key = {(r.video_id, r.person_id): r for r in records}
        for vid, scene in scenes.items():
            for t in scene["targets"]:
                assert _referents(scene["people"], t["query"]) == [t["person_id"]], (vid, t)
                rec = by_key[(vid, t["person_id"])]
                assert rec.text == t["text"]
                person = scene["people"][t["person_id"]]
                assert rec.box == person["box"] and rec.actions == person["actions"]
                checked += 1
    assert checked == sum(len(read_split(small_dir, s)) for s in SPLITS)


def test_expression_text_names_the_query_values_only(small_dir: Path) -> None:
    colour_words = {w for v in V.COLOUR_WORDS for w in V.all_words(V.COLOUR_WORDS, v)}
    for split in SPLITS:
        for scene in _scenes(small_dir, split).values():
            for t in scene["targets"]:
                q, text = t["query"], t["text"]
                named = dict(q["attrs"])
                if q["relation"]:
                    named.update({f"anchor_{k}": v for k, v in q["relation"]["anchor"].items()})
                wanted = set()
                for key, value in named.items():
                    base = key.removeprefix("anchor_")
                    if base in ("shirt", "trousers") or (base == "hat" and value != "none"):
                        words = V.all_words(V.COLOUR_WORDS, value)
                        assert any(re.search(rf"\b{re.escape(w)}\b", text) for w in words), t
                        wanted |= words
                    if base == "held":
                        words = V.all_words(V.OBJECT_WORDS, value)
                        assert any(w in text for w in words), t
                used = {w for w in colour_words if re.search(rf"(?<![\w-]){re.escape(w)}\b", text)}
                assert used <= wanted, (text, used, wanted)


def test_expressions_never_name_an_action(small_dir: Path) -> None:
    for split in SPLITS:
        for rec in read_split(small_dir, split):
            words = set(re.findall(r"[a-z]+", rec.text.lower()))
            assert not words & V.ACTION_WORDS, rec.text


def test_novel_words_only_in_test_novel(small_dir: Path) -> None:
    novel = V.novel_phrases()

    def has_novel(text: str) -> bool:
        return any(re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", text) for p in novel)

    for split in ("train", "val", "test"):
        assert not any(has_novel(r.text) for r in read_split(small_dir, split))
    texts = [r.text for r in read_split(small_dir, "test_novel")]
    assert sum(has_novel(t) for t in texts) > len(texts) / 3


def test_novel_attribute_combinations_are_held_out(small_dir: Path) -> None:
    from ravar.synth.scene import NOVEL_COMBOS

    def combos(split: str) -> list[tuple[str, str]]:
        return [
            (p["facts"]["shirt"], p["facts"]["trousers"])
            for s in _scenes(small_dir, split).values()
            for p in s["people"]
        ]

    for split in ("train", "val", "test"):
        assert not set(combos(split)) & NOVEL_COMBOS
    novel_targets = [
        (s["people"][0]["facts"]["shirt"], s["people"][0]["facts"]["trousers"])
        for s in _scenes(small_dir, "test_novel").values()
    ]
    assert all(c in NOVEL_COMBOS for c in novel_targets)


def test_every_class_appears_in_train_and_test(small_dir: Path) -> None:
    expected = {action_id_by_name(n) for n in C.ALL_ACTIONS}
    assert len(expected) >= 15
    groups = {C.group_of(n) for n in C.ALL_ACTIONS}
    assert groups == {"movement", "object", "interaction"}
    for split in ("train", "test"):
        seen = {a for r in read_split(small_dir, split) for a in r.actions}
        assert expected <= seen, (split, expected - seen)


def test_one_movement_per_person_and_no_running_while_lying(small_dir: Path) -> None:
    movement_ids = {action_id_by_name(n) for n in C.MOVEMENTS}
    for split in SPLITS:
        for scene in _scenes(small_dir, split).values():
            for p in scene["people"]:
                assert len(set(p["actions"]) & movement_ids) == 1, p
                assert 1 <= len(p["actions"]) <= 3
                assert C.is_compatible(p["action_names"]), p


def _overlap(a: list[float], b: list[float]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _motion_energy(d: Path, split: str, actions: list[str]) -> list[float]:
    """Mean abs pixel change inside the person's keyframe box between frames 0.8 s apart, for
    people whose box overlaps nobody else's (a neighbour's motion would count otherwise)."""
    spec = load_meta(d).frame_source
    out = []
    for scene in _scenes(d, split).values():
        for p in scene["people"]:
            if p["action_names"] != actions or any(
                _overlap(p["box"], q["box"]) for q in scene["people"] if q is not p
            ):
                continue
            frames = _decode(d / spec.root / spec.pattern.format(video_id=scene["video_id"]))
            frames = frames.astype(np.float32)
            h, w = frames.shape[1:3]
            x1, y1, x2, y2 = p["box"]
            sl = (
                slice(int(y1 * h), int(np.ceil(y2 * h))),
                slice(int(x1 * w), int(np.ceil(x2 * w))),
            )
            diffs = [np.abs(frames[i][sl] - frames[i + 8][sl]).mean() for i in range(0, 23, 4)]
            out.append(float(np.max(diffs)))
    return out


def test_motion_only_classes_move_more_than_standing(small_dir: Path) -> None:
    stand, moving = [], {}
    for split in SPLITS:
        stand += _motion_energy(small_dir, split, [C.STAND])
        for action in (C.WALK, C.RUN, C.GET_UP, C.FALL):
            moving.setdefault(action, []).extend(_motion_energy(small_dir, split, [action]))
    assert len(stand) >= 3, "too few plain standing people to compare with"
    base = float(np.median(stand))
    assert base > 0  # camera noise alone changes pixels a little
    for action, energy in moving.items():
        assert energy, f"no plain {action!r} person generated"
        assert np.median(energy) > 3 * base, (action, energy, base)


def test_random_person_baseline_is_far_from_perfect(small_dir: Path) -> None:
    from ravar.synth.baselines import baseline_predictions, trivial_baselines

    res = trivial_baselines(small_dir, "test")
    assert res["random person"]["mIoU"] < 0.75
    assert res["prior"]["AUROC_weighted"] == pytest.approx(0.5)
    # The same numbers from scratch: mean IoU of the randomly picked boxes.
    pred, true, _, _ = baseline_predictions(small_dir, "test")["random person"]
    lt, rb = np.maximum(pred[:, :2], true[:, :2]), np.minimum(pred[:, 2:], true[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iou = inter / (area(pred) + area(true) - inter)
    assert res["random person"]["mIoU"] == pytest.approx(iou.mean())


def test_bad_arguments_name_the_culprit(tmp_path: Path) -> None:
    with pytest.raises(RavarError, match="--preset"):
        get_preset("huge")
    with pytest.raises(RavarError, match="--frames"):
        generate(tmp_path / "x", preset="small", frames="gif")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f.txt").write_text("x")
    with pytest.raises(RavarError, match="not empty"):
        generate(tmp_path / "full", preset="small")


def test_co_occurrence_rules() -> None:
    assert C.is_compatible([C.STAND, C.CARRY, C.WAVE])
    assert not C.is_compatible([C.LIE, C.RUN])  # two movements
    assert not C.is_compatible([C.RUN, C.PHONE])
    assert not C.is_compatible([C.LIE, C.WAVE])
    assert not C.is_compatible([C.STAND, C.CLAP, C.CARRY])  # three hands
    rng = np.random.default_rng(0)
    for must in C.ALL_ACTIONS:
        if must in C.PAIR_INTERACTIONS:
            continue
        acts = C.sample_solo_actions(rng, must)
        assert must in acts and C.is_compatible(acts), (must, acts)


def test_people_per_scene_stay_within_the_preset(small_dir: Path) -> None:
    lo, hi = get_preset("small").people
    for split in SPLITS:
        counts = [len(s["people"]) for s in _scenes(small_dir, split).values()]
        assert min(counts) >= lo and max(counts) <= hi, (split, sorted(set(counts)))


@pytest.mark.parametrize("preset", ["standard", "hard"])
def test_layout_never_drops_below_the_minimum(preset: str) -> None:
    from ravar.synth.generate import ClipTask, build_scene

    p = get_preset(preset)
    for index in range(60):
        task = ClipTask(preset, SEED, "train", index, "", "mp4")
        scene, _, _ = build_scene(p, task)
        assert p.people[0] <= len(scene.people) <= p.people[1], (index, len(scene.people))
