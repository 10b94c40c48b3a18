"""Trivial baselines that ignore the sentence, computed from a generated dataset:

- "random person": box and actions of a random person of the clip (a text-blind model with
  perfect perception);
- "clip mean": mean box and mean action vector of everyone in the clip;
- "prior": the training set's mean box and class frequencies, the same for every record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ravar.data.format import read_split
from ravar.labels import NUM_CLASSES
from ravar.metrics import compute_metrics

BASELINE_SEED = 12345


def _multi_hot(ids: list[int]) -> np.ndarray:
    v = np.zeros(NUM_CLASSES)
    v[np.asarray(ids, int) - 1] = 1.0
    return v


def load_scenes(dataset_dir: str | Path, split: str) -> dict[str, dict[str, Any]]:
    """video_id -> scene description (everyone in the clip) written by the generator."""
    path = Path(dataset_dir) / "synth" / f"{split}.jsonl"
    with open(path, encoding="utf-8") as f:
        return {d["video_id"]: d for d in map(json.loads, f) if d}


def baseline_predictions(
    dataset_dir: str | Path, split: str, prior_split: str = "train"
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """name -> (pred boxes [N, 4], true boxes [N, 4], scores [N, 80], labels [N, 80])."""
    records = read_split(dataset_dir, split)
    scenes = load_scenes(dataset_dir, split)
    true_boxes = np.array([r.box for r in records])  # [N, 4]
    labels = np.stack([_multi_hot(r.actions) for r in records])  # [N, 80]
    rng = np.random.default_rng(BASELINE_SEED)
    rand_boxes, rand_scores, mean_boxes, mean_scores = [], [], [], []
    for r in records:
        people = scenes[r.video_id]["people"]
        pick = people[int(rng.integers(len(people)))]
        rand_boxes.append(pick["box"])
        rand_scores.append(_multi_hot(pick["actions"]))
        mean_boxes.append(np.mean([p["box"] for p in people], axis=0))
        mean_scores.append(np.mean([_multi_hot(p["actions"]) for p in people], axis=0))
    prior_records = read_split(dataset_dir, prior_split)
    prior_box = np.mean([r.box for r in prior_records], axis=0)  # [4]
    prior_freq = np.mean([_multi_hot(r.actions) for r in prior_records], axis=0)  # [80]
    n = len(records)
    return {
        "random person": (np.array(rand_boxes), true_boxes, np.stack(rand_scores), labels),
        "clip mean": (np.array(mean_boxes), true_boxes, np.stack(mean_scores), labels),
        "prior": (np.tile(prior_box, (n, 1)), true_boxes, np.tile(prior_freq, (n, 1)), labels),
    }


def trivial_baselines(
    dataset_dir: str | Path, split: str, prior_split: str = "train"
) -> dict[str, dict[str, Any]]:
    """name -> `ravar.metrics.compute_metrics` result of each trivial baseline on `split`."""
    preds = baseline_predictions(dataset_dir, split, prior_split)
    return {name: compute_metrics(*arrays) for name, arrays in preds.items()}
