"""Estimating an arm's ``T_rotation`` (wrist frame -> flange frame), two small procedures.

**From pairs** (``estimate_from_pairs``): the operator's hand holds the gripper firmly while the arm moves
through a few orientations (hand-guided or commanded); each sample pairs the wrist pose from the Vision Pro
with the flange pose from the arm. While the hand is rigid on the flange, ``R_flange_i = R_X R_wrist_i R_rot``
with a constant ``R_X`` (headset world -> robot base), so relative motions obey

    R_flange_0^T R_flange_i = R_rot^T (R_wrist_0^T R_wrist_i) R_rot:

the rotation vectors of the two relative motions differ by ``R_rot^T``, which the Kabsch fit recovers. It needs
rotations about at least two different axes; the residual (degrees) says how rigid the grip and how good the
tracking were.

**From a known pose** (``estimate_from_known_pose``): the operator faces the robot's forward (+x of the base)
and holds the hand as the gripper is at ``init_q_rad`` (for the default: palm down, fingers forward). The head
pose removes the headset's arbitrary yaw: the operator's body frame has z up and x along the head's forward
direction projected on the floor (avp_stream's head matrix has its y axis forward and z up; checked on the
client's conversion of an identity headset pose), and ``R_rot = (R_body^T R_wrist)^T R_flange_init``.
"""

from __future__ import annotations

import numpy as np

from ate_description.errors import UserError
from ate_description.kinematics import rotation_log


def _project_to_rotation(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def mean_rotation(Rs: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotations (projection of the arithmetic mean onto SO(3))."""
    Rs = np.asarray(Rs, dtype=float).reshape(-1, 3, 3)
    return _project_to_rotation(Rs.mean(axis=0))


def estimate_from_pairs(R_wrist, R_flange, min_angle_deg: float = 5.0) -> tuple[np.ndarray, float]:
    """``(R_rot, residual_deg)`` from paired wrist / flange rotations (N, 3, 3); see the module docstring."""
    Rw = np.asarray(R_wrist, dtype=float).reshape(-1, 3, 3)
    Rf = np.asarray(R_flange, dtype=float).reshape(-1, 3, 3)
    if Rw.shape != Rf.shape or len(Rw) < 3:
        raise UserError(f"need at least 3 paired wrist/flange samples of equal count, "
                        f"got {len(Rw)} and {len(Rf)}")
    a, b = [], []
    for i in range(1, len(Rw)):
        A = Rf[0].T @ Rf[i]
        B = Rw[0].T @ Rw[i]
        va, vb = rotation_log(A), rotation_log(B)
        if np.degrees(np.linalg.norm(vb)) >= min_angle_deg:
            a.append(va)
            b.append(vb)
    if len(a) < 2:
        raise UserError(f"the samples rotate the wrist by less than {min_angle_deg} deg: rotate the arm "
                        "(with the hand on it) about at least two different axes")
    a, b = np.array(a), np.array(b)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    if np.linalg.matrix_rank(bn, tol=0.2) < 2:
        raise UserError("all relative rotations share one axis: rotate about at least two different axes")
    # Kabsch: Rt = argmin sum |a_k - Rt b_k|^2, and Rt = R_rot^T.
    Rt = _project_to_rotation(a.T @ b)
    R_rot = Rt.T
    res = [np.degrees(np.linalg.norm(rotation_log((Rf[0].T @ Rf[i]).T @ (R_rot.T @ Rw[0].T @ Rw[i] @ R_rot))))
           for i in range(1, len(Rw))]
    return R_rot, float(np.max(res))


def body_frame_from_head(head: np.ndarray) -> np.ndarray:
    """The operator's body frame (z up, x = head forward on the floor) in the headset's Z-up world."""
    fwd = np.asarray(head, dtype=float)[:3, 1].copy()
    fwd[2] = 0.0
    n = np.linalg.norm(fwd)
    if n < 0.3:
        raise UserError("the head looks almost straight up or down: look ahead while calibrating")
    x = fwd / n
    z = np.array([0.0, 0.0, 1.0])
    return np.column_stack([x, np.cross(z, x), z])


def estimate_from_known_pose(wrists, heads, R_flange_init) -> tuple[np.ndarray, float]:
    """``(R_rot, spread_deg)`` from wrist and head samples (N, 4, 4) held in the known pose; spread = how much
    the hand moved during the recording (largest deviation from the mean)."""
    W = np.asarray(wrists, dtype=float).reshape(-1, 4, 4)
    H = np.asarray(heads, dtype=float).reshape(-1, 4, 4)
    if len(W) < 1 or len(H) < 1:
        raise UserError("no samples recorded")
    R_w = mean_rotation(W[:, :3, :3])
    R_b = body_frame_from_head(H[len(H) // 2])
    R_wb = R_b.T @ R_w
    R_rot = R_wb.T @ np.asarray(R_flange_init, dtype=float)[:3, :3]
    spread = max(np.degrees(np.linalg.norm(rotation_log(R_w.T @ R))) for R in W[:, :3, :3])
    return R_rot, float(spread)
