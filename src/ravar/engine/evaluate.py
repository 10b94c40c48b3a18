"""Evaluation: predictions for every instance of a split (sharded over ranks without padding and
gathered back in dataset order), the RAVAR metrics, and the files `ravar eval` writes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ravar.cache import attach_cache
from ravar.data.dataset import RAVARDataset, collate
from ravar.data.detections import require_detections
from ravar.engine.batch import flatten_clips, to_device, uint8_pixels, without_targets
from ravar.engine.checkpoint import find_checkpoint, load_model, read_checkpoint_config
from ravar.engine.distributed import DistContext, shard_indices
from ravar.engine.precision import autocast
from ravar.errors import RavarError
from ravar.labels import action_name, multi_hot
from ravar.metrics import compute_metrics, format_metrics_table, metrics_to_json
from ravar.models.base import RAVARModel
from ravar.util.io import atomic_path, json_line, write_json

TOP_K = 5  # actions listed per instance in predictions.jsonl


@dataclass
class Predictions:
    """Model outputs for the instances of a dataset, in dataset order."""

    indices: np.ndarray  # [N] dataset indices 0..N-1
    probs: np.ndarray  # [N, 80] action probabilities
    boxes: np.ndarray  # [N, 4] normalised xyxy

    def __len__(self) -> int:
        return len(self.indices)


@torch.no_grad()
def _predict_shard(
    model: RAVARModel,
    dataset: RAVARDataset,
    indices: list[int],
    batch_size: int,
    device: torch.device,
    workers: int,
    amp: str,
    progress: bool,
    desc: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices [n], probs [n, 80], boxes [n, 4]) for `indices` of `dataset` on this rank."""
    idx_out: list[np.ndarray] = []
    probs_out: list[np.ndarray] = []
    boxes_out: list[np.ndarray] = []
    if indices:
        loader = DataLoader(
            Subset(dataset, indices),
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(0),  # keeps the global RNG untouched
        )
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            flat, k = flatten_clips(without_targets(batch, keep_box=model.is_oracle))
            with autocast(amp, device):
                out = model(to_device(flat, device))
            probs = torch.sigmoid(out.logits.float())  # [B*K, 80]
            boxes = out.boxes.float()  # [B*K, 4]
            b = probs.shape[0] // k
            idx_out.append(batch["index"].numpy())
            probs_out.append(probs.view(b, k, -1).mean(1).cpu().numpy())  # [B, 80]
            boxes_out.append(boxes.view(b, k, 4).mean(1).cpu().numpy())  # [B, 4]
    if not idx_out:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros((0, 4), np.float32)
    return np.concatenate(idx_out), np.concatenate(probs_out), np.concatenate(boxes_out)


def predict_dataset(
    model: RAVARModel,
    dataset: RAVARDataset,
    *,
    batch_size: int = 8,
    ctx: DistContext | None = None,
    workers: int = 0,
    amp: str = "off",
    progress: bool = False,
    desc: str = "eval",
) -> Predictions:
    """Predictions of `model` (put in eval mode) for every instance of `dataset`, on every rank:
    each rank predicts its shard (no padding), the shards are gathered and put in index order."""
    ctx = ctx or DistContext()
    was_training = model.training
    model.eval()
    try:
        shard = shard_indices(len(dataset), ctx.rank, ctx.world_size)
        part = _predict_shard(
            model, dataset, shard, batch_size, ctx.device, workers, amp, progress, desc
        )
    finally:
        model.train(was_training)
    parts = [p for p in ctx.all_gather_objects(part) if len(p[0])]
    if not parts:
        raise RavarError(f"split {dataset.split!r} of {dataset.dataset_dir}: no instances")
    indices = np.concatenate([p[0] for p in parts])
    order = np.argsort(indices, kind="stable")
    indices = indices[order]
    if not np.array_equal(indices, np.arange(len(dataset))):
        raise RuntimeError(
            f"gathered {len(indices)} predictions for {len(dataset)} instances "
            "(an instance was duplicated or dropped)"
        )
    probs = np.concatenate([p[1] for p in parts])[order]
    boxes = np.concatenate([p[2] for p in parts])[order]
    return Predictions(indices=indices, probs=probs, boxes=boxes)


def ground_truth(dataset: RAVARDataset) -> tuple[np.ndarray, np.ndarray]:
    """(labels [N, 80] multi-hot, boxes [N, 4]) of every instance, in dataset order."""
    labels = np.stack([multi_hot(r.actions).numpy() for r in dataset.records])  # [N, 80]
    boxes = np.array([r.box for r in dataset.records], dtype=np.float64)  # [N, 4]
    return labels, boxes


def score_predictions(dataset: RAVARDataset, preds: Predictions) -> dict[str, Any]:
    """RAVAR metrics (`compute_metrics`) of `preds` against the ground truth of `dataset`."""
    labels, true_boxes = ground_truth(dataset)
    return compute_metrics(preds.boxes, true_boxes, preds.probs, labels)


def prediction_rows(dataset: RAVARDataset, preds: Predictions, top_k: int = TOP_K) -> list[dict]:
    """One JSON-ready dict per instance: key, predicted box, top actions, all 80 probabilities."""
    rows = []
    for i, probs, box in zip(preds.indices, preds.probs, preds.boxes, strict=True):
        top = np.argsort(-probs, kind="stable")[:top_k]
        rows.append(
            {
                "index": int(i),
                "key": dataset.records[int(i)].key,
                "box": [round(float(v), 6) for v in box],
                "top_actions": [
                    {"id": int(c) + 1, "name": action_name(int(c) + 1), "prob": float(probs[c])}
                    for c in top
                ],
                "probs": [round(float(p), 6) for p in probs],
            }
        )
    return rows


def write_predictions(path: Path, dataset: RAVARDataset, preds: Predictions) -> None:
    """Write `predictions.jsonl`, one instance per line."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in prediction_rows(dataset, preds):
            f.write(json_line(row))


@dataclass
class EvalResult:
    """What `evaluate_checkpoint` computed and where it wrote it."""

    metrics: dict[str, Any]
    predictions: Predictions
    out_dir: Path | None
    table: str


def default_eval_dir(checkpoint: Path, split: str, num_clips: int) -> Path:
    """`<run>/eval-<checkpoint name>-<split>[-<K>clips]`, beside the checkpoint."""
    suffix = f"-{num_clips}clips" if num_clips > 1 else ""
    return checkpoint.parent / f"eval-{checkpoint.name.lstrip('.')}-{split}{suffix}"


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str = "test",
    *,
    num_clips: int | None = None,
    batch_size: int = 8,
    out_dir: str | os.PathLike | None = None,
    write: bool = True,
    workers: int = 0,
    ctx: DistContext | None = None,
    amp: str = "off",
    progress: bool = False,
    cache: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    allow_missing_detections: bool = False,
    backbones: Mapping[str, str | os.PathLike] | None = None,
) -> EvalResult:
    """Evaluate checkpoint `checkpoint` on `split` of `data_dir`, sampling clips as the model was
    trained (`num_clips` K > 1: K clips per instance, probabilities and boxes averaged); rank 0
    writes `metrics.json` and `predictions.jsonl` to `out_dir` unless `write` is False. Features
    of frozen backbones are read from matching stores under `cache` (see `ravar.cache`);
    `backbones` gives local copies of backbones whose frozen weights the checkpoint left out. A
    model that reads detections refuses a split without any unless `allow_missing_detections`."""
    ctx = ctx or DistContext()
    if num_clips is not None and num_clips < 1:
        raise RavarError(f"--multi-clip: must be >= 1, got {num_clips}")
    if batch_size < 1:
        raise RavarError(f"--batch-size: must be >= 1, got {batch_size}")
    root = Path(checkpoint)
    config = read_checkpoint_config(root)
    model = load_model(root, device=ctx.device, backbones=backbones)
    clip = model.config.clip
    if num_clips is not None:
        clip = dataclasses.replace(clip, num_clips=num_clips)
    dataset = RAVARDataset(data_dir, split, clip, train=False, uint8=uint8_pixels(ctx.device))
    require_detections(
        data_dir,
        split,
        dataset.records,
        needs=model.needs_detections,
        allow_missing=allow_missing_detections,
        override="--allow-missing-detections",
    )
    for line in attach_cache([model], [dataset], data_dir, cache, cache_dir):
        if progress and ctx.is_main:
            print(line, flush=True)
    preds = predict_dataset(
        model,
        dataset,
        batch_size=batch_size,
        ctx=ctx,
        workers=workers,
        amp=amp,
        progress=progress and ctx.is_main,
        desc=f"eval {split}",
    )
    metrics = score_predictions(dataset, preds)
    label = f"{config['model_name']} ({split}, {clip.num_clips} clip{'s' * (clip.num_clips > 1)})"
    table = format_metrics_table({label: metrics})
    target = None
    if write:
        target = Path(out_dir) if out_dir else default_eval_dir(root, split, clip.num_clips)
        if ctx.is_main:
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RavarError(f"--out {target}: cannot create ({e.strerror})") from None
            summary = {
                "checkpoint": str(find_checkpoint(root).resolve()),
                "model_name": config["model_name"],
                "epoch": config.get("epoch"),
                "data": str(Path(data_dir).resolve()),
                "split": split,
                "num_clips": clip.num_clips,
                "n": len(preds),
                "metrics": metrics,
            }
            write_json(target / "metrics.json", metrics_to_json(summary))
            write_predictions(target / "predictions.jsonl", dataset, preds)
        ctx.barrier()
    return EvalResult(metrics=metrics, predictions=preds, out_dir=target, table=table)
