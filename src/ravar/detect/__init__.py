"""Person (and object) detections for every keyframe of a dataset: `ravar data detect`.

`build_dataset_detector` picks a detector from its spec string:

    "annotations"          every annotated person at the same video and time (any split)
    "ava-proposals:FILE"   AVA person proposals: the dense proposals pickle or predicted-boxes CSV
    "detr:PATH"            a local Hugging Face DETR (batched; on --device cuda when asked)
    "hog"                  OpenCV's HOG people detector
    "boxes:FILE"           the JSON of `ravar predict --boxes`, every entry naming its video_id

`detect_dataset` (run.py) runs one over splits of a dataset folder, resumably, and writes the
detections into the records; `summarise` (summary.py) measures what they cover.
"""

from __future__ import annotations

import os
from pathlib import Path

from ravar.data.format import load_meta
from ravar.detect.base import DatasetDetector, DatasetKeyframe, ImageDetector
from ravar.errors import RavarError

DATASET_DETECTOR_CHOICES = ("annotations", "ava-proposals:FILE", "detr:PATH", "hog", "boxes:FILE")


def check_detector_spec(spec: str, flag: str = "--detector") -> None:
    """Refuse (one line) a spec that names no detector or a file that does not exist, before any
    work is done (the importers' --detect checks it before importing)."""
    kind, sep, arg = spec.partition(":")
    if spec in ("annotations", "hog"):
        return
    if not (sep and arg and kind in ("ava-proposals", "detr", "boxes")):
        raise RavarError(
            f"{flag}: unknown detector {spec!r}; choose from {', '.join(DATASET_DETECTOR_CHOICES)}"
        )
    if kind != "detr" and not Path(arg).is_file():
        raise RavarError(f"{flag} {spec}: {arg}: no such file")


def build_dataset_detector(
    spec: str,
    dataset_dir: str | os.PathLike,
    *,
    device: str = "cpu",
    min_score: float | None = None,
) -> DatasetDetector:
    """The detector `spec` names (module docstring) for the dataset in `dataset_dir`;
    `min_score` overrides the detector's score threshold."""
    check_detector_spec(spec)
    meta = load_meta(dataset_dir)
    kind, sep, arg = spec.partition(":")
    if spec == "annotations":
        from ravar.detect.annotations import AnnotationDetector

        return AnnotationDetector(dataset_dir)
    if spec == "hog":
        from ravar.inference.detectors.hog import HOGPersonDetector

        kw = {} if min_score is None else {"min_score": min_score}
        return ImageDetector(HOGPersonDetector(**kw), meta.frame_source)
    if sep and arg and kind == "detr":
        from ravar.inference.detectors.detr import HFDetrDetector

        kw = {} if min_score is None else {"min_score": min_score}
        return ImageDetector(HFDetrDetector(arg, device=device, **kw), meta.frame_source)
    if sep and arg and kind == "ava-proposals":
        from ravar.detect.proposals import AVAProposalsDetector

        return AVAProposalsDetector(Path(arg), min_score=min_score or 0.0)
    if sep and arg and kind == "boxes":
        from ravar.detect.boxes import DatasetBoxesDetector

        return DatasetBoxesDetector(Path(arg), meta.frame_source, min_score=min_score or 0.0)
    raise AssertionError(f"unhandled detector spec {spec!r}")  # check_detector_spec refused it


__all__ = [
    "DATASET_DETECTOR_CHOICES",
    "DatasetDetector",
    "DatasetKeyframe",
    "build_dataset_detector",
    "check_detector_spec",
]
