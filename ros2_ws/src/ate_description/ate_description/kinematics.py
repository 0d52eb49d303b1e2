"""Kinematics of the RM75-6s: THE one source of forward kinematics and Jacobian of the arm (the IK: ``ate_description.ik``).

Everything is derived from ``ate_description.contract.DH_MODIFIED`` (RealMan's published modified-DH table,
Craig's convention: ``T_{i-1,i} = RotX(alpha) TransX(a) RotZ(theta + offset) TransZ(d)``), so the teleop IK,
the simulated cell's MJCF model and the tests can never disagree about the arm's geometry.

* ``fk(q)``: flange pose (4x4) in the arm's base frame; ``fk_frames(q)``: every joint frame.
* ``jacobian(q)``: geometric 6x7 Jacobian (linear; angular) of the flange in the base frame.
* ``rotation_log`` / ``rotation_exp`` / ``inv_transform``: SO(3) / SE(3) helpers the teleop mapping and filters use.
* ``pose6_from_matrix`` / ``matrix_from_pose6``: RealMan's pose vector ``[x, y, z, rx, ry, rz]``
  (metres, fixed-axis XYZ Euler angles, i.e. ``R = Rz(rz) Ry(ry) Rx(rx)``), what the SDK reports.
* ``build_pinocchio_model()``: the same chain as a Pinocchio model, parsed from the description's URDF.

Only numpy at import time; Pinocchio is imported when asked for.
"""

from __future__ import annotations

import math

import numpy as np

from ate_description import contract
from ate_description.contract import JOINT_LIMITS_RAD, N_ARM_JOINTS

Q_MIN = -np.asarray(JOINT_LIMITS_RAD)
Q_MAX = np.asarray(JOINT_LIMITS_RAD)


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def dh_link_transform(a: float, alpha: float, d: float, theta: float) -> np.ndarray:
    """Modified-DH transform of one link: RotX(alpha) TransX(a) RotZ(theta) TransZ(d)."""
    T = np.eye(4)
    R = rot_x(alpha) @ rot_z(theta)
    T[:3, :3] = R
    # TransX(a) happens in the frame after RotX(alpha) (x is unchanged by it); TransZ(d) along the new z.
    T[:3, 3] = np.array([a, 0.0, 0.0]) + R @ np.array([0.0, 0.0, d])
    return T


def joint_placements() -> list[np.ndarray]:
    """Fixed part of each link transform (theta = offset): where joint i sits in frame i-1 at q_i = 0.

    Read from ``contract.DH_MODIFIED`` at each call (cached on its value), so every reader follows the one table.
    """
    return [P.copy() for P in _placements_of(tuple(tuple(r) for r in contract.DH_MODIFIED))]


_PLACEMENT_CACHE: dict = {}


def _placements_of(dh: tuple) -> list[np.ndarray]:
    if dh not in _PLACEMENT_CACHE:
        _PLACEMENT_CACHE.clear()
        _PLACEMENT_CACHE[dh] = [dh_link_transform(a, alpha, d, off) for (a, alpha, d, off) in dh]
    return _PLACEMENT_CACHE[dh]


def _check_q(q) -> np.ndarray:
    q = np.asarray(q, dtype=float).reshape(-1)
    if q.shape != (N_ARM_JOINTS,):
        raise ValueError(f"expected {N_ARM_JOINTS} joint angles, got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"joint angles must be finite, got {q}")
    return q


def fk_frames(q) -> list[np.ndarray]:
    """Base-frame poses of joint frames 1..7 (frame 7 is the flange: d7 is the flange offset)."""
    q = _check_q(q)
    placements = _placements_of(tuple(tuple(r) for r in contract.DH_MODIFIED))
    # Each link transform is placement_i @ RotZ(q_i) (RotZ and TransZ commute); applying RotZ as a column mix
    # keeps this cheap enough for IK at every 20 Hz tick of both arms.
    T = np.eye(4)
    frames = []
    for qi, P in zip(q, placements):
        T = T @ P
        c, s = math.cos(qi), math.sin(qi)
        x, y = T[:3, 0].copy(), T[:3, 1].copy()
        T[:3, 0] = c * x + s * y
        T[:3, 1] = -s * x + c * y
        frames.append(T.copy())
    return frames


def fk(q) -> np.ndarray:
    """Flange pose (4x4) in the arm's base frame."""
    return fk_frames(q)[-1]


def jacobian(q, tool: np.ndarray | None = None) -> np.ndarray:
    """Geometric Jacobian (6x7, rows vx vy vz wx wy wz) of the flange (or flange @ tool) in the base frame."""
    frames = fk_frames(q)
    T_tip = frames[-1] if tool is None else frames[-1] @ tool
    Z = np.array([T[:3, 2] for T in frames])   # every joint rotates about its own frame's z axis
    O = np.array([T[:3, 3] for T in frames])
    J = np.empty((6, N_ARM_JOINTS))
    J[:3] = np.cross(Z, T_tip[:3, 3] - O).T
    J[3:] = Z.T
    return J


def rotation_log(R: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix (robust near 0 and pi)."""
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    angle = math.acos(cos)
    if angle < 1e-9:
        return np.zeros(3)
    if math.pi - angle < 1e-6:
        # Near pi the antisymmetric part vanishes: take the axis from the symmetric part.
        M = (R + np.eye(3)) / 2.0
        axis = M[:, int(np.argmax(np.diag(M)))]
        return angle * axis / np.linalg.norm(axis)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return angle * w / (2.0 * math.sin(angle))


def rotation_exp(w) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (Rodrigues); the inverse of ``rotation_log``."""
    w = np.asarray(w, dtype=float).reshape(3)
    angle = float(np.linalg.norm(w))
    if angle < 1e-12:
        return np.eye(3)
    k = w / angle
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * K + (1.0 - math.cos(angle)) * (K @ K)


def inv_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (R^T, -R^T p): exact, unlike a general matrix inverse."""
    R, p = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ p
    return out


def pose_error(T_current: np.ndarray, T_target: np.ndarray) -> np.ndarray:
    """6-vector (position error; rotation error as axis-angle), both in the base frame."""
    dp = T_target[:3, 3] - T_current[:3, 3]
    dR = T_target[:3, :3] @ T_current[:3, :3].T
    return np.concatenate([dp, rotation_log(dR)])


# --- RealMan pose vectors ------------------------------------------------------------------------------------------

def matrix_from_pose6(pose) -> np.ndarray:
    """4x4 from RealMan's ``[x, y, z, rx, ry, rz]`` (fixed-axis XYZ: R = Rz(rz) Ry(ry) Rx(rx))."""
    x, y, z, rx, ry, rz = np.asarray(pose, dtype=float).reshape(6)
    T = np.eye(4)
    T[:3, :3] = rot_z(rz) @ rot_y(ry) @ rot_x(rx)
    T[:3, 3] = (x, y, z)
    return T


def pose6_from_matrix(T: np.ndarray) -> np.ndarray:
    """RealMan's ``[x, y, z, rx, ry, rz]`` of a 4x4 (inverse of ``matrix_from_pose6`` away from ry = +-90 deg)."""
    R = T[:3, :3]
    ry = math.asin(-np.clip(R[2, 0], -1.0, 1.0))
    if abs(R[2, 0]) < 1.0 - 1e-9:
        rx = math.atan2(R[2, 1], R[2, 2])
        rz = math.atan2(R[1, 0], R[0, 0])
    else:  # gimbal lock: only rz - rx (or rz + rx) is defined; put it all in rz
        rx = 0.0
        rz = math.atan2(-R[0, 1], R[1, 1])
    return np.array([T[0, 3], T[1, 3], T[2, 3], rx, ry, rz])


# --- Pinocchio ----------------------------------------------------------------------------------------------------

FLANGE_FRAME = "flange"


def build_pinocchio_model():
    """The RM75-6s as a ``pinocchio.Model`` parsed from the description's URDF (``urdf.arm_urdf()``, the same DH
    table): joints ``joint1..7``, frames ``flange`` and ``tcp``. Pinocchio is imported here, on demand."""
    import pinocchio as pin

    from ate_description.urdf import arm_urdf

    return pin.buildModelFromXML(arm_urdf())
