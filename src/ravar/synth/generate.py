"""Generating a RefAVA-Synth dataset: one scene per clip, seeded per (seed, split, scene) so the
result does not depend on the number of worker processes; writes the canonical format."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ravar.data.format import DatasetMeta, Record, record_from_dict, write_split
from ravar.errors import RavarError
from ravar.synth import catalog as C
from ravar.synth.detections import detect
from ravar.synth.presets import SPLIT_IDS, SPLITS, Preset, get_preset
from ravar.synth.referring import Phraser, candidate_queries, choose_query, person_facts, resolve
from ravar.synth.render import render
from ravar.synth.scene import Scene, sample_scene
from ravar.synth.writer import frame_source, write_clip
from ravar.util.heartbeat import Heartbeat, format_duration

SCENE_DIR = "synth"  # DIR/synth/<split>.jsonl: every person's attributes, for checks
MAX_ATTEMPTS = 12
DETECTION_OFFSETS = (-1.0, 0.0, 1.0)  # seconds from the keyframe with detections


@dataclass(frozen=True)
class ClipTask:
    """What one worker call builds."""

    preset: str
    seed: int
    split: str
    index: int
    out_dir: str
    frames: str  # "mp4" | "jpg"


def clip_rngs(seed: int, split: str, index: int) -> list[np.random.Generator]:
    """Independent generators for scene, text, pixels and detections of one clip."""
    return [np.random.default_rng([seed, SPLIT_IDS[split], index, k]) for k in range(4)]


def video_id_of(split: str, index: int) -> str:
    """Clip id, unique across splits (all clips share one frame folder)."""
    return f"{split}-{index:05d}"


def forced_action(seed: int, index: int) -> str:
    """The action person 0 of scene `index` does: cycles through every class, so each split of
    at least len(ALL_ACTIONS) scenes contains every class."""
    return C.ALL_ACTIONS[(index + seed) % len(C.ALL_ACTIONS)]


def scene_facts(scene: Scene) -> list[dict[str, Any]]:
    """person_facts of everyone in the scene (index = person id)."""
    return [person_facts(p.attributes(), p.box, p.ground_y / scene.height) for p in scene.people]


def build_scene(preset: Preset, task: ClipTask) -> tuple[Scene, list[dict], list[dict]]:
    """A scene whose forced person can be referred to, its facts and its referred targets."""
    rng_scene, rng_text, _, _ = clip_rngs(task.seed, task.split, task.index)
    novel = task.split == "test_novel"
    vid = video_id_of(task.split, task.index)
    must = forced_action(task.seed, task.index)
    for _ in range(MAX_ATTEMPTS):
        scene = sample_scene(rng_scene, preset, vid, must=must, novel=novel)
        facts = scene_facts(scene)
        first = candidate_queries(facts, 0)
        if first and all(b[2] > b[0] and b[3] > b[1] for b in (p.box for p in scene.people)):
            break
    else:  # pragma: no cover - the layout practically always succeeds within a few tries
        raise RuntimeError(f"could not build a referable scene for {vid}")
    phraser = Phraser(rng_text, novel=novel)
    order = [0] + [int(i) for i in rng_text.permutation(np.arange(1, len(facts)))]
    targets = []
    for pid in order:
        if len(targets) >= preset.max_targets:
            break
        query = choose_query(rng_text, first if pid == 0 else candidate_queries(facts, pid))
        if query is None:
            continue
        assert resolve(facts, query) == [pid], (vid, pid, query)
        targets.append({"person_id": pid, "query": query, "text": phraser.sentence(query)})
    return scene, facts, targets


def make_clip(task: ClipTask) -> dict[str, Any]:
    """Build, render and write one clip; returns its records (as dicts) and scene description."""
    preset = get_preset(task.preset)
    scene, facts, targets = build_scene(preset, task)
    _, _, rng_pixels, rng_det = clip_rngs(task.seed, task.split, task.index)
    frames = render(scene, rng_pixels, preset.noise)  # [T, H, W, 3]
    spec = frame_source(task.frames, preset.fps, preset.clip_seconds)
    write_clip(Path(task.out_dir), spec, scene.video_id, frames)
    dets = []
    for off in DETECTION_OFFSETS:
        t = preset.keyframe_time + off
        frame = int(round(t * preset.fps))
        dets += detect(scene, frame, rng_det, time=None if off == 0 else round(t, 4))
    ids = {p.pid: sorted(C.action_id(a) for a in p.actions) for p in scene.people}
    records = [
        Record(
            video_id=scene.video_id,
            time=preset.keyframe_time,
            person_id=t["person_id"],
            text=t["text"],
            box=scene.people[t["person_id"]].box,
            actions=ids[t["person_id"]],
            detections=dets,
        ).to_dict()
        for t in targets
    ]
    people = [
        {
            "person_id": p.pid,
            "facts": facts[p.pid],
            "box": p.box,
            "actions": ids[p.pid],
            "action_names": list(p.actions),
            "object": p.obj,
            "facing": p.facing,
            "partner": p.partner,
            "timing": {k: round(float(v), 4) for k, v in p.motion.params.items()},
        }
        for p in scene.people
    ]
    info = {
        "video_id": scene.video_id,
        "forced_action": forced_action(task.seed, task.index),
        "people": people,
        "targets": targets,
    }
    return {"records": records, "scene": info}


def _run_tasks(
    tasks: list[ClipTask], workers: int, done: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    """`make_clip` of every task, in order; `done(n)` after each (n clips made so far)."""
    results: list[dict[str, Any]] = []

    def collect(made: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        for res in made:
            results.append(res)
            if done is not None:
                done(len(results))
        return results

    if workers <= 1 or len(tasks) < 8:
        return collect(make_clip(t) for t in tasks)
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(workers) as pool:
        return collect(pool.imap(make_clip, tasks, chunksize=4))


def generate(
    out_dir: str | os.PathLike,
    preset: str = "small",
    seed: int = 0,
    workers: int = 1,
    frames: str = "mp4",
    splits: tuple[str, ...] = SPLITS,
    with_card: bool = True,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write a RefAVA-Synth dataset to `out_dir`; returns a summary (counts, seconds). `say`
    receives a progress line every 30 s.

    Same preset and seed give byte-identical annotation files, whatever `workers` is.
    """
    p = get_preset(preset)
    if frames not in ("mp4", "jpg"):
        raise RavarError(f"--frames: must be 'mp4' or 'jpg', got {frames!r}")
    if not isinstance(seed, int) or seed < 0:
        raise RavarError(f"--seed: must be a non-negative integer, got {seed!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RavarError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise RavarError(f"{out}: directory is not empty (choose a new folder)")
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    spec = frame_source(frames, p.fps, p.clip_seconds)
    meta = DatasetMeta(
        name=f"refava-synth-{preset}",
        frame_source=spec,
        image_size=(p.width, p.height),
        description="RefAVA-Synth: procedural multi-person referring atomic action clips",
        extra={
            "generator": "ravar.synth",
            "preset": preset,
            "seed": seed,
            "settings": p.to_dict(),
            "classes": C.synth_action_ids(),
            "keyframe_time": p.keyframe_time,
        },
    )
    meta.save(out)
    counts: dict[str, dict[str, int]] = {}
    scene_dir = out / SCENE_DIR
    scene_dir.mkdir(exist_ok=True)
    beat = Heartbeat(say) if say is not None else None
    for split in splits:
        tasks = [ClipTask(preset, seed, split, i, str(out), frames) for i in range(p.clips[split])]

        def done(n: int, split: str = split, total: int = len(tasks)) -> None:
            if beat is not None:
                beat.tick(lambda: f"  generating {split}: {n}/{total} clips, "
                          f"{format_duration(beat.elapsed())} so far")  # fmt: skip

        results = _run_tasks(tasks, workers, done)
        records = [r for res in results for r in res["records"]]
        write_split(out, split, [record_from_dict(r, where=f"{split}") for r in records])
        with open(scene_dir / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for res in results:
                f.write(json.dumps(res["scene"], separators=(",", ":")) + "\n")
        counts[split] = {"clips": len(results), "records": len(records)}
    seconds = time.perf_counter() - start
    summary = {"preset": preset, "seed": seed, "counts": counts, "seconds": round(seconds, 1)}
    if with_card:
        from ravar.synth.card import write_card

        write_card(out, summary)
    return summary
