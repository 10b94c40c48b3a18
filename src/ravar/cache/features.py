"""The feature cache: run a model's frozen backbones once over a dataset (`build_cache`), and let
training and evaluation read their outputs instead of recomputing them (`attach_cache`).

What is cached, and when it applies:
- visual: the tokens `[K, T, Q, C]` of a visual backbone that is frozen whole (the paper
  configs' BLIP-2), per instance and split, for the clip-sampling settings of the model. Pixel
  augmentations (flips, temporal jitter) change the clip every epoch, so a training split with
  them on does not read the visual cache (`auto` says so; `require` refuses).
- text: the token, keyword and sentence embeddings of a frozen text encoder (MiniLM), keyed by
  the sentence, for every sentence of the splits and its left/right-mirrored form (flips).
Each store's manifest names the backbone, its weights' hash and (visual) the clip settings and
dataset files; a model that differs in any of them does not read it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ravar.cache.store import (
    CacheError,
    StoreWriter,
    TextStore,
    VisualStore,
    file_fingerprint,
    find_store,
    identity_key,
    module_fingerprint,
)
from ravar.data.clip_config import ClipConfig
from ravar.data.dataset import RAVARDataset, collate
from ravar.data.detections import require_detections
from ravar.data.format import META_FILE, annotation_path, read_split
from ravar.data.transforms import swap_left_right
from ravar.models.backbones.text import TextEncoder, split_rows
from ravar.models.base import RAVARModel

CACHE_MODES: tuple[str, ...] = ("auto", "off", "require")
CACHE_DIR = "cache"  # default store folder, inside the dataset folder
KEYWORDS_VERSION = 1  # bump when keyword extraction changes (cached keywords would differ)
CLIP_KEYS = ("num_frames", "window_seconds", "stride", "size", "normalization", "num_clips")


def cache_root(dataset_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where stores live: `cache_dir`, or `<dataset_dir>/cache`."""
    return Path(cache_dir) if cache_dir else Path(dataset_dir) / CACHE_DIR


def visual_identity(
    model: RAVARModel, dataset_dir: str | os.PathLike, clip: ClipConfig | None = None
) -> dict[str, Any] | None:
    """What a visual store must have been made with to serve `model` on `dataset_dir` with clips
    sampled by `clip` (default: the model's own; None when the model has no cacheable visual
    backbone)."""
    visual = model.cacheable_visual()
    if visual is None:
        return None
    vcfg = visual.config  # type: ignore[union-attr]
    clip = (clip or model.config.clip).to_dict()
    return {
        "kind": "visual",
        "backbone": f"{type(visual).__name__}:{vcfg.kind}:{getattr(vcfg, 'hf_kind', '')}",
        "source": vcfg.hf_name_or_path or "random weights from hf_config",
        "weights": module_fingerprint(visual),
        "clip": {k: clip[k] for k in CLIP_KEYS},
        "dataset": file_fingerprint(Path(dataset_dir) / META_FILE),
    }


def _tokenizer_fingerprint(encoder: TextEncoder) -> str | None:
    tokenizer = getattr(encoder, "tokenizer", None)
    if tokenizer is None:
        return None
    vocab = sorted(tokenizer.get_vocab().items())
    return identity_key({"kind": "tokenizer", "vocab": vocab, "class": type(tokenizer).__name__})


def text_identity(model: RAVARModel) -> dict[str, Any] | None:
    """What a text store must have been made with to serve `model` (None when its text encoder
    is missing or not frozen)."""
    text = getattr(model, "text", None)
    if not isinstance(text, TextEncoder) or text.frozen_part is None:
        return None
    if any(p.requires_grad for p in text.parameters()):
        return None
    cfg = text.config
    return {
        "kind": "text",
        "encoder": f"{type(text).__name__}:{cfg.kind}",
        "source": cfg.hf_name_or_path or cfg.kind,
        "weights": module_fingerprint(text),
        "tokenizer": _tokenizer_fingerprint(text),
        "max_length": cfg.max_length,
        "max_keywords": cfg.max_keywords,
        "keywords_version": KEYWORDS_VERSION,
    }


# ---------------------------------------------------------------------------------- building


def _write_text_store(
    encoder: TextEncoder, texts: list[str], writer: StoreWriter, batch_size: int, progress: bool
) -> None:
    dtype = np.dtype(writer.dtype)
    rows = []
    with torch.no_grad():
        for i in tqdm(range(0, len(texts), batch_size), desc="text", disable=not progress):
            feats = encoder(texts[i : i + batch_size])
            rows.extend(split_rows(feats))
    dim = encoder.dim
    token_counts = [len(r[0]) for r in rows]
    keyword_counts = [len(r[2]) for r in rows]
    offsets = np.zeros((len(rows) + 1, 2), np.int64)
    offsets[1:, 0] = np.cumsum(token_counts)
    offsets[1:, 1] = np.cumsum(keyword_counts)

    def stack(parts: list[torch.Tensor]) -> np.ndarray:
        if not parts:
            return np.zeros((0, dim), dtype)
        return torch.cat([p.float().cpu() for p in parts]).numpy().astype(dtype)

    writer.save("tokens.npy", stack([r[0] for r in rows]))
    writer.save("keywords.npy", stack([r[2] for r in rows]))
    writer.save("sentence.npy", stack([r[1][None] for r in rows]))
    writer.save("offsets.npy", offsets)
    writer.save_json("texts.json", {"texts": texts, "keywords": [r[3] for r in rows]})
    writer.extra["sentences"] = len(texts)


def _write_visual_split(
    model: RAVARModel,
    dataset: RAVARDataset,
    writer: StoreWriter,
    batch_size: int,
    workers: int,
    chunk_rows: int,
    device: torch.device,
    progress: bool,
) -> dict[str, Any]:
    visual = model.cacheable_visual()
    assert visual is not None
    split = dataset.split
    dtype = np.dtype(writer.dtype)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate
    )
    buffer: list[np.ndarray] = []
    chunks = 0
    sizes: list[tuple[int, int]] = []
    shape: tuple[int, ...] = ()

    def flush() -> None:
        nonlocal buffer, chunks
        writer.save(f"{split}/chunk-{chunks:05d}.npy", np.stack(buffer))
        chunks, buffer = chunks + 1, []

    with torch.no_grad():
        for batch in tqdm(loader, desc=f"visual {split}", disable=not progress):
            frames = batch["frames"]  # [B, T, 3, H, W] or [B, K, T, 3, H, W]
            b = frames.shape[0]
            clips = frames.view(-1, *frames.shape[-4:]).to(device)  # [B*K, T, 3, H, W]
            tokens = visual(clips).float().cpu().numpy().astype(dtype)  # [B*K, T, Q, C]
            tokens = tokens.reshape(b, -1, *tokens.shape[1:])  # [B, K, T, Q, C]
            shape = tokens.shape[1:]
            for row in tokens:
                buffer.append(row)
                if len(buffer) == chunk_rows:
                    flush()
            sizes.extend(tuple(s) for s in batch["image_size"])
    if buffer:
        flush()
    frames_idx = np.stack([dataset.plan(i).clips for i in range(len(dataset))])  # [N, K, T]
    writer.save(f"{split}/frames.npy", frames_idx.astype(np.int64))
    writer.save(f"{split}/image_size.npy", np.asarray(sizes, np.int64).reshape(-1, 2))
    return {
        "rows": len(dataset),
        "chunk_rows": chunk_rows,
        "chunks": chunks,
        "shape": list(shape),  # [K, T, Q, C]
        "annotations": file_fingerprint(annotation_path(dataset.dataset_dir, split)),
    }


def build_cache(
    dataset_dir: str | os.PathLike,
    model: RAVARModel,
    splits: Sequence[str],
    *,
    cache_dir: str | os.PathLike | None = None,
    dtype: str = "float16",
    batch_size: int = 8,
    workers: int = 0,
    chunk_rows: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
    say: Callable[[str], None] = print,
    allow_missing_detections: bool = False,
) -> list[Path]:
    """Run `model`'s frozen backbones over `splits` of `dataset_dir` and write their stores
    (replacing older ones of the same identity). Returns the store folders written. A model
    that reads detections refuses splits without any unless `allow_missing_detections`."""
    if chunk_rows < 1 or batch_size < 1:
        raise CacheError("chunk_rows and batch_size must be >= 1")
    for split in splits:  # refuse before any backbone runs
        require_detections(
            dataset_dir,
            split,
            read_split(dataset_dir, split),
            needs=model.needs_detections,
            allow_missing=allow_missing_detections,
            override="--allow-missing-detections",
        )
    root = cache_root(dataset_dir, cache_dir)
    device = torch.device(device)
    model = model.to(device).eval()
    written = []
    vid = visual_identity(model, dataset_dir)
    tid = text_identity(model)
    if vid is None and tid is None:
        raise CacheError(
            f"model family {model.family!r}: no frozen backbone to cache (its visual backbone "
            "is trained, or reads crops, and it has no frozen text encoder)"
        )
    if tid is not None:
        start = time.perf_counter()
        texts: dict[str, None] = {}
        for split in splits:
            for rec in RAVARDataset(dataset_dir, split, model.config.clip).records:
                texts[rec.text] = None
                texts[swap_left_right(rec.text)] = None
        folder = root / identity_key(tid)
        if (folder / "texts.json").is_file():  # keep the sentences of splits cached before
            texts = dict.fromkeys(TextStore(folder).rows) | texts
        writer = StoreWriter(folder, tid, dtype)
        _write_text_store(model.text, list(texts), writer, 64, progress)  # type: ignore[arg-type]
        written.append(writer.commit())
        say(f"text: {len(texts)} sentences in {time.perf_counter() - start:.1f} s -> {written[-1]}")
    if vid is not None:
        folder = root / identity_key(vid)
        old = VisualStore(folder).splits if folder.is_dir() else {}
        writer = StoreWriter(folder, vid, dtype)
        infos = {}
        for split in splits:
            start = time.perf_counter()
            clip = model.config.clip
            ds = RAVARDataset(dataset_dir, split, clip, train=False)
            infos[split] = _write_visual_split(
                model, ds, writer, batch_size, workers, chunk_rows, device, progress
            )
            say(
                f"visual {split}: {len(ds)} instances x {infos[split]['shape']} in "
                f"{time.perf_counter() - start:.1f} s"
            )
        for split, info in old.items():  # splits cached before and not rebuilt now are kept
            if split not in infos:
                os.replace(folder / split, writer.tmp / split)
                infos[split] = info
        writer.extra["splits"] = infos
        written.append(writer.commit())
        say(f"visual store -> {written[-1]}")
    return written


def store_size(folder: Path) -> int:
    """Bytes on disk of a store folder."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------- reading


def _refuse(what: str, root: Path, reasons: list[str]) -> CacheError:
    detail = "\n  ".join(reasons) if reasons else f"no {what} store under {root}"
    return CacheError(
        f"--cache require: no {what} feature store under {root} matches the model:\n  {detail}\n"
        "build one with `ravar cache DATA --model NAME` (same model overrides and seed)"
    )


class FeatureCache:
    """The stores that can serve `model` on `dataset_dir` under `mode` (auto: when present;
    require: refuse when missing; off: never). The frozen weights are hashed once, here; models
    and datasets are attached as they are built."""

    def __init__(
        self,
        model: RAVARModel,
        dataset_dir: str | os.PathLike,
        mode: str = "auto",
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if mode not in CACHE_MODES:
            raise CacheError(f"cache must be one of {list(CACHE_MODES)}, got {mode!r}")
        self.model = model
        self.dataset_dir = dataset_dir
        self.mode = mode
        self.root = cache_root(dataset_dir, cache_dir)
        active = mode == "require" or (mode == "auto" and self.root.is_dir())
        self.text_id = text_identity(model) if active else None
        self.visual_id = visual_identity(model, dataset_dir) if active else None
        if mode == "require" and self.text_id is None and self.visual_id is None:
            raise CacheError(
                f"--cache require: model family {model.family!r} has no frozen backbone"
            )

    def attach_models(self, models: Iterable[RAVARModel]) -> list[str]:
        """Make `models` (the same weights: a model and its EMA copy) read the matching text
        store. Returns lines saying what is read."""
        if self.text_id is None:
            return []
        folder, reasons = find_store(self.root, self.text_id)
        if folder is None:
            if self.mode == "require":
                raise _refuse("text", self.root, reasons)
            return []
        store = TextStore(folder)
        for m in models:
            m.text.attach_store(store)  # type: ignore[union-attr]
        return [f"cache: text features of {len(store)} sentences from {folder}"]

    def attach_datasets(self, datasets: Iterable[RAVARDataset]) -> list[str]:
        """Make `datasets` read the visual store made for their clip settings (evaluation may
        sample other clips, multi-clip, than training). Returns lines saying what is read."""
        if self.visual_id is None:
            return []
        lines = []
        for ds in datasets:
            wanted = {**self.visual_id, "clip": {k: ds.config.to_dict()[k] for k in CLIP_KEYS}}
            folder, reasons = find_store(self.root, wanted)
            if folder is None and self.mode == "require":
                raise _refuse("visual", self.root, reasons)
            if folder is not None:
                lines.append(self._attach_visual(VisualStore(folder), ds))
        return lines

    def _attach_visual(self, store: VisualStore, ds: RAVARDataset) -> str:
        augmentation = ds.pixel_augmentation()
        if augmentation is not None:
            msg = (
                f"the {ds.split} split trains with pixel augmentations ({augmentation}), which a "
                "visual cache cannot hold"
            )
            if self.mode == "require":
                raise CacheError(
                    f"--cache require: {msg}; set model.clip.hflip_prob=0 "
                    "model.clip.temporal_jitter=false to train from it"
                )
            return f"cache: visual features not used for {ds.split}: {msg}"
        if ds.split not in store.splits:
            if self.mode == "require":
                raise CacheError(
                    f"--cache require: {store.folder} has no features for split {ds.split!r} "
                    f"(it has {sorted(store.splits)})"
                )
            return f"cache: visual features not used for {ds.split}: not in {store.folder}"
        annotations = annotation_path(self.dataset_dir, ds.split)
        if store.splits[ds.split].get("annotations") != file_fingerprint(annotations):
            raise CacheError(
                f"{store.folder}: split {ds.split!r} was cached from another {annotations}; "
                "rebuild it with `ravar cache`"
            )
        ds.use_features(store.split(ds.split), load_frames=self.model.needs_frames_with_cache)
        return f"cache: visual features of {ds.split} from {store.folder}"


def attach_cache(
    models: Iterable[RAVARModel],
    datasets: Iterable[RAVARDataset],
    dataset_dir: str | os.PathLike,
    mode: str = "auto",
    cache_dir: str | os.PathLike | None = None,
) -> list[str]:
    """`FeatureCache` of the first of `models`, attached to all `models` and `datasets` at once.
    Returns lines saying what is read."""
    models = list(models)
    cache = FeatureCache(models[0], dataset_dir, mode, cache_dir)
    return cache.attach_models(models) + cache.attach_datasets(datasets)
