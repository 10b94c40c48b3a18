"""Coverage and speed of `ravar data detect`'s detectors on RefAVA-Synth.

    python benchmarks/detect_coverage.py [--preset small] [--seed 0] [--detectors annotations hog]
        [--work DIR] [--md FILE]

Generates RefAVA-Synth (`ravar synth DIR --preset small --seed 0`), copies its annotations with the
detections stripped (the copy reads the original's frames), runs each detector on the copy with
`ravar.detect.run.detect_dataset`, and prints per split and detector: detections and persons per
keyframe and the Acc@0.5 ceiling (share of referred boxes matched by a person detection at
IoU >= 0.5), beside the synth's own noisy detections as generated; then each detector's speed
(keyframes per second over all splits, frame decoding included) and the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from ravar.data.format import list_splits, load_meta, read_split, write_split
from ravar.detect.run import detect_dataset
from ravar.detect.summary import SplitSummary, summarise
from ravar.synth.generate import generate
from ravar.util.machine import describe_machine

GENERATED = "synth (as generated)"


def stripped_copy(data: Path, out: Path) -> Path:
    """A dataset folder with `data`'s records without detections, reading `data`'s frames."""
    meta = load_meta(data)
    root = Path(meta.frame_source.root)
    meta.frame_source.root = str(root if root.is_absolute() else (data / root).resolve())
    meta.save(out)
    for split in list_splits(data):
        write_split(
            out, split, [dataclasses.replace(r, detections=None) for r in read_split(data, split)]
        )
    return out


def run(args: argparse.Namespace, work: Path) -> str:
    data = work / "synth"
    start = time.perf_counter()
    generate(data, preset=args.preset, seed=args.seed, workers=1, with_card=False)
    made = time.perf_counter() - start
    splits = list_splits(data)
    results: dict[str, dict[str, SplitSummary]] = {
        GENERATED: {s: summarise(s, read_split(data, s)) for s in splits}
    }
    speed: dict[str, tuple[int, float]] = {}
    for spec in args.detectors:
        copy = stripped_copy(data, work / f"copy-{spec.replace(':', '_').replace('/', '_')}")
        start = time.perf_counter()
        summaries = detect_dataset(copy, spec, progress="off", say=lambda s: None)
        seconds = time.perf_counter() - start
        results[spec] = {s.split: s for s in summaries}
        speed[spec] = (sum(s.keyframes for s in summaries), seconds)

    lines = [
        f"RefAVA-Synth preset {args.preset}, seed {args.seed} (generated in {made:.0f} s); "
        f"{describe_machine()}",
        "",
        "| split | detections from | keyframes | detections / keyframe | persons / keyframe "
        "| Acc@0.5 ceiling |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for split in splits:
        for name, by_split in results.items():
            s = by_split[split]
            per = max(s.keyframes, 1)
            lines.append(
                f"| {split} | {name} | {s.keyframes} | {s.detections / per:.2f} | "
                f"{s.persons / per:.2f} | {100 * s.ceiling:.1f} ({s.matched}/{s.records}) |"
            )
    lines += ["", "| detector | keyframes | seconds | keyframes / s |", "|---|---:|---:|---:|"]
    for spec, (n, seconds) in speed.items():
        lines.append(f"| {spec} | {n} | {seconds:.2f} | {n / seconds:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", nargs="+", default=["annotations", "hog"])
    parser.add_argument("--work", type=Path, help="keep the datasets here (default: a temp dir)")
    parser.add_argument("--md", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        table = run(args, args.work)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            table = run(args, Path(tmp))
    print(table)
    if args.md is not None:
        command = " ".join(["python benchmarks/detect_coverage.py", *sys.argv[1:]])
        args.md.write_text(f"`{command}`\n\n{table}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
