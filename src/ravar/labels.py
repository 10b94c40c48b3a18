"""The label space of RAVAR: the 80 AVA v2.2 atomic actions (shipped with the package)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import torch

NUM_CLASSES = 80
ACTION_TYPES = ("PERSON_MOVEMENT", "OBJECT_MANIPULATION", "PERSON_INTERACTION")


@dataclass(frozen=True)
class ActionClass:
    """One AVA action: its id (1..80), name and group."""

    id: int
    name: str
    type: str


@lru_cache(maxsize=1)
def action_classes() -> tuple[ActionClass, ...]:
    """All 80 AVA v2.2 actions in id order."""
    text = resources.files("ravar").joinpath("resources/ava_actions_v2.2.csv").read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    classes = tuple(ActionClass(int(r["id"]), r["name"], r["type"]) for r in rows)
    ids = [c.id for c in classes]
    if ids != list(range(1, NUM_CLASSES + 1)):
        raise RuntimeError("the packaged AVA label file is damaged: ids are not 1..80")
    return classes


def action_name(action_id: int) -> str:
    """Name of the AVA action with id `action_id` (1..80)."""
    check_action_id(action_id)
    return action_classes()[action_id - 1].name


def action_id_by_name(name: str) -> int:
    """The id of the AVA action called `name` (exact match, e.g. ``"walk"``)."""
    for c in action_classes():
        if c.name == name:
            return c.id
    raise KeyError(f"no AVA action is named {name!r}")


def is_valid_action_id(action_id: object) -> bool:
    """True when `action_id` is an int (not a bool) in 1..80."""
    return (
        isinstance(action_id, int)
        and not isinstance(action_id, bool)
        and (1 <= action_id <= NUM_CLASSES)
    )


def check_action_id(action_id: object) -> int:
    """Return `action_id` if it is a valid AVA id, else raise ValueError."""
    if not is_valid_action_id(action_id):
        raise ValueError(f"action id {action_id!r} is not an AVA v2.2 id (1..{NUM_CLASSES})")
    return int(action_id)  # type: ignore[arg-type]


def multi_hot(action_ids: Iterable[int]) -> torch.Tensor:
    """Multi-hot float vector `[80]` with ones at the given AVA ids (index = id - 1)."""
    out = torch.zeros(NUM_CLASSES)
    for a in action_ids:
        out[check_action_id(a) - 1] = 1.0
    return out


def ids_from_multi_hot(vector: torch.Tensor) -> list[int]:
    """AVA ids whose entry in the `[80]` vector is nonzero."""
    if vector.shape != (NUM_CLASSES,):
        raise ValueError(f"expected a vector of shape [{NUM_CLASSES}], got {list(vector.shape)}")
    return [int(i) + 1 for i in torch.nonzero(vector).flatten().tolist()]
