"""Wrist-to-flange frame mapping of one operator (paper appendix I; docs/architecture.md, hardware facts).

At the initialise (or clutch) moment the current wrist pose ``T_vision_init`` (avp_stream's Z-up frame) and
the arm's current flange pose ``T_ee_init`` (base frame) give

    T_transform = T_ee_init (T_vision_init T_rotation)^-1

and every later wrist pose maps to the target flange pose

    T_target = T_transform (T_vision T_rotation).

``T_rotation`` (a calibrated constant per arm, ``calibration.yaml``) turns the wrist's axes into the flange's,
right-multiplied so it acts in the wrist's own frame. Consequences worth knowing (tested):

* right after ``align`` the target *equals* ``T_ee_init``: aligning never moves the arm, whatever the hand's
  pose; a clutch is the same call with the arm's current commanded pose;
* a wrist translation ``d`` (headset frame) moves the flange by ``R_transform d`` (base frame), with
  ``R_transform = R_ee_init R_rotation^T R_vision_init^T``: the operator's hand orientation at alignment
  decides which way is "forward" for the arm, so operators need not face the robot's x axis;
* a wrist rotation ``dR`` about the wrist's own axes rotates the flange by ``R_rotation^T dR R_rotation``
  about the flange's own axes.
"""

from __future__ import annotations

import numpy as np

from ate_description.kinematics import inv_transform


def as_transform(M) -> np.ndarray:
    """A 4x4 from a 4x4 or a 3x3 rotation; checks it is a proper rigid transform."""
    M = np.asarray(M, dtype=float)
    if M.shape == (3, 3):
        T = np.eye(4)
        T[:3, :3] = M
        M = T
    if M.shape != (4, 4) or not np.all(np.isfinite(M)):
        raise ValueError(f"expected a finite 4x4 transform or 3x3 rotation, got shape {M.shape}")
    R = M[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise ValueError("the rotation part is not a proper rotation (orthonormal, det +1)")
    if not np.allclose(M[3], [0, 0, 0, 1]):
        raise ValueError("the last row of a rigid transform must be [0, 0, 0, 1]")
    return M


class FrameMapping:
    """Per-operator mapping; ``align`` at init/clutch, ``target`` every tick."""

    def __init__(self, T_rotation):
        self.T_rotation = as_transform(T_rotation)
        self.T_transform: np.ndarray | None = None

    @property
    def aligned(self) -> bool:
        return self.T_transform is not None

    def align(self, T_vision, T_ee) -> None:
        """Capture ``T_transform`` from the current wrist pose and the arm's current flange pose."""
        T_vision, T_ee = as_transform(T_vision), as_transform(T_ee)
        self.T_transform = T_ee @ inv_transform(T_vision @ self.T_rotation)

    def target(self, T_vision) -> np.ndarray:
        """Target flange pose (base frame) of a wrist pose."""
        if self.T_transform is None:
            raise RuntimeError("FrameMapping.align() must come first (press init)")
        T_vision = np.asarray(T_vision, dtype=float)
        return self.T_transform @ (T_vision @ self.T_rotation)

    def reset(self) -> None:
        self.T_transform = None
