"""Scenes: who is in a clip (attributes, actions, interaction pairs), where they stand, and
their motion and capsules over the clip."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ravar.synth import catalog as C
from ravar.synth.actions import Motion, Partner, motion_for
from ravar.synth.appearance import (
    HAIR_COLOURS,
    HAT_COLOURS,
    OBJECT_COLOURS,
    SHIRT_COLOURS,
    SIZE_SCALE,
    SKIN_TONES,
    TROUSER_COLOURS,
    person_segments,
)
from ravar.synth.figures import Segments
from ravar.synth.presets import Preset
from ravar.synth.raster import segment_extent

# (shirt, trousers) combinations that only people in the test_novel split wear.
NOVEL_COMBOS = frozenset(
    {
        ("red", "white"),
        ("green", "brown"),
        ("blue", "grey"),
        ("yellow", "black"),
        ("purple", "blue"),
        ("orange", "green"),
        ("pink", "black"),
        ("white", "blue"),
        ("black", "white"),
    }
)
PERSON_HEIGHT = 0.46  # a tall person's standing height as a fraction of the image height
GROUND_BAND = (0.74, 0.95)  # feet y range, fractions of the image height
PAIR_GAP = {C.SHAKE: (0.55, 0.6), C.HUG: (0.3, 0.34), C.PUSH: (0.42, 0.48)}
PAIR_GAP_FAR = (0.6, 1.0)  # talk to / watch
# Horizontal room (behind, in front) a person needs, in person heights, by movement.
ROOM = {
    C.WALK: (0.45, 0.45),
    C.RUN: (0.85, 0.85),
    C.LIE: (0.85, 0.2),
    C.FALL: (0.85, 0.25),
    C.SIT: (0.2, 0.35),
    C.GET_UP: (0.2, 0.4),
}


@dataclass
class Person:
    """One person in a scene: nameable attributes, actions, placement and drawing."""

    pid: int
    gender: str  # "male" | "female"
    size: str  # "tall" | "short" | "child"
    shirt: str
    trousers: str
    hat: str | None
    skin: int
    hair: int
    actions: list[str]
    obj: str | None = None
    facing: int = 1
    anchor_x: float = 0.0  # pixels
    ground_y: float = 0.0  # pixels
    scale: float = 1.0  # pixels per person unit
    partner: int | None = None
    motion: Motion | None = None
    segments: Segments | None = None
    box: list[float] = field(default_factory=list)  # normalised keyframe box
    held: str | None = None  # object in hand at the keyframe

    def attributes(self) -> dict:
        """The structured attributes a sentence may use (what the card and tests re-check)."""
        return {
            "gender": self.gender,
            "size": self.size,
            "shirt": self.shirt,
            "trousers": self.trousers,
            "hat": self.hat,
            "held": self.held,
        }


@dataclass
class GroundObject:
    """An object lying on the floor, not handled by anyone."""

    name: str
    centre: tuple[float, float]  # pixels
    scale: float  # pixels per person unit
    rgb: tuple[int, int, int]


@dataclass
class Scene:
    """A sampled clip before rendering."""

    video_id: str
    width: int
    height: int
    times: np.ndarray  # [T] seconds
    key_index: int
    people: list[Person]
    ground_objects: list[GroundObject]


def _pick(rng: np.random.Generator, options) -> str:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _pair_actions(rng: np.random.Generator, kind: str) -> tuple[list[str], list[str]]:
    """Action sets of the two members of an interacting pair (first one does `kind`)."""
    if kind in (C.SHAKE, C.HUG):
        return [C.STAND, kind], [C.STAND, kind]
    if kind == C.PUSH:
        return [C.STAND, C.PUSH], [C.STAND]
    move = C.SIT if rng.random() < 0.3 else C.STAND
    if kind == C.TALK:
        other = C.TALK if rng.random() < 0.4 else C.WATCH
        return [move, C.TALK], [move, other]
    while True:  # watch: the watched person stays roughly in place
        other = C.sample_solo_actions(rng)
        if other[0] in (C.STAND, C.SIT, C.JUMP, C.CROUCH, C.BEND):
            return [move, C.WATCH], other


def _units(rng: np.random.Generator, preset: Preset, n: int, must: str | None) -> list:
    """Groups of one (solo) or two (pair) action sets adding up to about n people."""
    units: list[tuple[str | None, list[list[str]]]] = []
    if must in C.PAIR_INTERACTIONS:
        a, b = _pair_actions(rng, must)
        units.append((must, [a, b]))
    else:
        units.append((None, [C.sample_solo_actions(rng, must)]))
    count = len(units[0][1])
    while count < n:
        if count <= n - 2 and rng.random() < preset.pair_prob:
            kind = _pick(rng, C.PAIR_INTERACTIONS)
            a, b = _pair_actions(rng, kind)
            units.append((kind, [a, b]))
            count += 2
        else:
            units.append((None, [C.sample_solo_actions(rng)]))
            count += 1
    return units


def _attributes(
    rng: np.random.Generator, pid: int, people: list[Person], preset: Preset, novel: bool
) -> Person:
    """A person with random attributes; may copy one attribute of an earlier person."""
    size = _pick(rng, ["tall"] * 9 + ["short"] * 7 + ["child"] * 4)
    p = Person(
        pid=pid,
        gender=_pick(rng, ("male", "female")),
        size=size,
        shirt=_pick(rng, SHIRT_COLOURS),
        trousers=_pick(rng, TROUSER_COLOURS),
        hat=_pick(rng, HAT_COLOURS) if rng.random() < preset.hat_prob else None,
        skin=int(rng.integers(len(SKIN_TONES))),
        hair=int(rng.integers(len(HAIR_COLOURS))),
        actions=[],
    )
    if people and rng.random() < preset.share_prob:
        src = people[int(rng.integers(len(people)))]
        key = _pick(rng, ("shirt", "trousers", "hat", "size", "gender"))
        setattr(p, key, getattr(src, key))
    want_novel = novel and (pid == 0 or rng.random() < 0.3)
    while ((p.shirt, p.trousers) in NOVEL_COMBOS) != want_novel:
        p.shirt, p.trousers = _pick(rng, SHIRT_COLOURS), _pick(rng, TROUSER_COLOURS)
    return p


def _room(actions: list[str]) -> tuple[float, float]:
    back, front = ROOM.get(actions[0], (0.22, 0.25))
    if C.POINT in actions or C.THROW in actions:
        front = max(front, 0.7)
    if C.LIFT in actions or C.PUT_DOWN in actions:
        front = max(front, 0.5)
    return back, front


def sample_scene(
    rng: np.random.Generator,
    preset: Preset,
    video_id: str,
    must: str | None = None,
    novel: bool = False,
) -> Scene:
    """A random scene whose person 0 does the action `must` (when given).

    `novel` makes person 0 (and some others) wear held-out shirt/trousers combinations; other
    splits never contain them.
    """
    width, height = preset.width, preset.height
    lo, hi = preset.people
    units = _units(rng, preset, int(rng.integers(lo, hi + 1)), must)
    people: list[Person] = []
    groups: list[tuple[str | None, list[Person]]] = []
    for kind, action_sets in units:
        members = []
        for acts in action_sets:
            p = _attributes(rng, len(people), people, preset, novel)
            p.actions = acts
            for e in acts[1:]:
                if e in C.OBJECTS_FOR:
                    p.obj = _pick(rng, C.OBJECTS_FOR[e])
            people.append(p)
            members.append(p)
        groups.append((kind, members))
    _layout(rng, preset, groups)
    people = [p for _, ms in groups for p in ms]
    times = np.arange(preset.num_frames) / preset.fps
    key_index = int(round(preset.keyframe_time * preset.fps))
    _animate(rng, groups, times)
    for p in people:
        _draw_spec(rng, p)
        box = segment_extent(p.segments, key_index)
        box = np.clip(box / [width, height, width, height], 0.0, 1.0)
        p.box = [round(float(v), 5) for v in box]
        if p.motion.obj_in_hand is not None and p.motion.obj_in_hand[key_index]:
            p.held = p.obj
    objects = []
    for _ in range(int(rng.integers(preset.distractors[0], preset.distractors[1] + 1))):
        name = _pick(rng, ("ball", "cup", "box", "chair"))
        gy = rng.uniform(*GROUND_BAND) * height
        scale = PERSON_HEIGHT * height * _depth(gy, height)
        objects.append(
            GroundObject(
                name, (rng.uniform(0.05, 0.95) * width, gy), scale, _pick(rng, OBJECT_COLOURS[name])
            )
        )
    return Scene(video_id, width, height, times, key_index, people, objects)


def _depth(ground_y: float, height: int) -> float:
    """Perspective scale of a person whose feet are at `ground_y` pixels."""
    lo, hi = GROUND_BAND
    return 0.9 + 0.1 * (ground_y / height - lo) / (hi - lo)


def _layout(rng: np.random.Generator, preset: Preset, groups: list) -> None:
    """Choose depth, scale, facing and horizontal position of everyone; drops people (never the
    first group, never below the preset's minimum) that do not fit."""
    width, height = preset.width, preset.height
    spans = []  # (group, pixel width, offsets of members from the group's left edge)
    for kind, members in groups:
        gy = rng.uniform(*GROUND_BAND) * height
        for p in members:
            p.ground_y = gy + rng.uniform(-0.01, 0.01) * height
            p.scale = PERSON_HEIGHT * height * SIZE_SCALE[p.size] * _depth(p.ground_y, height)
        if kind is None:
            p = members[0]
            p.facing = 1 if rng.random() < 0.5 else -1
            back, front = _room(p.actions)
            left, right = (back, front) if p.facing == 1 else (front, back)
            spans.append((members, (left + right) * p.scale * preset.spacing, [left * p.scale]))
        else:
            a, b = members if rng.random() < 0.5 else members[::-1]
            a.facing, b.facing = 1, -1
            mean_scale = 0.5 * (a.scale + b.scale)
            gap_lo, gap_hi = PAIR_GAP.get(kind, PAIR_GAP_FAR)
            gap = rng.uniform(gap_lo, gap_hi) * mean_scale
            room = 0.25 * mean_scale
            span = (2 * room + gap) * preset.spacing
            offsets = {id(a): room, id(b): room + gap}
            spans.append((members, span, [offsets[id(m)] for m in members]))
    min_people = preset.people[0]
    while (
        len(spans) > 1
        and sum(s[1] for s in spans) > 0.98 * width
        and sum(len(s[0]) for s in spans[:-1]) >= min_people
    ):
        dropped = spans.pop()
        for p in dropped[0]:
            groups[:] = [(k, ms) for k, ms in groups if p not in ms]
    # still too wide with the fewest people allowed: squeeze them together (more occlusion)
    squeeze = min(1.0, 0.98 * width / sum(s[1] for s in spans))
    spans = [(ms, span * squeeze, [o * squeeze for o in offs]) for ms, span, offs in spans]
    order = rng.permutation(len(spans))
    free = max(0.0, width - sum(s[1] for s in spans))
    gaps = rng.dirichlet(np.ones(len(spans) + 1)) * free
    x = gaps[0]
    for i, j in enumerate(order):
        members, span, offsets = spans[j]
        for p, off in zip(members, offsets, strict=True):
            p.anchor_x = x + off
        x += span + gaps[i + 1]
    for pid, p in enumerate(p for _, ms in groups for p in ms):
        p.pid = pid
    for _, members in groups:
        if len(members) == 2:
            a, b = sorted(members, key=lambda m: m.anchor_x)
            a.facing, b.facing = 1, -1
            a.partner, b.partner = b.pid, a.pid


def _animate(rng: np.random.Generator, groups: list, times: np.ndarray) -> None:
    """Motion of every person; pairs share timing and know their partner's distance."""
    for kind, members in groups:
        if kind is None:
            members[0].motion = motion_for(members[0].actions, times, rng, members[0].obj)
            continue
        push_time = rng.uniform(0.9, 1.9)
        phase = rng.uniform(0, 2 * np.pi)
        for p in members:
            q = members[1] if p is members[0] else members[0]
            dist = abs(q.anchor_x - p.anchor_x)
            meet = -0.5 * 0.5 * (p.scale + q.scale)
            partner = Partner(
                dx=dist / p.scale,
                meet_y=meet / p.scale,
                phase=phase,
                push_time=push_time,
                pushed=kind == C.PUSH and C.PUSH not in p.actions,
            )
            p.motion = motion_for(p.actions, times, rng, p.obj, partner)


def _draw_spec(rng: np.random.Generator, p: Person) -> None:
    """Pixel capsules of a person (colours from their attributes)."""
    colours = {
        "shirt": SHIRT_COLOURS[p.shirt],
        "trousers": TROUSER_COLOURS[p.trousers],
        "skin": SKIN_TONES[p.skin],
        "hair": HAIR_COLOURS[p.hair],
    }
    if p.hat is not None:
        colours["hat"] = HAT_COLOURS[p.hat]
    p.segments = person_segments(
        p.motion,
        colours,
        long_hair=p.gender == "female",
        has_hat=p.hat is not None,
        child=p.size == "child",
        anchor=(p.anchor_x, p.ground_y),
        facing=p.facing,
        scale=p.scale,
        object_rgb=_pick_rgb(rng, p.obj),
        chair_rgb=_pick_rgb(rng, "chair"),
    )


def _pick_rgb(rng: np.random.Generator, name: str | None) -> tuple[int, int, int] | None:
    if name is None:
        return None
    options = OBJECT_COLOURS[name]
    return options[int(rng.integers(len(options)))]
