"""The AVA classes RefAVA-Synth renders, their groups and the co-occurrence rules between them."""

from __future__ import annotations

from functools import cache

import numpy as np

from ravar.labels import action_id_by_name

STAND = "stand"
WALK = "walk"
RUN = "run/jog"
SIT = "sit"
BEND = "bend/bow (at the waist)"
CROUCH = "crouch/kneel"
JUMP = "jump/leap"
LIE = "lie/sleep"
FALL = "fall down"
GET_UP = "get up"

CARRY = "carry/hold (an object)"
LIFT = "lift/pick up"
PUT_DOWN = "put down"
THROW = "throw"
POINT = "point to (an object)"
PHONE = "answer phone"

WAVE = "hand wave"
CLAP = "hand clap"
SHAKE = "hand shake"
HUG = "hug (a person)"
PUSH = "push (another person)"
TALK = "talk to (e.g., self, a person, a group)"
WATCH = "watch (a person)"

MOVEMENTS = (STAND, WALK, RUN, SIT, BEND, CROUCH, JUMP, LIE, FALL, GET_UP)
OBJECT_ACTIONS = (CARRY, LIFT, PUT_DOWN, THROW, POINT, PHONE)
SOLO_INTERACTIONS = (WAVE, CLAP)
PAIR_INTERACTIONS = (SHAKE, HUG, PUSH, TALK, WATCH)
ALL_ACTIONS = MOVEMENTS + OBJECT_ACTIONS + SOLO_INTERACTIONS + PAIR_INTERACTIONS

# Extras (object actions and interactions) each movement can be combined with.
COMPATIBLE: dict[str, tuple[str, ...]] = {
    STAND: OBJECT_ACTIONS + SOLO_INTERACTIONS + PAIR_INTERACTIONS,
    WALK: (CARRY, PHONE, WAVE),
    RUN: (CARRY,),
    SIT: (CARRY, PHONE, POINT, WAVE, CLAP, TALK, WATCH),
    BEND: (LIFT, PUT_DOWN),
    CROUCH: (LIFT, PUT_DOWN, POINT, CARRY),
    JUMP: (CLAP,),
    LIE: (),
    FALL: (),
    GET_UP: (),
}
# Object actions that cannot happen without bending down to the ground.
NEEDS_GROUND = {LIFT: (BEND, CROUCH), PUT_DOWN: (BEND, CROUCH)}
# How many hands an extra occupies (at most two per person).
HANDS = {
    CARRY: 1,
    LIFT: 1,
    PUT_DOWN: 1,
    THROW: 1,
    POINT: 1,
    PHONE: 1,
    WAVE: 1,
    CLAP: 2,
    SHAKE: 1,
    HUG: 2,
    PUSH: 2,
    TALK: 1,
    WATCH: 0,
}
# Movement weights for people whose actions are sampled freely.
MOVEMENT_WEIGHTS = {
    STAND: 4.0,
    WALK: 2.0,
    RUN: 1.0,
    SIT: 1.5,
    BEND: 0.8,
    CROUCH: 0.8,
    JUMP: 0.6,
    LIE: 0.6,
    FALL: 0.5,
    GET_UP: 0.5,
}
# Objects each object action may involve.
OBJECTS_FOR = {
    CARRY: ("ball", "cup", "box", "phone"),
    LIFT: ("ball", "cup", "box"),
    PUT_DOWN: ("ball", "cup", "box"),
    THROW: ("ball",),
    POINT: ("ball", "cup", "box"),
    PHONE: ("phone",),
}
# COCO-style category name of each object (what a detector would say).
OBJECT_CATEGORY = {
    "ball": "sports ball",
    "cup": "cup",
    "box": "box",
    "phone": "cell phone",
    "chair": "chair",
}


@cache
def action_id(name: str) -> int:
    """AVA v2.2 id of one of the rendered classes."""
    return action_id_by_name(name)


def synth_action_ids() -> list[int]:
    """AVA ids of every class RefAVA-Synth renders, ascending."""
    return sorted(action_id(n) for n in ALL_ACTIONS)


def group_of(name: str) -> str:
    """ "movement", "object" or "interaction"."""
    if name in MOVEMENTS:
        return "movement"
    if name in OBJECT_ACTIONS:
        return "object"
    return "interaction"


def is_compatible(actions: list[str]) -> bool:
    """True when a person can do all of `actions` at once (one movement first, then extras)."""
    if not actions or actions[0] not in MOVEMENTS:
        return False
    move, extras = actions[0], actions[1:]
    if len(extras) > 2 or len(set(extras)) != len(extras):
        return False
    if any(e not in COMPATIBLE[move] for e in extras):
        return False
    if sum(e in OBJECT_ACTIONS for e in extras) > 1:
        return False
    if sum(e in SOLO_INTERACTIONS or e in PAIR_INTERACTIONS for e in extras) > 1:
        return False
    return sum(HANDS[e] for e in extras) <= 2


def movements_allowing(extra: str) -> tuple[str, ...]:
    """Movements that can be combined with the extra action `extra`."""
    if extra in NEEDS_GROUND:
        return NEEDS_GROUND[extra]
    return tuple(m for m in MOVEMENTS if extra in COMPATIBLE[m])


def sample_solo_actions(
    rng: np.random.Generator, must: str | None = None, extra_prob: float = 0.6
) -> list[str]:
    """A movement plus zero to two extras (no pair interaction), containing `must` if given."""
    if must is not None and must in MOVEMENTS:
        move = must
    elif must is not None:
        options = movements_allowing(must)
        weights = np.array([MOVEMENT_WEIGHTS[m] for m in options])
        move = options[int(rng.choice(len(options), p=weights / weights.sum()))]
    else:
        names = list(MOVEMENT_WEIGHTS)
        weights = np.array(list(MOVEMENT_WEIGHTS.values()))
        move = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    actions = [move]
    if must is not None and must != move:
        actions.append(must)
    # Lifting and putting down only make sense with a bend or crouch; the others are optional.
    pool = [
        e
        for e in COMPATIBLE[move]
        if e not in PAIR_INTERACTIONS and e not in actions and e not in NEEDS_GROUND
    ]
    if move in (BEND, CROUCH) and len(actions) == 1 and rng.random() < 0.7:
        pool = [LIFT, PUT_DOWN]
    while pool and len(actions) < 3 and rng.random() < extra_prob:
        pick = pool[int(rng.integers(len(pool)))]
        if is_compatible(actions + [pick]):
            actions.append(pick)
        pool.remove(pick)
    return actions
