"""Shared by the engine tests (no tests here): a tiny test-only model family registered as
`engine_test_model`, a tiny varied dataset, and a command-line entry with the `train` / `eval`
subcommands for subprocess and torchrun tests (`python tests/test_engine_support.py train ...`;
`--stall-checkpoint NAME:EPOCH:STAGE` first makes that checkpoint write stall, see `stall_at`).

The model: frames and keyframe mean-pooled to 6 numbers, the sentence as a hashed bag of words
(crc32, the same in every process), summed, then linear heads for actions and box.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ravar.data.clip_config import ClipConfig
from ravar.data.format import Record, write_split
from ravar.errors import RavarError
from ravar.labels import NUM_CLASSES
from ravar.models.base import RAVARModel
from ravar.models.losses import LossConfig
from ravar.models.output import ModelOutput
from ravar.models.registry import list_models, register_family, register_model
from ravar.util.box_ops import valid_boxes_from_unbounded

from builders import make_frames_dataset

NAME = "engine_test_model"  # not "*_tiny": zoo tests iterate over the tiny names
SUPPORT = Path(__file__).resolve()


def tiny_clip() -> ClipConfig:
    return ClipConfig(num_frames=2, size=(16, 16), window_seconds=3.0)


@dataclass
class TinyConfig:
    """Config of the test model."""

    dim: int = 16
    buckets: int = 64
    dropout: float = 0.1
    nan_at_call: int = 0  # > 0: the n-th training forward (and later ones) gives NaN logits
    clip: ClipConfig = field(default_factory=tiny_clip)
    loss: LossConfig = field(default_factory=LossConfig)


class TinyModel(RAVARModel):
    """Mean-pooled pixels + hashed bag-of-words sentence -> linear action and box heads."""

    family = NAME
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.text = nn.EmbeddingBag(config.buckets, config.dim, mode="mean")
        self.visual = nn.Linear(6, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.actions = nn.Linear(config.dim, NUM_CLASSES)
        self.box = nn.Linear(config.dim, 4)
        self.train_calls = 0

    def tokens(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        ids, offsets = [], []
        for text in texts:
            offsets.append(len(ids))
            ids += [zlib.crc32(w.encode()) % self.config.buckets for w in text.lower().split()]
        return torch.tensor(ids, device=device), torch.tensor(offsets, device=device)

    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        frames = batch["frames"]  # [B, T, 3, H, W]
        keyframe = batch["keyframe"]  # [B, 3, H, W]
        pixels = torch.cat([frames.mean((1, 3, 4)), keyframe.mean((2, 3))], dim=1)  # [B, 6]
        ids, offsets = self.tokens(batch["text"], frames.device)
        h = self.drop(torch.tanh(self.text(ids, offsets) + self.visual(pixels)))  # [B, D]
        logits = self.actions(h)  # [B, 80]
        if self.training and self.config.nan_at_call > 0:
            self.train_calls += 1
            if self.train_calls >= self.config.nan_at_call:
                logits = logits * float("nan")
        boxes = valid_boxes_from_unbounded(self.box(h))  # [B, 4]
        return ModelOutput.from_heads({"main": (logits, boxes)})  # [B, 80], [B, 4]


def register() -> None:
    """Register the test family and name (idempotent)."""
    register_family(TinyModel)
    if NAME not in list_models():
        register_model(NAME, NAME, TinyConfig, "engine tests: tiny linear model")


register()

PEOPLE = (
    ("the person on the left in the red shirt", [0.05, 0.2, 0.35, 0.9], [12, 17]),
    ("the person on the right in the blue shirt", [0.6, 0.1, 0.95, 0.8], [11, 80]),
    ("the tall person in the middle wearing green", [0.35, 0.1, 0.65, 0.95], [14, 17, 64]),
)


def make_engine_dataset(root: Path, test_size: int | None = 4) -> Path:
    """Frames of 2 videos x 2 keyframes (fps 5) and 3 people per keyframe: train has all 12
    instances, val 5 (odd, for 2-process sharding), test `test_size` (None: no test split)."""
    make_frames_dataset(root, video_ids=("vidA", "vidB"), times=(902, 903), fps=5.0)
    records = [
        Record(video_id=vid, time=t, person_id=p + 1, text=text, box=list(box), actions=acts)
        for vid in ("vidA", "vidB")
        for t in (902, 903)
        for p, (text, box, acts) in enumerate(PEOPLE)
    ]
    write_split(root, "train", records)
    write_split(root, "val", records[:5])
    if test_size is not None:
        write_split(root, "test", records[5 : 5 + test_size])
    return root


def strip_times(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """metrics.jsonl rows without the wall-clock entries (which differ between runs)."""
    return [
        {k: v for k, v in r.items() if k not in ("time", "epoch_time_s", "clips_per_s")}
        for r in rows
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build_parser() -> argparse.ArgumentParser:
    """A `ravar`-like parser with only the engine's subcommands."""
    from ravar.cli import evaluate as eval_cmd
    from ravar.cli import train as train_cmd

    parser = argparse.ArgumentParser(prog="ravar")
    sub = parser.add_subparsers(dest="command", required=True)
    train_cmd.register(sub)
    eval_cmd.register(sub)
    return parser


def cli_main(argv: list[str]) -> int:
    """Run a subcommand like `ravar.cli.main` does: a RavarError becomes one line and exit 1."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RavarError as e:
        print(f"ravar: error: {e}", file=sys.stderr)
        return 1


def subprocess_env(single_thread: bool = True) -> dict[str, str]:
    """Environment for child processes: one thread each unless told otherwise (the CI machine
    has 2 cores)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if single_thread:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


STALL_FLAG = "--stall-checkpoint"
STALL_MESSAGE = "checkpoint write stalled"


def stall_at(spec: str) -> None:
    """Make the write of checkpoint NAME after EPOCH stall at STAGE (`spec` "NAME:EPOCH:STAGE",
    stages as `ravar.engine.checkpoint.STAGE_CALLBACKS`), printing STALL_MESSAGE to stderr
    first, so that a test can kill the process at that moment."""
    from ravar.engine import checkpoint

    def stall(stage: str, name: str, epoch: int) -> None:
        if f"{name}:{epoch}:{stage}" == spec:
            print(f"{STALL_MESSAGE}: {spec}", file=sys.stderr, flush=True)
            time.sleep(3600)

    checkpoint.STAGE_CALLBACKS.append(stall)


RECORD_FLAG = "--record-checkpoint-writes"


def record_writes_to(path: str) -> None:
    """Append "RANK NAME EPOCH" to the file `path` each time this process starts writing a
    checkpoint (so that a test sees which processes wrote which checkpoints)."""
    from ravar.engine import checkpoint

    rank = os.environ.get("RANK", "0")

    def record(stage: str, name: str, epoch: int) -> None:
        if stage == "write":
            with open(path, "a") as f:
                f.write(f"{rank} {name} {epoch}\n")

    checkpoint.STAGE_CALLBACKS.append(record)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == [STALL_FLAG]:
        stall_at(argv[1])
        argv = argv[2:]
    if argv[:1] == [RECORD_FLAG]:
        record_writes_to(argv[1])
        argv = argv[2:]
    sys.exit(cli_main(argv))
