"""The calibration the bring-up reads (``ate_bringup/config/calibration.yaml``) as typed dataclasses.

Per arm: ``t_rotation`` (the paper's T_rotation: right-multiplied onto the operator's wrist pose so the
wrist's axes line up with the flange's), the home and initial joint postures, and the gripper range the teleop
may command. Per camera: intrinsics and extrinsics fields, documented placeholders until a camera calibration
procedure fills them (nothing in the stack reads them yet). Loaded with ``ate_policy.config.load_yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ate_drivers.safety import SafetyConfig
from ate_policy.config import load_yaml
from ate_policy.contract import ARMS, CAMERA_NAMES, JOINT_LIMITS_RAD, N_ARM_JOINTS
from ate_policy.errors import UserError

# The sim's ready posture (ate_sim.cell.HOME_Q): elbow up, gripper pointing down ~0.3 m above the table.
HOME_Q_RAD = [0.0, 0.2, 0.0, 1.7, 0.0, 1.25, 0.0]


def _default_t_rotation() -> list[list[float]]:
    # Assumes avp_stream's right-wrist frame has x towards the fingers, y towards the thumb and z out of the
    # back of the hand, and that the operator holds the hand palm down, fingers forward, as the "gripper
    # pointing down" of HOME_Q_RAD (flange x backwards, z down): a half turn about y. Calibrate it
    # (`python -m calibration wrist-rotation`) before recording data.
    return [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]


@dataclass
class ArmCalibration:
    t_rotation: list[list[float]] = field(default_factory=_default_t_rotation)
    home_q_rad: list[float] = field(default_factory=lambda: list(HOME_Q_RAD))   # reset-to-home target
    init_q_rad: list[float] = field(default_factory=lambda: list(HOME_Q_RAD))   # where operators align
    # Gripper opening fractions the teleop commands for "open" and "closed" (0 = closed .. 1 = 120 mm): a
    # smaller "open" saves time on every grasp when objects are small.
    gripper_open: float = 1.0
    gripper_closed: float = 0.0

    def rotation(self) -> np.ndarray:
        return np.asarray(self.t_rotation, dtype=float)


@dataclass
class CameraCalibration:
    # Pinhole intrinsics in pixels at width x height; 0 = not calibrated (placeholder).
    width: int = 960
    height: int = 540
    fx: float = 0.0
    fy: float = 0.0
    cx: float = 0.0
    cy: float = 0.0
    # Extrinsics: camera pose (4x4) in `frame` (a flange for the wrist cameras, the left arm's base for
    # cam_high); identity = not calibrated (placeholder).
    frame: str = ""
    t_frame_camera: list[list[float]] = field(default_factory=lambda: np.eye(4).tolist())


def _default_cameras() -> dict[str, CameraCalibration]:
    return {"cam_high": CameraCalibration(frame="left_base"),
            "cam_left_wrist": CameraCalibration(frame="left_flange"),
            "cam_right_wrist": CameraCalibration(frame="right_flange")}


@dataclass
class CalibrationConfig:
    left: ArmCalibration = field(default_factory=ArmCalibration)
    right: ArmCalibration = field(default_factory=ArmCalibration)
    cameras: dict[str, CameraCalibration] = field(default_factory=_default_cameras)

    def arm(self, name: str) -> ArmCalibration:
        if name not in ARMS:
            raise UserError(f"unknown arm {name!r}; expected one of {ARMS}")
        return getattr(self, name)

    def validate(self) -> None:
        lim = np.asarray(JOINT_LIMITS_RAD) - SafetyConfig().joint_margin_rad
        for arm in ARMS:
            c = self.arm(arm)
            R = np.asarray(c.t_rotation, dtype=float)
            if R.shape != (3, 3) or not np.all(np.isfinite(R)):
                raise UserError(f"calibration {arm}.t_rotation must be a 3x3 rotation matrix, "
                                f"got shape {R.shape}")
            if not np.allclose(R.T @ R, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
                raise UserError(f"calibration {arm}.t_rotation is not a rotation (orthonormal, det +1): "
                                f"{R.tolist()}")
            for key in ("home_q_rad", "init_q_rad"):
                q = np.asarray(getattr(c, key), dtype=float)
                if q.shape != (N_ARM_JOINTS,) or not np.all(np.isfinite(q)):
                    raise UserError(f"calibration {arm}.{key} needs {N_ARM_JOINTS} finite joint angles (rad)")
                bad = np.flatnonzero(np.abs(q) > lim)
                if bad.size:
                    j = int(bad[0])
                    raise UserError(f"calibration {arm}.{key}: joint{j + 1} = {q[j]:.3f} rad is outside the "
                                    f"safety limits +-{lim[j]:.3f} rad")
            if not 0.0 <= c.gripper_closed < c.gripper_open <= 1.0:
                raise UserError(f"calibration {arm}: need 0 <= gripper_closed < gripper_open <= 1, got "
                                f"{c.gripper_closed}, {c.gripper_open}")
        unknown = set(self.cameras) - set(CAMERA_NAMES)
        if unknown:
            raise UserError(f"calibration cameras {sorted(unknown)} unknown; "
                            f"cameras are {list(CAMERA_NAMES)}")


def default_calibration_path() -> Path:
    """The bring-up's calibration.yaml (installed share folder when the ament index knows it)."""
    try:
        from ate_bringup.graph import config_dir

        return config_dir() / "calibration.yaml"
    except ImportError:
        return Path(__file__).resolve().parents[1] / "ros2_ws/src/ate_bringup/config/calibration.yaml"


def load_calibration(path: str | Path | None = None, overrides: dict | None = None) -> CalibrationConfig:
    """Load and validate; ``path=None`` reads the bring-up's calibration.yaml."""
    path = default_calibration_path() if path is None else Path(path)
    if not path.exists():
        raise UserError(f"calibration file {path} not found")
    cfg = load_yaml(CalibrationConfig, path, overrides)
    cfg.validate()
    return cfg
