"""Per-action motion: turns a person's action set into joint angles over time (and the path of
any object they handle). Classes that look alike in one frame differ in how they move:
walk vs run (speed and stride rate), sit vs get up (rising at a random moment that may fall
after the keyframe), lift vs put down (the object goes ground -> hand or hand -> ground)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ravar.synth import catalog as C
from ravar.synth.figures import (
    FAR,
    L_FOREARM,
    L_UPPER_ARM,
    NEAR,
    OBJECT_RADIUS,
    Pose,
    direction,
    ground_pelvis_height,
    ramp,
    solve_arm,
    standing_pose,
)

SIT_PELVIS_Y = -0.26
LIE_PELVIS_Y = -0.075
CHAIR_SEAT_Y = -0.22


@dataclass
class Partner:
    """Where a person's interaction partner stands, in this person's units."""

    dx: float  # forward distance to the partner's anchor
    meet_y: float = -0.5  # height at which hands meet (hand shake)
    phase: float = 0.0  # shared oscillation phase of the pair
    push_time: float | None = None  # when the push happens (pusher and pushed)
    pushed: bool = False  # this person is the one being pushed


@dataclass
class Motion:
    """A person's pose over time plus the object they handle and whether a chair is drawn."""

    pose: Pose
    obj: str | None = None
    obj_pos: np.ndarray | None = None  # [T, 2] object centre, person units
    obj_in_hand: np.ndarray | None = None  # [T] bool
    chair_x: float | None = None  # chair drawn under the pelvis start when not None
    params: dict[str, float] = field(default_factory=dict)  # timing draws, for inspection


def _hand_slots(extras: list[str]) -> dict[str, list[int]]:
    """Which arms each extra action uses (NEAR first, then FAR)."""
    free, out = [NEAR, FAR], {}
    for e in extras:
        n = C.HANDS[e]
        out[e], free = free[:n], free[n:]
    return out


def _set_arm(pose: Pose, arm: int, target: np.ndarray, weight: np.ndarray | None = None) -> None:
    """Bend `arm` so its hand reaches `target` [T, 2]; blend with the old angles by `weight`."""
    up, lo = solve_arm(pose.shoulder, target)
    if weight is None:
        pose.arm_up[arm], pose.arm_lo[arm] = up, lo
    else:
        pose.arm_up[arm] = (1 - weight) * pose.arm_up[arm] + weight * up
        pose.arm_lo[arm] = (1 - weight) * pose.arm_lo[arm] + weight * lo


def _gait(pose: Pose, t: np.ndarray, rng: np.random.Generator, running: bool) -> dict:
    freq = rng.uniform(2.5, 3.0) if running else rng.uniform(1.4, 1.8)
    amp = rng.uniform(0.42, 0.52) if running else rng.uniform(0.38, 0.48)
    speed = rng.uniform(0.42, 0.55) if running else rng.uniform(0.16, 0.24)
    phi = 2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)
    for leg, sign in ((NEAR, 1.0), (FAR, -1.0)):
        swing = sign * amp * np.sin(phi)
        bend = 0.9 * amp * (0.5 + 0.5 * np.cos(phi + (0 if sign > 0 else np.pi)))
        pose.leg_up[leg], pose.leg_lo[leg] = swing, swing - bend
        pose.arm_up[leg] = -0.7 * swing
        pose.arm_lo[leg] = -0.7 * swing + 0.5
    pose.lean[:] = 0.07 if running else 0.05
    lift = (0.03 if running else 0.008) * np.abs(np.sin(phi))
    pose.pelvis[:, 1] = ground_pelvis_height(pose.leg_up, pose.leg_lo) - lift
    return {"freq": freq, "speed": speed}


def _sit_angles(pose: Pose, w: np.ndarray) -> None:
    """Blend the legs and pelvis towards sitting on a chair by weight w [T]."""
    for leg, th in ((NEAR, 1.5), (FAR, 1.62)):
        pose.leg_up[leg] = (1 - w) * pose.leg_up[leg] + w * th
        pose.leg_lo[leg] = (1 - w) * pose.leg_lo[leg] + w * 0.05
    stand_y = ground_pelvis_height(pose.leg_up, pose.leg_lo)
    pose.pelvis[:, 1] = (1 - w) * stand_y + w * SIT_PELVIS_Y


def _crouch_angles(pose: Pose, w: np.ndarray) -> None:
    """Blend the legs towards kneeling on the far knee by weight w [T]."""
    for leg, (th, sh) in ((NEAR, (1.2, -1.1)), (FAR, (0.2, -1.7))):
        pose.leg_up[leg] = (1 - w) * pose.leg_up[leg] + w * th
        pose.leg_lo[leg] = (1 - w) * pose.leg_lo[leg] + w * sh
    pose.lean[:] = pose.lean + 0.15 * w
    pose.pelvis[:, 1] = ground_pelvis_height(pose.leg_up, pose.leg_lo)


def _movement(
    move: str, t: np.ndarray, rng: np.random.Generator, to_ground: bool, m: Motion
) -> np.ndarray:
    """Set legs, pelvis and torso for the movement; returns the 'down' weight [T] (how far the
    person is bent to the ground, used by lift / put down)."""
    pose, p = m.pose, m.params
    down = np.zeros_like(t)
    if move == C.STAND:
        pose.lean[:] = 0.02 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.3))
    elif move in (C.WALK, C.RUN):
        g = _gait(pose, t, rng, running=move == C.RUN)
        p.update(g)
        pose.pelvis[:, 0] = g["speed"] * (t - t.mean())
    elif move == C.SIT:
        _sit_angles(pose, np.ones_like(t))
        pose.lean[:] = -0.05 + 0.02 * np.sin(2 * np.pi * 0.4 * t)
        m.chair_x = 0.0
    elif move == C.GET_UP:
        start = p["rise_start"] = rng.uniform(0.2, 2.0)
        w = ramp(t, start, 0.9)
        _sit_angles(pose, 1 - w)
        pose.pelvis[:, 0] = 0.14 * w
        pose.lean[:] = -0.05 * (1 - w) + 0.55 * np.sin(np.pi * w)
        m.chair_x = 0.0
    elif move in (C.LIE, C.FALL):
        if move == C.LIE:
            w = np.ones_like(t)
        else:
            start = p["fall_start"] = rng.uniform(0.3, 2.0)
            w = ramp(t, start, 0.55)
        for leg, th in ((NEAR, np.pi / 2 - 0.04), (FAR, np.pi / 2 + 0.04)):
            pose.leg_up[leg] = (1 - w) * pose.leg_up[leg] + w * th
            pose.leg_lo[leg] = (1 - w) * pose.leg_lo[leg] + w * th
        pose.lean[:] = -np.pi / 2 * w + 0.01 * np.sin(2 * np.pi * 0.25 * t)
        pose.head[:] = pose.lean
        stand_y = ground_pelvis_height(pose.leg_up, pose.leg_lo)
        pose.pelvis[:, 1] = (1 - w) * stand_y + w * LIE_PELVIS_Y
        pose.pelvis[:, 0] = -0.35 * w
        flail = np.sin(np.pi * w) * 2.2
        for arm in (NEAR, FAR):
            pose.arm_up[arm] = (1 - w) * pose.arm_up[arm] + w * 1.45 + flail
            pose.arm_lo[arm] = (1 - w) * pose.arm_lo[arm] + w * 1.5 + flail
    elif move == C.BEND:
        if to_ground:
            start = p["bend_start"] = rng.uniform(0.2, 1.4)
            w = ramp(t, start, 0.5) - ramp(t, start + 1.0, 0.5)
            depth = 1.35
            for leg in (NEAR, FAR):
                pose.leg_up[leg] = 0.6 * w
                pose.leg_lo[leg] = -0.5 * w
        else:
            start = p["bend_start"] = rng.uniform(0.1, 0.9)
            end = rng.uniform(2.0, 2.6)
            w = ramp(t, start, 0.5) - ramp(t, end, 0.5)
            depth = rng.uniform(1.0, 1.35)
        pose.lean[:] = depth * w
        pose.head[:] = 0.8 * depth * w
        pose.pelvis[:, 0] = -0.1 * w
        pose.pelvis[:, 1] = ground_pelvis_height(pose.leg_up, pose.leg_lo)
        for arm in (NEAR, FAR):
            pose.arm_up[arm] += 0.25 * w
            pose.arm_lo[arm] += 0.25 * w
        down = w
    elif move == C.CROUCH:
        if to_ground:
            start = p["crouch_start"] = rng.uniform(0.2, 1.4)
            w = ramp(t, start, 0.5) - ramp(t, start + 1.0, 0.5)
            pose.lean[:] = 0.5 * w
        else:
            start = p["crouch_start"] = rng.uniform(0.0, 0.8)
            end = rng.uniform(2.3, 3.5)
            w = ramp(t, start, 0.5) - ramp(t, end, 0.5)
        _crouch_angles(pose, w)
        down = w
    elif move == C.JUMP:
        period = rng.uniform(0.9, 1.2)
        height = rng.uniform(0.12, 0.22)
        u = ((t + rng.uniform(0, period)) / period) % 1.0  # [T] phase within one jump
        prep = np.where(u < 0.3, np.sin(np.pi * u / 0.3), 0.0) + np.where(
            u > 0.8, np.sin(np.pi * (u - 0.8) / 0.2), 0.0
        )
        flight = np.clip((u - 0.3) / 0.5, 0.0, 1.0)
        airborne = (u >= 0.3) & (u <= 0.8)
        for leg in (NEAR, FAR):
            pose.leg_up[leg] = 0.7 * prep
            pose.leg_lo[leg] = -0.7 * prep
        lift = np.where(airborne, 4 * height * flight * (1 - flight), 0.0)
        pose.pelvis[:, 1] = ground_pelvis_height(pose.leg_up, pose.leg_lo) - lift
        pose.lean[:] = 0.25 * prep
        for arm in (NEAR, FAR):
            pose.arm_up[arm] = np.where(airborne, 2.4 * np.sin(np.pi * flight), -0.5 * prep)
            pose.arm_lo[arm] = pose.arm_up[arm] + 0.2
        p["period"] = period
    return down


def _ground_spot(pose: Pose, down: np.ndarray, obj: str) -> np.ndarray:
    """[2] where an object lies on the ground for a person bending to it."""
    bottom = int(np.argmax(down))
    reach = pose.shoulder[bottom] + (L_UPPER_ARM + L_FOREARM) * 0.95 * direction(np.array(0.35))
    return np.array([reach[0], -OBJECT_RADIUS[obj]])


def _object_action(
    extra: str,
    arms: list[int],
    t: np.ndarray,
    rng: np.random.Generator,
    down: np.ndarray,
    m: Motion,
) -> None:
    pose, p = m.pose, m.params
    obj = m.obj
    assert obj is not None
    arm = arms[0]
    sh = pose.shoulder
    carry_target = sh + np.array([0.14, 0.26])
    if extra == C.CARRY:
        _set_arm(pose, arm, carry_target)
        if obj == "box":
            _set_arm(pose, FAR if arm == NEAR else NEAR, carry_target + [0.02, -0.01])
        m.obj_pos = pose.hand(arm) + [0.035, 0.0]
        m.obj_in_hand = np.ones(len(t), bool)
    elif extra == C.PHONE:
        ear = pose.head_centre + [0.02, 0.02]
        _set_arm(pose, arm, ear + 0.01 * np.sin(2 * np.pi * 0.5 * t)[:, None])
        m.obj_pos = pose.hand(arm).copy()
        m.obj_in_hand = np.ones(len(t), bool)
    elif extra == C.POINT:
        dist = p["point_dist"] = rng.uniform(0.75, 1.2)
        spot = np.array([dist, -OBJECT_RADIUS[obj]])
        aim = np.arctan2(spot[0] - sh[:, 0], spot[1] - sh[:, 1])  # [T]
        w = ramp(t, rng.uniform(0.0, 0.9), 0.3)
        pose.arm_up[arm] = (1 - w) * pose.arm_up[arm] + w * aim
        pose.arm_lo[arm] = (1 - w) * pose.arm_lo[arm] + w * aim
        m.obj_pos = np.broadcast_to(spot, (len(t), 2)).copy()
        m.obj_in_hand = np.zeros(len(t), bool)
    elif extra in (C.LIFT, C.PUT_DOWN):
        spot = _ground_spot(pose, down, obj)
        bottom = np.flatnonzero(down >= down.max() - 1e-6)
        grasp = float(t[bottom].mean())
        p["grasp_time"] = grasp
        holding = (t >= grasp) if extra == C.LIFT else (t < grasp)
        rest = sh + np.array([0.05, 0.3])
        base = np.where(holding[:, None], carry_target, rest)  # [T, 2]
        reach_w = np.clip((down - 0.3) / 0.5, 0.0, 1.0)[:, None]
        _set_arm(pose, arm, (1 - reach_w) * base + reach_w * spot)
        hand = pose.hand(arm)
        m.obj_pos = np.where(holding[:, None], hand + [0.03, 0.0], spot)
        m.obj_in_hand = holding
    elif extra == C.THROW:
        release = p["release_time"] = rng.uniform(0.9, 2.1)
        keys = [release - 0.7, release - 0.15, release + 0.1, release + 0.6]
        angle = np.interp(t, keys, [0.3, -2.3, 2.0, 0.3])
        pose.arm_up[arm], pose.arm_lo[arm] = angle, angle + 0.3
        _hold = t < keys[0]
        up, lo = solve_arm(sh, carry_target)
        pose.arm_up[arm] = np.where(_hold, up, pose.arm_up[arm])
        pose.arm_lo[arm] = np.where(_hold, lo, pose.arm_lo[arm])
        hand = pose.hand(arm)
        i_rel = int(np.argmin(np.abs(t - release)))
        start = hand[i_rel]
        tau = np.clip(t - t[i_rel], 0.0, None)
        vx, vy, g = rng.uniform(1.2, 1.8), -1.0, 4.0
        r = OBJECT_RADIUS[obj]
        y = start[1] + vy * tau + 0.5 * g * tau**2
        t_land = (-vy + np.sqrt(vy**2 + 2 * g * (-r - start[1]))) / g
        x = start[0] + vx * np.minimum(tau, t_land) + 0.3 * vx * np.clip(tau - t_land, 0, 0.5)
        flying = np.stack([x, np.minimum(y, -r)], axis=-1)
        m.obj_in_hand = t < t[i_rel]
        m.obj_pos = np.where(m.obj_in_hand[:, None], hand, flying)


def _interaction(
    extra: str,
    arms: list[int],
    t: np.ndarray,
    rng: np.random.Generator,
    m: Motion,
    partner: Partner | None,
) -> None:
    pose = m.pose
    sh = pose.shoulder
    if extra == C.WAVE:
        arm = arms[0]
        w = ramp(t, rng.uniform(0.0, 0.6), 0.3)
        freq = rng.uniform(1.8, 2.6)
        pose.arm_up[arm] = (1 - w) * pose.arm_up[arm] + w * 2.7
        wave = 2.7 + 0.5 + 0.55 * np.sin(2 * np.pi * freq * t)
        pose.arm_lo[arm] = (1 - w) * pose.arm_lo[arm] + w * wave
    elif extra == C.CLAP:
        freq = rng.uniform(2.0, 2.8)
        gap = 0.05 * (0.5 + 0.5 * np.sin(2 * np.pi * freq * t))[:, None]
        centre = sh + np.array([0.2, 0.12])
        _set_arm(pose, NEAR, centre + gap * [1.0, 0.0])
        _set_arm(pose, FAR, centre - gap * [1.0, 0.0])
    elif extra == C.TALK:
        arm = arms[0]
        ph = rng.uniform(0, 6.3)
        pose.arm_up[arm] = 0.35 + 0.15 * np.sin(2 * np.pi * 1.1 * t + ph)
        pose.arm_lo[arm] = pose.arm_up[arm] + 1.0 + 0.35 * np.sin(2 * np.pi * 1.7 * t + 2 * ph)
        pose.head[:] = pose.lean + 0.08 * np.sin(2 * np.pi * 1.5 * t + ph)
    elif extra == C.WATCH:
        pose.head[:] = pose.lean + 0.12
    elif extra == C.SHAKE:
        assert partner is not None
        y = partner.meet_y + 0.03 * np.sin(2 * np.pi * 3.0 * t + partner.phase)
        target = np.stack([np.full_like(t, partner.dx / 2), y], axis=-1)
        _set_arm(pose, arms[0], target, ramp(t, 0.0, 0.3))
    elif extra == C.HUG:
        assert partner is not None
        pose.lean[:] = 0.12 + 0.04 * np.sin(2 * np.pi * 0.7 * t + partner.phase)
        pose.head[:] = pose.lean
        sh = pose.shoulder
        _set_arm(pose, NEAR, sh + [partner.dx * 0.5 + 0.1, 0.05])
        _set_arm(pose, FAR, sh + [partner.dx * 0.5 + 0.08, 0.1])
    elif extra == C.PUSH:
        assert partner is not None and partner.push_time is not None
        hit = partner.push_time
        w = ramp(t, hit - 0.35, 0.35)
        recoil = 0.35 * ramp(t, hit, 0.4)
        pose.lean[:] = 0.25 * w - 0.1 * ramp(t, hit + 0.3, 0.5)
        sh = pose.shoulder
        chest = np.stack([partner.dx - 0.06 + recoil, np.full_like(t, -0.72)], axis=-1)
        for arm in (NEAR, FAR):
            _set_arm(pose, arm, chest, w)


def _pushed(pose: Pose, t: np.ndarray, partner: Partner) -> None:
    """The person who is pushed stumbles backwards."""
    hit = partner.push_time or 1.5
    back = ramp(t, hit, 0.4)
    pose.pelvis[:, 0] = -0.35 * back
    pose.lean[:] = -0.35 * np.sin(np.pi * back)
    pose.head[:] = pose.lean
    for arm in (NEAR, FAR):
        pose.arm_up[arm] = 1.2 * np.sin(np.pi * back)
        pose.arm_lo[arm] = pose.arm_up[arm] + 0.3


def motion_for(
    actions: list[str],
    t: np.ndarray,
    rng: np.random.Generator,
    obj: str | None = None,
    partner: Partner | None = None,
) -> Motion:
    """The motion of a person doing `actions` (movement first) over times `t` [T] seconds.

    `obj` is the object their object action involves; `partner` says where the interaction
    partner is (also for a person who is pushed and has no interaction label of their own).
    """
    move, extras = actions[0], actions[1:]
    m = Motion(pose=standing_pose(len(t)), obj=obj)
    to_ground = any(e in C.NEEDS_GROUND for e in extras)
    down = _movement(move, t, rng, to_ground, m)
    if partner is not None and partner.pushed:
        _pushed(m.pose, t, partner)
    slots = _hand_slots(extras)
    for e in extras:
        if e in C.OBJECT_ACTIONS:
            _object_action(e, slots[e], t, rng, down, m)
        else:
            _interaction(e, slots[e], t, rng, m, partner)
    return m
