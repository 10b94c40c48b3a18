"""Articulated stick-and-capsule figures: body proportions, forward and inverse kinematics, and
the coloured capsule segments a person is drawn from.

Person units: 1.0 = the standing height of the person; x points the way the person faces
("forward"), y points down, (0, 0) is the person's anchor on the ground. Angles are absolute, in
radians: limbs from straight down, torso and head from straight up, positive = forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

L_THIGH = 0.24
L_SHIN = 0.24
L_TORSO = 0.30
L_NECK = 0.10  # neck joint to head centre
L_UPPER_ARM = 0.16
L_FOREARM = 0.16
SHOULDER_DROP = 0.04  # shoulder joint below the neck joint, along the torso
FOOT_CLEARANCE = 0.025  # a foot's capsule radius: how far the foot point sits above the ground

R_HEAD = 0.08
R_TORSO = 0.07
R_UPPER_ARM = 0.03
R_FOREARM = 0.026
R_THIGH = 0.045
R_SHIN = 0.036

OBJECT_RADIUS = {"ball": 0.06, "cup": 0.03, "box": 0.07, "phone": 0.02}
OBJECT_HALF_LENGTH = {"ball": 0.0, "cup": 0.025, "box": 0.01, "phone": 0.035}

FAR, NEAR = 0, 1  # limb index: the limb away from / towards the camera


def direction(angle: np.ndarray) -> np.ndarray:
    """Unit vectors [..., 2] of limb angles measured from straight down (forward positive)."""
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def up_direction(angle: np.ndarray) -> np.ndarray:
    """Unit vectors [..., 2] of torso / head angles measured from straight up."""
    return np.stack([np.sin(angle), -np.cos(angle)], axis=-1)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, smooth in between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def ramp(t: np.ndarray, start: float, duration: float) -> np.ndarray:
    """Smooth 0 -> 1 transition over [start, start + duration] seconds."""
    return smoothstep((t - start) / max(duration, 1e-6))


@dataclass
class Pose:
    """A person's joint angles over T frames, in person units (see the module docstring)."""

    pelvis: np.ndarray  # [T, 2]
    lean: np.ndarray  # [T] torso angle from up
    head: np.ndarray  # [T] neck-to-head angle from up
    arm_up: np.ndarray  # [2, T] upper-arm angles (FAR, NEAR)
    arm_lo: np.ndarray  # [2, T] forearm angles
    leg_up: np.ndarray  # [2, T] thigh angles
    leg_lo: np.ndarray  # [2, T] shin angles

    @property
    def neck(self) -> np.ndarray:
        """[T, 2] neck joint."""
        return self.pelvis + L_TORSO * up_direction(self.lean)

    @property
    def shoulder(self) -> np.ndarray:
        """[T, 2] shoulder joint (both arms hang from the same point in side view)."""
        return self.pelvis + (L_TORSO - SHOULDER_DROP) * up_direction(self.lean)

    @property
    def head_centre(self) -> np.ndarray:
        """[T, 2] centre of the head."""
        return self.neck + L_NECK * up_direction(self.head)

    def elbow(self, arm: int) -> np.ndarray:
        """[T, 2] elbow of arm FAR or NEAR."""
        return self.shoulder + L_UPPER_ARM * direction(self.arm_up[arm])

    def hand(self, arm: int) -> np.ndarray:
        """[T, 2] hand of arm FAR or NEAR."""
        return self.elbow(arm) + L_FOREARM * direction(self.arm_lo[arm])

    def knee(self, leg: int) -> np.ndarray:
        """[T, 2] knee of leg FAR or NEAR."""
        return self.pelvis + L_THIGH * direction(self.leg_up[leg])

    def foot(self, leg: int) -> np.ndarray:
        """[T, 2] foot of leg FAR or NEAR."""
        return self.knee(leg) + L_SHIN * direction(self.leg_lo[leg])


def standing_pose(n: int) -> Pose:
    """Upright, arms hanging, for n frames."""
    z = np.zeros(n)
    return Pose(
        pelvis=np.stack([z, z - (L_THIGH + L_SHIN + FOOT_CLEARANCE)], axis=-1),
        lean=z.copy(),
        head=z.copy(),
        arm_up=np.stack([z - 0.05, z + 0.08]),
        arm_lo=np.stack([z + 0.1, z + 0.25]),
        leg_up=np.stack([z - 0.04, z + 0.04]),
        leg_lo=np.stack([z - 0.04, z + 0.04]),
    )


def ground_pelvis_height(leg_up: np.ndarray, leg_lo: np.ndarray) -> np.ndarray:
    """[T] pelvis y that puts the lowest knee or foot on the ground (legs given as [2, T])."""
    knee_y = L_THIGH * np.cos(leg_up)  # [2, T]
    foot_y = knee_y + L_SHIN * np.cos(leg_lo)  # [2, T]
    lowest = np.maximum(knee_y, foot_y).max(axis=0)  # [T]
    return -(lowest + FOOT_CLEARANCE)


def solve_arm(
    shoulder: np.ndarray, target: np.ndarray, elbow_down: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Upper-arm and forearm angles ([T], [T]) that bring the hand to `target` [T, 2], or as
    close as the arm reaches, with the elbow below the shoulder-hand line when `elbow_down`."""
    d = target - shoulder  # [T, 2]
    dist = np.linalg.norm(d, axis=-1)
    lo, hi = abs(L_UPPER_ARM - L_FOREARM) + 1e-4, L_UPPER_ARM + L_FOREARM - 1e-4
    dist_c = np.clip(dist, lo, hi)
    base = np.arctan2(d[:, 0], d[:, 1])  # angle of the shoulder->target line from down
    cos_a = (L_UPPER_ARM**2 + dist_c**2 - L_FOREARM**2) / (2 * L_UPPER_ARM * dist_c)
    alpha = np.arccos(np.clip(cos_a, -1.0, 1.0))
    upper = base - alpha if elbow_down else base + alpha
    elbow = shoulder + L_UPPER_ARM * direction(upper)
    reach = shoulder + d * (dist_c / np.maximum(dist, 1e-9))[:, None]
    lower = np.arctan2(reach[:, 0] - elbow[:, 0], reach[:, 1] - elbow[:, 1])
    return upper, lower


# Body part names in drawing order (back to front) and which colour each takes.
PARTS = (
    ("long_hair", "hair"),
    ("far_upper_arm", "shirt_dark"),
    ("far_forearm", "skin_dark"),
    ("far_thigh", "trousers_dark"),
    ("far_shin", "trousers_dark"),
    ("torso", "shirt"),
    ("near_thigh", "trousers"),
    ("near_shin", "trousers"),
    ("hair", "hair"),
    ("head", "skin"),
    ("hat_crown", "hat"),
    ("hat_brim", "hat"),
    ("near_upper_arm", "shirt"),
    ("near_forearm", "skin"),
)


@dataclass
class Segments:
    """Capsules in pixels: endpoints [T, S, 2] each, radius [S], RGB colour [S, 3] in 0..255,
    and whether each belongs to the person's body (for the person's box)."""

    p0: np.ndarray
    p1: np.ndarray
    radius: np.ndarray
    colour: np.ndarray
    is_body: np.ndarray  # [S] bool

    @staticmethod
    def concat(parts: list[Segments]) -> Segments:
        return Segments(
            p0=np.concatenate([p.p0 for p in parts], axis=1),
            p1=np.concatenate([p.p1 for p in parts], axis=1),
            radius=np.concatenate([p.radius for p in parts]),
            colour=np.concatenate([p.colour for p in parts]),
            is_body=np.concatenate([p.is_body for p in parts]),
        )


def body_capsules(
    pose: Pose, long_hair: bool, has_hat: bool, head_radius: float = R_HEAD
) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(part, start [T, 2], end [T, 2], radius) per drawn part, in person units, drawing order."""
    sh, neck, head = pose.shoulder, pose.neck, pose.head_centre
    back = up_direction(pose.head - np.pi / 2)  # [T, 2] towards the back of the head
    up = up_direction(pose.head)  # [T, 2] towards the top of the head
    out: list[tuple[str, np.ndarray, np.ndarray, float]] = []
    if long_hair:
        out.append(("long_hair", head + 0.4 * head_radius * back, sh + 0.05 * back, 0.055))
    out += [
        ("far_upper_arm", sh, pose.elbow(FAR), R_UPPER_ARM),
        ("far_forearm", pose.elbow(FAR), pose.hand(FAR), R_FOREARM),
        ("far_thigh", pose.pelvis, pose.knee(FAR), R_THIGH),
        ("far_shin", pose.knee(FAR), pose.foot(FAR), R_SHIN),
        ("torso", pose.pelvis, neck, R_TORSO),
        ("near_thigh", pose.pelvis, pose.knee(NEAR), R_THIGH),
        ("near_shin", pose.knee(NEAR), pose.foot(NEAR), R_SHIN),
        (
            "hair",
            head + 0.3 * head_radius * (back + up),
            head + 0.3 * head_radius * up,
            head_radius,
        ),
        ("head", head, head, head_radius),
    ]
    if has_hat:
        crown = head + 0.75 * head_radius * up
        out.append(("hat_crown", crown, crown, 0.8 * head_radius))
        brim_c = head + 0.55 * head_radius * up
        side = up_direction(pose.head + np.pi / 2)  # [T, 2] forward along the brim
        out.append(
            (
                "hat_brim",
                brim_c - 1.2 * head_radius * side,
                brim_c + 1.4 * head_radius * side,
                0.3 * head_radius,
            )
        )
    out += [
        ("near_upper_arm", sh, pose.elbow(NEAR), R_UPPER_ARM),
        ("near_forearm", pose.elbow(NEAR), pose.hand(NEAR), R_FOREARM),
    ]
    return out


def to_pixels(
    points: np.ndarray, anchor: tuple[float, float], facing: int, scale: float
) -> np.ndarray:
    """Person units [..., 2] -> image pixels [..., 2] (x mirrored when the person faces left)."""
    out = np.empty_like(points)
    out[..., 0] = anchor[0] + facing * scale * points[..., 0]
    out[..., 1] = anchor[1] + scale * points[..., 1]
    return out
