"""`Predictor`: a loaded checkpoint that answers "what is the person this sentence describes doing,
and where are they?" for keyframes of a video file."""

from __future__ import annotations

import os
import time as clock
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ravar.data.dataset import collate
from ravar.data.frames import VideoReader
from ravar.engine.batch import to_device, uint8_pixels
from ravar.errors import PredictError
from ravar.inference.detectors import Detector, NoDetector, build_detector
from ravar.inference.inputs import check_texts, open_video
from ravar.inference.keyframes import Keyframe, keyframe_times
from ravar.inference.prepare import PreparedChunk, chunk_frames, prepare_chunk
from ravar.inference.results import KeyframeResult, top_actions
from ravar.models.base import RAVARModel

AUTO = "auto"  # detector choice: "hog" for models that read detections, "none" otherwise


class Predictor:
    """A model ready for video inference. Clips are sampled as the model's `ClipConfig` says
    (the dataset's evaluation sampling), so predictions match what training saw."""

    def __init__(
        self,
        model: RAVARModel,
        *,
        detector: str | Detector | None = AUTO,
        device: str | torch.device = "cpu",
        checkpoint: str | os.PathLike | None = None,
        model_name: str | None = None,
        min_score: float | None = None,
    ) -> None:
        if model.is_oracle:
            raise PredictError(
                f"model {model_name or model.family!r} is an oracle (it reads the ground-truth "
                "box); it cannot predict on a video"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.checkpoint = str(checkpoint) if checkpoint is not None else None
        self.model_name = model_name or model.family
        self.detector = self.resolve_detector(detector, min_score)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        detector: str | Detector | None = AUTO,
        device: str | torch.device = "cpu",
        min_score: float | None = None,
        backbones: Mapping[str, str | os.PathLike] | None = None,
    ) -> Predictor:
        """Load checkpoint `path` (CheckpointError naming the file when it is unusable);
        `backbones`: local copies of backbones whose frozen weights it left out
        (`load_model`)."""
        from ravar.engine.checkpoint import find_checkpoint, load_model, read_checkpoint_config

        root = find_checkpoint(path)
        config = read_checkpoint_config(root)
        model = load_model(root, device=device, backbones=backbones)
        return cls(
            model,
            detector=detector,
            device=device,
            checkpoint=root,
            model_name=config["model_name"],
            min_score=min_score,
        )

    @property
    def clip(self) -> Any:
        """The model's `ClipConfig`."""
        return self.model.config.clip

    def resolve_detector(
        self, detector: str | Detector | None, min_score: float | None = None
    ) -> Detector:
        """The Detector for `detector` ("auto": HOG when the model reads detections, with
        `min_score` if given); refuses "none" for a model that needs detections."""
        if detector == AUTO:
            detector = "hog" if self.model.needs_detections else "none"
        built = build_detector(detector, min_score=min_score)
        if self.model.needs_detections and isinstance(built, NoDetector):
            raise PredictError(
                f"model {self.model_name!r} reads keyframe detections (location stream); "
                "detector 'none' gives it none: use a detector (hog, detr:PATH) or a boxes file"
            )
        return built

    def describe(self) -> dict[str, Any]:
        """Checkpoint and model facts for predictions.json."""
        return {
            "checkpoint": self.checkpoint,
            "model": {
                "name": self.model_name,
                "family": self.model.family,
                "needs_detections": bool(self.model.needs_detections),
                "uses_text": bool(self.model.uses_text),
                "clip": self.clip.to_dict(),
            },
        }

    @torch.inference_mode()
    def predict(
        self,
        video: str | os.PathLike | VideoReader,
        text: str | Sequence[str],
        time: float | Sequence[float] | None = None,
        every: float | None = None,
        detector: str | Detector | None = None,
        *,
        top_k: int = 5,
        batch_size: int = 8,
        progress: bool = False,
        on_chunk: Callable[[list[Keyframe], list[KeyframeResult]], None] | None = None,
    ) -> list[KeyframeResult]:
        """One result per (keyframe time, sentence), time-major, sentences in the given order.

        Times: `time` (seconds, one or a list), every `every` seconds from 0, or the middle of the
        video. `detector` overrides the predictor's for this call. Up to `batch_size` clips go
        through the model at once. Only the frames the clips need are decoded, in one forward
        pass over the video for time-ordered keyframes; the next group of keyframes is decoded
        and detected (in a worker thread) while the model runs on the current one.
        `on_chunk(keyframes, results)` is called after each group of keyframes (e.g. to draw
        them without decoding them again)."""
        texts = check_texts(text)
        if top_k < 1:
            raise PredictError(f"top_k: must be at least 1, got {top_k}")
        if batch_size < 1:
            raise PredictError(f"batch_size: must be at least 1, got {batch_size}")
        reader = open_video(video)
        times = keyframe_times(reader.duration, time, every)
        det = self.detector if detector is None else self.resolve_detector(detector)
        per_chunk = max(1, batch_size // len(texts))
        chunks = [times[s : s + per_chunk] for s in range(0, len(times), per_chunk)]
        frames = chunk_frames(reader, chunks, self.clip)
        results: list[KeyframeResult] = []
        bar = tqdm(total=len(times), unit="keyframe", disable=not progress, leave=False)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ravar-prepare")
        uint8 = uint8_pixels(self.device)
        try:
            ahead = pool.submit(prepare_chunk, frames, 0, texts, det, self.clip, uint8)
            for group in range(len(chunks)):
                prepared = ahead.result()
                if group + 1 < len(chunks):  # decode and detect the next group meanwhile
                    ahead = pool.submit(
                        prepare_chunk, frames, group + 1, texts, det, self.clip, uint8
                    )
                found = self._run_model(prepared, reader, top_k, batch_size)
                if on_chunk is not None:
                    on_chunk(prepared.keyframes, found)
                results += found
                bar.update(len(prepared.times))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        return results

    def inputs(
        self,
        video: str | os.PathLike | VideoReader,
        text: str | Sequence[str],
        time: float | Sequence[float] | None = None,
        every: float | None = None,
        detector: str | Detector | None = None,
    ) -> dict[str, Any]:
        """The collated batch that `predict` gives the model for these keyframes and sentences
        (all in one batch, time-major), for checks and tools."""
        reader = open_video(video)
        times = keyframe_times(reader.duration, time, every)
        det = self.detector if detector is None else self.resolve_detector(detector)
        frames = chunk_frames(reader, [times], self.clip)
        return collate(prepare_chunk(frames, 0, check_texts(text), det, self.clip).samples)

    def _check_finite(self, prob: torch.Tensor, box: torch.Tensor, chunk: PreparedChunk) -> None:
        """A PredictError naming the checkpoint when a box [N, 4] or an action probability
        [N, 80] is NaN or infinite: such a result is neither returned nor drawn."""
        bad = ~(torch.isfinite(prob).all(1) & torch.isfinite(box).all(1))  # [N]
        if not bool(bad.any()):
            return
        i = int(bad.nonzero()[0])
        when = chunk.keyframes[chunk.owners[i]].time
        weight = _first_non_finite(self.model)
        why = (
            f"its weight {weight!r} holds NaN/inf values"
            if weight is not None
            else "its weights are finite: these inputs drive it out of range"
        )
        source = self.checkpoint if self.checkpoint is not None else f"model {self.model_name!r}"
        raise PredictError(
            f"{source}: the model gives a non-finite box or action probabilities at "
            f"t={when:.2f} s ({why})"
        )

    def _run_model(
        self, chunk: PreparedChunk, reader: VideoReader, top_k: int, batch_size: int
    ) -> list[KeyframeResult]:
        """The results of the samples of `chunk` (keyframes of `reader`'s video x sentences)."""
        probs, boxes, model_ms = [], [], []
        for s in range(0, len(chunk.samples), batch_size):
            batch = collate(chunk.samples[s : s + batch_size])
            t0 = clock.perf_counter()
            out = self.model(to_device(batch, self.device))
            logits, box = out.logits, out.boxes  # [b, 80], [b, 4]
            probs.append(torch.sigmoid(logits.float()).cpu())
            boxes.append(box.float().cpu())
            model_ms += [(clock.perf_counter() - t0) * 1000 / len(logits)] * len(logits)
        prob = torch.cat(probs)  # [N, 80]
        box = torch.cat(boxes)  # [N, 4]
        self._check_finite(prob, box, chunk)
        width, height = chunk.samples[0]["image_size"]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)

        out = []
        for i, (sample, j) in enumerate(zip(chunk.samples, chunk.owners, strict=True)):
            p = prob[i].tolist()
            key = chunk.keyframes[j]
            out.append(
                KeyframeResult(
                    video=str(reader.path),
                    time=key.time,
                    frame_index=key.index,
                    text=sample["text"],
                    box=box[i].tolist(),
                    box_pixels=(box[i] * scale).tolist(),
                    image_size=(int(width), int(height)),
                    actions=top_actions(p, top_k),
                    probabilities=p,
                    detections=list(chunk.detections[j]),
                    clip_frames=[int(f) for f in chunk.clips[j]],
                    timings_ms={
                        "decode": chunk.decode_ms,
                        "detect": chunk.detect_ms,
                        "model": model_ms[i],
                    },
                )
            )
        return out


def _first_non_finite(model: torch.nn.Module) -> str | None:
    """The name of the model's first parameter or buffer holding NaN or inf, if any."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def load(
    checkpoint: str | os.PathLike,
    *,
    detector: str | Detector | None = AUTO,
    device: str | torch.device = "cpu",
    backbones: Mapping[str, str | os.PathLike] | None = None,
) -> Predictor:
    """A Predictor for checkpoint directory `checkpoint` (`ravar.load`); `backbones` maps a
    backbone's module name ("visual", "text") to a local copy when the checkpoint left out its
    frozen weights."""
    return Predictor.from_checkpoint(
        Path(checkpoint), detector=detector, device=device, backbones=backbones
    )
