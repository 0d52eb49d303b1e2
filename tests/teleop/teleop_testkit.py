"""Shared helpers of the teleop tests: scripted wrist paths, configs, a perfect-tracking arm."""

from __future__ import annotations

import math

import numpy as np

from ate_description.calibration import CalibrationConfig
from teleop.configuration_teleop import TeleopConfig
from ate_description.kinematics import fk, rot_z

HOME_Q = np.array([0.0, 0.2, 0.0, 1.7, 0.0, 1.25, 0.0])
PERIOD_S = 0.05


def aligned_wrist_rotation(cal_arm) -> np.ndarray:
    """A wrist orientation held like the flange at init (R_wrist T_rotation = R_flange): the mapping is then
    the identity on directions, so a wrist move along x moves the flange along the base's x."""
    R_f = fk(np.asarray(cal_arm.init_q_rad))[:3, :3]
    return R_f @ cal_arm.rotation().T


def wrist_pose(p, R) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = p
    return T


def tremor(t: float) -> np.ndarray:
    """0.1 mm of deterministic hand tremor: real tracking is never bit-identical, so a still hand is not
    'frozen'."""
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


class Rig:
    """A session on scripted sources and perfect arms, ticked at 20 Hz of a clock the test owns. Every command
    goes through the arm driver's real safety filter: a refused command (limit, step) fails the test."""

    def __init__(self, cfg=None, recorder=None, q0=HOME_Q):
        from ate_drivers.safety import SafetyFilter
        from teleop.buttons import ScriptedButtons
        from teleop.pose_source import ScriptedPoseSource
        from teleop.session import DualTeleopSession

        self.t = 0.0
        clock = lambda: self.t  # noqa: E731
        self.cal = calibration()
        self.cfg = cfg or teleop_config()
        self.wrist = {arm: wrist_pose([0.3, 0.25 if arm == "left" else -0.25, 1.1],
                                      aligned_wrist_rotation(self.cal.arm(arm))) for arm in ("left", "right")}
        self.poses = {arm: ScriptedPoseSource(lambda t, arm=arm: self._wrist_at(arm, t), clock,
                                              self.cfg.operator(arm).avp.max_age_ms,
                                              self.cfg.operator(arm).avp.frozen_after_ms)
                      for arm in ("left", "right")}
        self.buttons = {arm: ScriptedButtons(clock=clock) for arm in ("left", "right")}
        self.arms = {arm: PerfectArm(q0) for arm in ("left", "right")}
        self.gripper = {arm: 1.0 for arm in ("left", "right")}
        self.session = DualTeleopSession(self.cfg, self.cal, pose_sources=self.poses,
                                         button_sources=self.buttons, recorder=recorder)
        self.session.connect()
        self.safety = {arm: SafetyFilter(arm, self.cfg.safety) for arm in ("left", "right")}
        self.out = None
        self.images = None

    def _wrist_at(self, arm, t):
        T = self.wrist[arm].copy()
        T[:3, 3] += tremor(t)
        return T

    def move_wrist(self, arm, d):
        self.wrist[arm] = self.wrist[arm].copy()
        self.wrist[arm][:3, 3] += np.asarray(d, dtype=float)

    def flange(self, arm) -> np.ndarray:
        return fk(self.arms[arm].q)

    def tick(self, n: int = 1):
        for _ in range(n):
            s = self.session
            for arm in ("left", "right"):
                s.put_joint_state(arm, self.arms[arm].q, self.t)
                s.put_gripper_state(arm, self.gripper[arm], self.t)
                s.put_wrench(arm, np.zeros(6), self.t)
            if self.images is not None:
                for cam, img in self.images.items():
                    s.put_image(cam, img, self.t)
            self.out = s.tick(self.t)
            for arm in ("left", "right"):
                q = self.out.joint_targets[arm]
                if q is not None:
                    self.safety[arm].check_arm(q, self.arms[arm].q, self.t)   # raises Refused
                    self.arms[arm].apply(q)
                g = self.out.gripper_targets[arm]
                if g is not None:
                    self.gripper[arm] = g
            self.t = round(self.t + PERIOD_S, 9)
        return self.out

    def press(self, arm, button, ticks: int = 1):
        self.buttons[arm].hold(button)
        self.tick(ticks)
        self.buttons[arm].release(button)

    def align(self, *arms):
        arms = arms or ("left", "right")
        for arm in arms:
            self.buttons[arm].hold("right")          # init (L Joy-Con default mapping)
        self.tick(2)
        for arm in arms:
            self.buttons[arm].release("right")
        self.tick()

    def state(self, arm) -> str:
        return self.out.status["state"][arm]
