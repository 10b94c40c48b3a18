"""A Hugging Face DETR object detector, loaded from local files only (never downloaded)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ravar.data.format import Detection
from ravar.errors import PredictError
from ravar.inference.detectors import Detector
from ravar.inference.keyframes import Keyframe
from ravar.util.box_ops import box_problem
from ravar.util.hf_quiet import quiet_transformers


class HFDetrDetector(Detector):
    """`DetrForObjectDetection` + its image processor from a folder or the local HF cache
    (e.g. a saved facebook/detr-resnet-50). Categories are the model's `id2label` names."""

    kind = "detr"

    def __init__(
        self, name_or_path: str | Path, min_score: float = 0.5, device: str = "cpu"
    ) -> None:
        from transformers import AutoImageProcessor, DetrForObjectDetection, DetrImageProcessor

        if not 0.0 <= min_score <= 1.0:
            raise PredictError(f"detr detector: min_score must be in [0, 1], got {min_score}")
        self.name_or_path = str(name_or_path)
        self.min_score = float(min_score)
        self.device = torch.device(device)
        with quiet_transformers():
            try:
                model = DetrForObjectDetection.from_pretrained(
                    self.name_or_path, local_files_only=True
                )
            except Exception as e:  # missing folder, not cached, not a DETR, damaged weights
                detail = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise PredictError(
                    f"detector detr:{self.name_or_path}: cannot load a DETR from local files "
                    f"(nothing is downloaded): {detail}"
                ) from None
            try:
                processor = AutoImageProcessor.from_pretrained(
                    self.name_or_path, local_files_only=True
                )
            except Exception:  # no preprocessor_config.json: DETR's standard preprocessing
                processor = DetrImageProcessor()
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.labels: dict[int, str] = {int(k): str(v) for k, v in model.config.id2label.items()}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name_or_path": self.name_or_path, "min_score": self.min_score}

    @torch.no_grad()
    def detect(self, keyframes: Sequence[Keyframe]) -> list[list[Detection]]:
        if not keyframes:
            return []
        images = [k.image for k in keyframes]
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        sizes = [tuple(img.shape[:2]) for img in images]  # (H, W) each
        found = self.processor.post_process_object_detection(
            outputs, threshold=self.min_score, target_sizes=sizes
        )
        out = []
        for (height, width), f in zip(sizes, found, strict=True):
            dets = []
            for box, score, label in zip(f["boxes"], f["scores"], f["labels"], strict=True):
                x1, y1, x2, y2 = (float(v) for v in box.float().cpu())
                norm = [
                    round(min(max(x1 / width, 0.0), 1.0), 6),
                    round(min(max(y1 / height, 0.0), 1.0), 6),
                    round(min(max(x2 / width, 0.0), 1.0), 6),
                    round(min(max(y2 / height, 0.0), 1.0), 6),
                ]
                if box_problem(norm) is not None:  # empty once clipped to the image
                    continue
                category = self.labels.get(int(label), f"class_{int(label)}")
                dets.append(Detection(box=norm, category=category, score=round(float(score), 6)))
            out.append(sorted(dets, key=lambda d: -d.score))
        return out
