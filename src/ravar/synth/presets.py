"""Generation presets of RefAVA-Synth: image size, clip timing, split sizes and scene difficulty."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ravar.errors import RavarError

SPLITS = ("train", "val", "test", "test_novel")
SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}


@dataclass(frozen=True)
class Preset:
    """Everything that shapes a generated dataset apart from the seed."""

    name: str
    width: int
    height: int
    clips: dict[str, int] = field(default_factory=dict)  # scenes per split
    fps: float = 10.0
    clip_seconds: float = 3.0  # each clip spans [0, clip_seconds]; keyframe in the middle
    people: tuple[int, int] = (2, 5)  # min, max people per scene
    pair_prob: float = 0.35  # chance that the next people form an interacting pair
    share_prob: float = 0.3  # chance that a person copies an attribute of an earlier one
    hat_prob: float = 0.35
    spacing: float = 1.0  # < 1 packs people closer (more occlusion)
    max_targets: int = 3  # referred people (records) per scene at most
    distractors: tuple[int, int] = (0, 2)  # objects lying on the floor
    noise: float = 2.5  # std of per-pixel camera noise (0..255 scale)

    @property
    def keyframe_time(self) -> float:
        """Time of the keyframe in every clip, seconds."""
        return self.clip_seconds / 2

    @property
    def num_frames(self) -> int:
        """Frames per clip (indices 0..num_frames-1 at times index / fps)."""
        return int(round(self.clip_seconds * self.fps)) + 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["people"] = list(self.people)
        d["distractors"] = list(self.distractors)
        return d


PRESETS: dict[str, Preset] = {
    "small": Preset(
        name="small",
        width=64,
        height=64,
        clips={"train": 48, "val": 24, "test": 24, "test_novel": 24},
        people=(2, 4),
    ),
    "standard": Preset(
        name="standard",
        width=96,
        height=96,
        clips={"train": 2000, "val": 300, "test": 400, "test_novel": 300},
        people=(2, 5),
    ),
    "hard": Preset(
        name="hard",
        width=112,
        height=112,
        clips={"train": 2400, "val": 300, "test": 400, "test_novel": 300},
        people=(4, 6),
        share_prob=0.65,
        spacing=0.6,
        max_targets=4,
        distractors=(1, 3),
        noise=5.0,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; a RavarError names the valid ones otherwise."""
    if name not in PRESETS:
        raise RavarError(f"--preset: unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name]
