"""Shared helpers of the teleop tests: scripted wrist paths, configs, a perfect-tracking arm."""

from __future__ import annotations

import math

import numpy as np

from calibration.config import CalibrationConfig
from teleop.configuration_teleop import TeleopConfig
from teleop.kinematics import fk, rot_z

HOME_Q = np.array([0.0, 0.2, 0.0, 1.7, 0.0, 1.25, 0.0])
PERIOD_S = 0.05


def aligned_wrist_rotation(cal_arm) -> np.ndarray:
    """A wrist orientation held like the flange at init (R_wrist T_rotation = R_flange): the mapping is then the
    identity on directions, so a wrist move along x moves the flange along the base's x."""
    R_f = fk(np.asarray(cal_arm.init_q_rad))[:3, :3]
    return R_f @ cal_arm.rotation().T


def wrist_pose(p, R) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = p
    return T


def tremor(t: float) -> np.ndarray:
    """0.1 mm of deterministic hand tremor: real tracking is never bit-identical, so a still hand is not 'frozen'."""
    return 1e-4 * np.array([math.sin(2 * math.pi * 7.0 * t), math.cos(2 * math.pi * 5.0 * t), 0.0])


def teleop_config(**over) -> TeleopConfig:
    cfg = TeleopConfig()
    cfg.left.avp.ip, cfg.right.avp.ip = "127.0.0.1", "127.0.0.2"
    cfg.record = False
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def calibration() -> CalibrationConfig:
    return CalibrationConfig()


def yaw(R: np.ndarray, a: float) -> np.ndarray:
    return rot_z(a) @ R


class PerfectArm:
    """An arm that is exactly where it was last told to be (unit tests of the state machine only; the sim cell
    stands in for the robot in the end-to-end test)."""

    def __init__(self, q0=HOME_Q):
        self.q = np.array(q0, dtype=float)

    def apply(self, q_cmd) -> None:
        if q_cmd is not None:
            self.q = np.array(q_cmd, dtype=float)
