"""`ravar data detect`: write keyframe detections into every record of a dataset's splits."""

from __future__ import annotations

import argparse

from ravar.cli.argtypes import add_device_option, positive_int
from ravar.errors import RavarError

DETECTOR_HELP = (
    "annotations (every annotated person at the same video and time, any split), "
    "ava-proposals:FILE (AVA person proposals: dense proposals .pkl or predicted-boxes .csv), "
    "detr:PATH (a local Hugging Face DETR folder), hog (OpenCV people detector), "
    "boxes:FILE (the JSON of `ravar predict --boxes`, each entry with a video_id)"
)


def register(dsub: argparse._SubParsersAction) -> None:
    """Add `detect` to the `ravar data` sub-parsers `dsub`."""
    p = dsub.add_parser(
        "detect",
        help="write keyframe detections (persons) into the records, resumably",
        description="Run a detector once per keyframe (video_id, time) of the chosen splits and "
        "store its detections in every record of that keyframe. A killed run continues where "
        "it stopped; a split already done by the same detector is skipped unless --overwrite. "
        "Prints per split: keyframes, detections and persons per keyframe, and the share of "
        "referred boxes matched by a person detection at IoU >= 0.5 (the Acc@0.5 ceiling).",
        epilog=f"Detectors: {DETECTOR_HELP}.",
    )
    p.add_argument("dir", metavar="DIR", help="dataset folder (with dataset.json)")
    add_detector_argument(p, "--detector", required=True)
    p.add_argument("--splits", nargs="+", metavar="SPLIT", help="default: every split of DIR")
    add_device_option(p, default="cpu")  # for detr
    p.add_argument("--overwrite", action="store_true", help="redo splits already done")
    p.add_argument(
        "--batch-size", type=positive_int, default=8, metavar="N", help="keyframes per call"
    )
    p.add_argument(
        "--min-score", type=float, metavar="S", help="drop detections below S (default: detector's)"
    )
    p.set_defaults(func=run_detect)


def add_detector_argument(p: argparse.ArgumentParser, flag: str, required: bool = False) -> None:
    """The detector option of `ravar data detect` (and of the importers' --detect)."""
    p.add_argument(flag, required=required, metavar="NAME", help=f"one of: {DETECTOR_HELP}")


def detect(
    dataset_dir: str,
    detector: str,
    splits: list[str] | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    batch_size: int = 8,
    min_score: float | None = None,
) -> int:
    """Run the detection and print the per-split summary; exit code 0."""
    from ravar.detect.run import detect_dataset
    from ravar.util.devices import check_device

    device = str(check_device(device))
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise RavarError(f"--min-score: must be in [0, 1], got {min_score}")
    splits = [s for item in splits or [] for s in item.split(",") if s] or None
    detect_dataset(
        dataset_dir,
        detector,
        splits=splits,
        device=device,
        overwrite=overwrite,
        batch_size=batch_size,
        min_score=min_score,
    )
    return 0


def run_detect(args: argparse.Namespace) -> int:
    """Run `ravar data detect`."""
    return detect(
        args.dir,
        args.detector,
        args.splits,
        args.device,
        args.overwrite,
        args.batch_size,
        args.min_score,
    )
