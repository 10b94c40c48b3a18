"""`RAVARDataset`: referred instances of a canonical dataset folder as model-ready clips: it plans
the frames of each instance, decodes them and hands them to `ravar.data.sample.build_sample`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ravar.data.clip_config import ClipConfig  # also importable from here (public name)
from ravar.data.format import Detection, Record, load_meta, read_split
from ravar.data.frames import open_frame_source
from ravar.data.sample import build_sample, key_slot
from ravar.data.sampling import clip_offsets, fit_offsets, jitter_offsets, multi_clip_offsets
from ravar.errors import RavarError

log = logging.getLogger(__name__)
_WARNED_WIDE: set[tuple[str, tuple[int, ...]]] = set()  # (dataset, clip offsets) warned about


@dataclass
class _Plan:
    """Frame numbers one sample needs."""

    clips: np.ndarray  # [K, T] frame numbers
    key_frame: int  # frame number of the keyframe
    key_slot: int  # slot of the keyframe in every clip, -1 where it is not in the clip
    flip: bool = False


class RAVARDataset(Dataset):
    """One item per referred instance of `split`: its clip, keyframe, sentence, box, labels and
    detections. `train=True` turns on temporal jitter and consistent flips (seeded per epoch and
    index, so runs are reproducible whatever the number of workers)."""

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        split: str,
        config: ClipConfig | None = None,
        train: bool = False,
        seed: int = 0,
        uint8: bool = False,
    ) -> None:
        self.dataset_dir = dataset_dir
        self.uint8 = uint8  # items carry uint8 pixels, normalised by `to_device` (on the GPU)
        self.split = split
        self.config = config or ClipConfig()
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.meta = load_meta(dataset_dir)
        self.records: list[Record] = read_split(dataset_dir, split)
        draft = (self.config.size[1], self.config.size[0]) if self.config.jpeg_draft else None
        self.source = open_frame_source(
            dataset_dir, self.meta, on_error=self.config.on_missing_frame, draft_size=draft
        )
        spec = self.meta.frame_source
        window_frames = self.config.window_seconds * spec.fps
        self.offsets = clip_offsets(
            self.config.num_frames, window_frames, self.config.stride
        )  # [T]
        self.half_window = max(int(np.abs(self.offsets).max()), int(round(window_frames / 2)))
        self._warn_if_wider_than_data()
        self.features: Any | None = None  # cached visual features (see `use_features`)
        self.load_frames = True

    def _warn_if_wider_than_data(self) -> None:
        """Say once (per dataset and clip) when the clip reaches past the frames the dataset
        holds around a keyframe: its outer slots are then clamped into that window."""
        spec = self.meta.frame_source
        if spec.keyframe_window is None:
            return
        frames = int(np.floor(spec.keyframe_window * spec.fps + 0.5))
        reach = int(np.abs(self.offsets).max())
        key = (str(self.dataset_dir), tuple(int(o) for o in self.offsets))
        if reach <= frames or key in _WARNED_WIDE:
            return
        _WARNED_WIDE.add(key)
        cfg = self.config
        log.warning(
            "%s: the clip (clip.num_frames=%d, clip.window_seconds=%g, clip.stride=%s) reaches "
            "+-%d frames from the keyframe, dataset.json frame_source.keyframe_window holds "
            "+-%g s (+-%d frames): its outer frames are clamped into that window",
            self.dataset_dir, cfg.num_frames, cfg.window_seconds, cfg.stride, reach,
            spec.keyframe_window, frames,
        )  # fmt: skip

    def use_features(self, features: Any | None, load_frames: bool = False) -> None:
        """Give items the cached visual features of their clips (`visual_features`, `[T, Q, C]`
        or `[K, T, Q, C]`, float16) from `features` (a `ravar.cache.VisualSplit` of this split);
        frames are decoded only with `load_frames`. None turns the cache off. Pixel
        augmentations (flips, temporal jitter) cannot be cached: a training dataset with them
        on refuses."""
        if features is not None:
            augmentation = self.pixel_augmentation()
            if augmentation is not None:
                raise RavarError(
                    "cached visual features hold one fixed clip per instance: training with them "
                    f"needs clip.hflip_prob=0 and clip.temporal_jitter=false (got {augmentation})"
                )
            if len(features) != len(self.records):
                raise RavarError(
                    f"{features.folder}: {len(features)} cached instances, split {self.split!r} "
                    f"has {len(self.records)}"
                )
        self.features = features
        self.load_frames = load_frames or features is None

    def pixel_augmentation(self) -> str | None:
        """The augmentations that change this dataset's pixels every epoch (training flips or
        temporal jitter), as `key=value` text, or None."""
        cfg = self.config
        if self.train and (cfg.hflip_prob > 0 or cfg.temporal_jitter):
            return f"clip.hflip_prob={cfg.hflip_prob}, clip.temporal_jitter={cfg.temporal_jitter}"
        return None

    def set_epoch(self, epoch: int) -> None:
        """Choose the random augmentation of `epoch` (call it every epoch when training)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def readable_range(self, index: int) -> tuple[int, int | None]:
        """First and last frame number that sample `index` may read: the dataset's window around
        its keyframe, within the video (last None: no known end)."""
        rec = self.records[index]
        spec = self.meta.frame_source
        first, last = spec.frame_range(rec.time)
        n = self.source.num_frames(rec.video_id)
        if n is not None:
            end = spec.first_index + n - 1
            last = end if last is None else min(last, end)
        return first, last

    def plan(self, index: int) -> _Plan:
        """The frame numbers sample `index` reads (exposed for tests and tools): all inside
        `readable_range(index)` (see `ravar.data.sampling.fit_offsets`)."""
        rec = self.records[index]
        key = self.meta.frame_source.frame_index(rec.time)
        cfg = self.config
        rng = np.random.default_rng([self.seed, self.epoch, index])
        first, last = self.readable_range(index)
        lo, hi = first - key, None if last is None else last - key  # offsets that exist
        flip = False
        if self.train:
            offsets = jitter_offsets(self.offsets, rng) if cfg.temporal_jitter else self.offsets
            offsets = offsets[None]  # [1, T]
            flip = bool(rng.random() < cfg.hflip_prob)
        else:
            offsets = multi_clip_offsets(self.offsets, cfg.num_clips)  # [K, T]
            lo = max(lo, -self.half_window)  # phases stay within the clip's own window too
            hi = self.half_window if hi is None else min(hi, self.half_window)
        clips = key + fit_offsets(offsets, lo, hi)  # [K, T]
        return _Plan(clips=clips, key_frame=key, key_slot=key_slot(clips[0], key), flip=flip)

    def _cached_features(self, index: int, plan: _Plan) -> torch.Tensor:
        """The cached features of the clips of `plan`: `[K, T, Q, C]`."""
        stored = self.features.frames[index]  # [K', T] frame numbers the store was made from
        if np.array_equal(stored, plan.clips):
            rows = np.arange(len(stored))
        else:
            hit = np.flatnonzero((stored == plan.clips[0]).all(-1)) if len(plan.clips) == 1 else []
            if len(hit) == 0:
                raise RavarError(
                    f"{self.features.folder}: instance {index} ({self.records[index].key}) was "
                    f"cached from frames {stored.tolist()}, the clip settings now sample "
                    f"{plan.clips.tolist()}: rebuild the cache with `ravar cache`"
                )
            rows = hit[:1]
        feats = self.features.features(index)  # [K', T, Q, C] memory-mapped
        return torch.from_numpy(np.ascontiguousarray(feats[rows]))  # [K, T, Q, C]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        plan = self.plan(index)
        cached = self._cached_features(index, plan) if self.features is not None else None
        raw, wanted, image_size = None, None, None
        if not self.load_frames:
            image_size = tuple(self.features.image_size[index])
        else:
            wanted = np.unique(np.append(plan.clips.ravel(), plan.key_frame))  # frame numbers
            raw = self.source.read(rec.video_id, wanted.tolist())  # [F, H, W, 3] uint8 RGB
            if self.config.jpeg_draft and hasattr(self.source, "full_size"):  # decoded reduced
                image_size = self.source.full_size(rec.video_id, plan.key_frame)
        sample = build_sample(
            raw,
            wanted,
            plan.clips,
            plan.key_frame,
            rec.text,
            self._detections(rec),
            self.config,
            box=rec.box,
            actions=rec.actions,
            flip=plan.flip,
            uint8=self.uint8,
            image_size=image_size,
            visual_features=cached,
        )
        return sample | {
            "flipped": plan.flip,
            "index": index,
            "key": rec.key,
            "video_id": rec.video_id,
            "time": float(rec.time),
            "person_id": str(rec.person_id),
        }

    def _detections(self, rec: Record) -> list[Detection]:
        """The detections of the record's keyframe."""
        return [det for det in (rec.detections or []) if det.time is None or det.time == rec.time]


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples: tensors are stacked (`[B, ...]`), everything else becomes a list."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (int, float, bool)) and not isinstance(values[0], str):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
