"""`ravar predict`: what the person a sentence describes does in a video, and where they are."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ravar.cli.argtypes import add_backbone_option, add_device_option, backbones_of, positive_int
from ravar.errors import PredictError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `predict` to the `ravar` sub-parsers `sub`."""
    p = sub.add_parser(
        "predict",
        help="run a checkpoint on a video: box and actions of the person a sentence describes",
        description="Predict, for keyframes of VIDEO, the box and the AVA actions of the person "
        "each sentence describes. Clips are sampled as the checkpoint's model was trained. "
        "Writes predictions.json, keyframe_<time>.png per keyframe (and clip_<time>.mp4 with "
        "--mp4) into --out.",
        epilog="Detectors: 'hog' (OpenCV people detector), 'none', 'detr:NAME_OR_PATH' (a local "
        'Hugging Face DETR), or --boxes FILE (JSON: {"units": "normalized"|"pixels", '
        '"detections": [{"time", "box", "category", "score"}]}). Default: hog for models '
        "with a location stream, none otherwise. A checkpoint trained on RefAVA-Synth is not "
        "expected to be right on real footage.",
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="e.g. RUN_DIR/best")
    p.add_argument("--video", required=True, metavar="FILE", help="a video file (mp4, avi, ...)")
    p.add_argument(
        "--text",
        required=True,
        action="append",
        metavar="SENTENCE",
        help="who to look at, e.g. 'the man in the blue shirt' (repeat for several people)",
    )
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--time", type=float, nargs="+", metavar="S", help="keyframe time(s) in seconds"
    )
    when.add_argument("--every", type=float, metavar="S", help="a keyframe every S seconds from 0")
    p.add_argument("--out", type=Path, metavar="DIR", help="default: ./predict-<video name>")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="actions listed")
    p.add_argument(
        "--threshold", type=float, metavar="P", help="also list every action with probability >= P"
    )
    p.add_argument(
        "--detector", metavar="NAME", help="hog | none | detr:NAME_OR_PATH (default: see below)"
    )
    p.add_argument("--boxes", type=Path, metavar="FILE", help="detections from a JSON file")
    p.add_argument(
        "--det-score", type=float, metavar="S", help="minimum detection score (default: detector's)"
    )
    p.add_argument("--mp4", action="store_true", help="also write an annotated clip per keyframe")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="N", help="clips per pass")
    add_device_option(p)
    p.add_argument("--verbose", action="store_true", help="print per-stage timings")
    add_backbone_option(p)
    p.set_defaults(func=run_predict)


def _detector_spec(args: argparse.Namespace) -> str:
    if args.boxes is not None:
        if args.detector not in (None, "boxes"):
            raise PredictError(f"--boxes and --detector {args.detector}: give one of them")
        return f"boxes:{args.boxes}"
    return args.detector or "auto"


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A failed write of `path` (disk full, no permission) as one PredictError line."""
    from ravar.util.io import os_reason

    try:
        yield
    except OSError as e:
        raise PredictError(f"{path}: cannot write ({os_reason(e)})") from None


def _fmt(values: list[float], digits: int) -> str:
    return "[" + ", ".join(f"{v:.{digits}f}" for v in values) + "]"


def _print_result(r: Any, threshold: float | None, verbose: bool, needs_detections: bool) -> None:
    print(f't={r.time:.2f} s (frame {r.frame_index})  "{r.text}"')
    print(f"  box  {_fmt(r.box_pixels, 1)} px  {_fmt(r.box, 3)} normalised")
    print("  top  " + ", ".join(f"{a.name} {a.probability:.3f}" for a in r.actions))
    if threshold is not None:
        above = r.above(threshold)
        listed = ", ".join(f"{a.name} {a.probability:.3f}" for a in above) or "none"
        print(f"  >= {threshold:g}  {listed}")
    if needs_detections and not r.detections:
        print("  note: no detections on this keyframe (the model's location stream got none)")
    if verbose:
        t = r.timings_ms
        print(
            f"  detections {len(r.detections)}; ms: decode {t['decode']:.1f}, detect "
            f"{t['detect']:.1f}, model {t['model']:.1f}"
        )


def run_predict(args: argparse.Namespace) -> int:
    """Check the inputs, run the checkpoint, print and write the results; exit code 0."""
    from ravar.inference.detectors import build_detector
    from ravar.inference.inputs import check_texts, open_video
    from ravar.inference.keyframes import keyframe_times
    from ravar.inference.output import (
        PREDICTIONS_FILE,
        group_by_time,
        mp4_name,
        png_name,
        predictions_document,
        video_info,
    )
    from ravar.inference.predictor import Predictor
    from ravar.inference.render import write_clip_mp4, write_keyframe_png
    from ravar.util.devices import resolve_device
    from ravar.util.hf_quiet import quiet_transformers
    from ravar.util.io import check_writable, write_json

    texts = check_texts(args.text, what="--text")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise PredictError(f"--threshold: must be in [0, 1], got {args.threshold:g}")
    if args.det_score is not None and not 0.0 <= args.det_score <= 1.0:
        raise PredictError(f"--det-score: must be in [0, 1], got {args.det_score:g}")
    # the output folder is checked before the model is loaded and the video decoded
    out = args.out if args.out is not None else Path(f"predict-{Path(args.video).stem}")
    check_writable(out, f"--out {out}", error=PredictError)
    reader = open_video(args.video)
    times = keyframe_times(reader.duration, args.time, args.every, prefix="--")
    spec = _detector_spec(args)
    with quiet_transformers():
        # an explicit detector is built (and its boxes file checked) before the model loads
        detector = spec if spec == "auto" else build_detector(spec, min_score=args.det_score)
        device = resolve_device(args.device)
        predictor = Predictor.from_checkpoint(
            args.checkpoint,
            detector=detector,
            device=device,
            min_score=args.det_score,
            backbones=backbones_of(args),
        )

    files: dict[float, dict[str, str]] = {}

    def draw(keyframes: list, results: list) -> None:
        for keyframe, group in zip(keyframes, group_by_time(results), strict=True):
            written = {"png": png_name(keyframe.time)}
            with _writing(out / written["png"]):
                write_keyframe_png(keyframe.image, group, out / written["png"])
            if args.mp4:
                written["mp4"] = mp4_name(keyframe.time)
                with _writing(out / written["mp4"]):
                    write_clip_mp4(reader, group, out / written["mp4"])
            files[keyframe.time] = written

    results = predictor.predict(
        reader,
        texts,
        time=times,
        batch_size=args.batch_size,
        top_k=args.top_k,
        progress=args.every is not None and sys.stderr.isatty(),
        on_chunk=draw,
    )
    for r in results:
        _print_result(r, args.threshold, args.verbose, predictor.model.needs_detections)
    document = predictions_document(
        results,
        predictor=predictor.describe(),
        detector=predictor.detector.describe(),
        video=video_info(reader),
        top_k=args.top_k,
        threshold=args.threshold,
        files=files,
    )
    with _writing(out / PREDICTIONS_FILE):
        write_json(out / PREDICTIONS_FILE, document)
    print(
        f"{len(results)} prediction(s) at {len(files)} keyframe(s) of {args.video} "
        f"(model {predictor.model_name}, detector {predictor.detector.kind}); wrote "
        f"{PREDICTIONS_FILE} and {'PNGs and MP4s' if args.mp4 else 'PNGs'} to {out}"
    )
    return 0
