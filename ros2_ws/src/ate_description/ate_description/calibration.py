"""The calibration of the cell (``ate_bringup/config/calibration.yaml``): its schema and loader, as typed dataclasses.

The description owns this file's schema; the procedures of ``python -m calibration`` write it; the URDF
(``ate_description.urdf``), the simulated cell, the teleop and the drivers read it.

* Per arm: ``t_rotation`` (the paper's T_rotation: right-multiplied onto the operator's wrist pose so the
  wrist's axes line up with the flange's), the home and initial joint postures, the gripper range the teleop
  may command, and ``t_cell_base``: the arm base's pose in the **cell frame, which is the right arm's base frame**
  (so the right arm's is the identity by definition).
* Per camera: pinhole intrinsics and ``t_frame_camera``, the pose of the camera's **optical frame** (OpenCV
  convention: x right, y down, z forward along the view) in ``frame`` (``cell`` for cam_high, ``<arm>_flange``
  for a wrist camera). The defaults are the nominal mounts of the cell's design (what the sim renders) until
  ``python -m calibration cameras`` measures them.

Loaded with ``ate_description.config.load_yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ate_description.config import config_dir, load_yaml
from ate_description.contract import ARMS, CAMERA_NAMES, GRIPPER_STROKE_M, JOINT_LIMITS_RAD, N_ARM_JOINTS
from ate_description.errors import UserError
from ate_description.limits import SafetyConfig, load_safety

# The sim's ready posture (ate_sim.cell.HOME_Q): elbow up, gripper pointing down ~0.3 m above the table.
HOME_Q_RAD = [0.0, 0.2, 0.0, 1.7, 0.0, 1.25, 0.0]


def _default_t_rotation() -> list[list[float]]:
    # Assumes avp_stream's right-wrist frame has x towards the fingers, y towards the thumb and z out of the
    # back of the hand, and that the operator holds the hand palm down, fingers forward, as the "gripper
    # pointing down" of HOME_Q_RAD (flange x backwards, z down): a half turn about y. Calibrate it
    # (`python -m calibration wrist-rotation`) before recording data.
    return [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]


CELL_FRAME = "cell"
"""The frame the cell is described in: the right arm's base frame."""

# Nominal placements of the cell's design (the sim renders them; calibration replaces them with measured ones).
# The left base stands 0.40 m to the left (+y) of the right one, both upright.
_NOMINAL_T_CELL_BASE = {
    "left": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.40], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
    "right": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
}
# cam_high (L515) 0.40 m behind the bases, 0.95 m above them, looking down at the workspace (optical frame in cell).
_NOMINAL_CAM_HIGH = [[0.0, -0.810068478479, 0.586335279661, -0.40],
                     [-1.0, 0.0, 0.0, 0.20],
                     [0.0, -0.586335279661, -0.810068478479, 0.95],
                     [0.0, 0.0, 0.0, 1.0]]
# A D405 on the side of the gripper palm, 55 mm off the flange axis and 45 mm out, looking along the approach
# axis (flange +z) tilted 12 deg towards the fingers (optical frame in the flange frame).
_NOMINAL_CAM_WRIST = [[0.0, 1.0, 0.0, 0.0],
                      [-0.978147600734, 0.0, 0.207911690818, -0.055],
                      [0.207911690818, 0.0, 0.978147600734, 0.045],
                      [0.0, 0.0, 0.0, 1.0]]


def _check_transform(T, what: str) -> np.ndarray:
    T = np.asarray(T, dtype=float)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise UserError(f"calibration {what} must be a finite 4x4 homogeneous transform, got shape {T.shape}")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0 or \
            not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0]):
        raise UserError(f"calibration {what} is not a rigid transform (orthonormal rotation, last row 0 0 0 1)")
    return T


@dataclass
class GripperCalibration:
    """The OmniPicker's stroke as measured by ``python -m calibration gripper``: at each ``command`` fraction (what
    the gripper is sent, 0..1) the ``feedback`` fraction it reported and the finger gap the operator measured
    (``gap_mm``). Empty lists = not calibrated: the gripper's fractions are taken as the contract's (linear,
    0..120 mm). The data contract's opening fraction stays linear in mm (gap = fraction x 120 mm); only the gripper
    driver maps through this table, and clips to the measured gaps (the stroke's limits)."""

    command: list[float] = field(default_factory=list)
    feedback: list[float] = field(default_factory=list)
    gap_mm: list[float] = field(default_factory=list)
    # The force fraction to grasp with (what holds a bun without crushing it): set by hand, see docs/calibration.md.
    force: float = 1.0

    def calibrated(self) -> bool:
        return len(self.command) > 0

    def command_for(self, opening: float) -> float:
        """Command fraction that opens the fingers to ``opening`` (contract fraction, linear in mm)."""
        if not self.calibrated():
            return float(opening)
        gap = float(opening) * GRIPPER_STROKE_M * 1e3
        return float(np.interp(gap, self.gap_mm, self.command))   # np.interp clips to the measured stroke

    def opening_from_feedback(self, position: float) -> float:
        """Contract opening fraction (gap / 120 mm) from the gripper's feedback fraction."""
        if not self.calibrated():
            return float(position)
        gap = float(np.interp(position, self.feedback, self.gap_mm))
        return float(np.clip(gap / (GRIPPER_STROKE_M * 1e3), 0.0, 1.0))

    def validate(self, arm: str) -> None:
        n = len(self.command)
        if not 0.0 < self.force <= 1.0:
            raise UserError(f"calibration {arm}.gripper.force must be a fraction in (0, 1], got {self.force}")
        if n == 0 and not self.feedback and not self.gap_mm:
            return
        if n < 2 or len(self.feedback) != n or len(self.gap_mm) != n:
            raise UserError(f"calibration {arm}.gripper needs command, feedback and gap_mm of one length >= 2, got "
                            f"{n}, {len(self.feedback)}, {len(self.gap_mm)}")
        for key in ("command", "feedback", "gap_mm"):
            v = np.asarray(getattr(self, key), dtype=float)
            if not np.all(np.isfinite(v)) or np.any(np.diff(v) <= 0):
                raise UserError(f"calibration {arm}.gripper.{key} must increase strictly (a monotonic stroke), "
                                f"got {v.tolist()}")
        if min(self.command + self.feedback) < 0.0 or max(self.command + self.feedback) > 1.0:
            raise UserError(f"calibration {arm}.gripper command/feedback are fractions in [0, 1]")
        if self.gap_mm[0] < 0.0:
            raise UserError(f"calibration {arm}.gripper.gap_mm must be >= 0, got {self.gap_mm[0]}")


@dataclass
class ProcedureRecord:
    """What one ``python -m calibration`` procedure did: when, with which inputs, how well (its residuals), and
    the report it wrote beside the YAML."""

    date: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    residuals: dict[str, float] = field(default_factory=dict)
    report: str = ""


@dataclass
class ArmCalibration:
    t_rotation: list[list[float]] = field(default_factory=_default_t_rotation)
    home_q_rad: list[float] = field(default_factory=lambda: list(HOME_Q_RAD))   # reset-to-home target
    init_q_rad: list[float] = field(default_factory=lambda: list(HOME_Q_RAD))   # where operators align
    # Gripper opening fractions the teleop commands for "open" and "closed" (0 = closed .. 1 = 120 mm): a
    # smaller "open" saves time on every grasp when objects are small.
    gripper_open: float = 1.0
    gripper_closed: float = 0.0
    # The arm base's pose in the cell frame (the right arm's base frame); `python -m calibration bases` measures it.
    t_cell_base: list[list[float]] | None = None
    gripper: GripperCalibration = field(default_factory=GripperCalibration)

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
    # Extrinsics: pose (4x4) of the camera's optical frame (x right, y down, z forward) in `frame`: `cell` or
    # `<arm>_flange`.
    frame: str = ""
    t_frame_camera: list[list[float]] = field(default_factory=lambda: np.eye(4).tolist())
    # OpenCV distortion k1 k2 p1 p2 k3 at width x height; where the intrinsics came from ("factory": the
    # RealSense's own calibration, "estimated": from board views, "": not calibrated); the pose's residuals.
    dist: list[float] = field(default_factory=lambda: [0.0] * 5)
    intrinsics_source: str = ""
    residuals: dict[str, float] = field(default_factory=dict)

    def transform(self) -> np.ndarray:
        return np.asarray(self.t_frame_camera, dtype=float)


def _default_cameras() -> dict[str, CameraCalibration]:
    return {"cam_high": CameraCalibration(frame=CELL_FRAME, t_frame_camera=[list(r) for r in _NOMINAL_CAM_HIGH]),
            "cam_left_wrist": CameraCalibration(frame="left_flange",
                                                t_frame_camera=[list(r) for r in _NOMINAL_CAM_WRIST]),
            "cam_right_wrist": CameraCalibration(frame="right_flange",
                                                 t_frame_camera=[list(r) for r in _NOMINAL_CAM_WRIST])}


CALIBRATION_VERSION = 1
"""Schema version of calibration.yaml; a procedure writes it, a reader refuses a newer one."""


@dataclass
class CalibrationConfig:
    version: int = CALIBRATION_VERSION
    left: ArmCalibration = field(default_factory=ArmCalibration)
    right: ArmCalibration = field(default_factory=ArmCalibration)
    cameras: dict[str, CameraCalibration] = field(default_factory=_default_cameras)
    # One record per procedure that wrote into this file (cameras, bases, gripper, wrist-rotation).
    procedures: dict[str, ProcedureRecord] = field(default_factory=dict)

    def arm(self, name: str) -> ArmCalibration:
        if name not in ARMS:
            raise UserError(f"unknown arm {name!r}; expected one of {ARMS}")
        return getattr(self, name)

    def t_cell_base(self, arm: str) -> np.ndarray:
        """Pose of ``arm``'s base in the cell frame (the nominal design placement when not calibrated)."""
        T = self.arm(arm).t_cell_base
        return np.asarray(T if T is not None else _NOMINAL_T_CELL_BASE[arm], dtype=float)

    def camera(self, name: str) -> CameraCalibration:
        if name not in self.cameras:
            raise UserError(f"calibration has no camera {name!r}; it has {sorted(self.cameras)}")
        return self.cameras[name]

    def validate(self, safety: SafetyConfig | None = None) -> None:
        """Check shapes and ranges; postures must lie inside ``safety``'s joint limits (drivers.yaml's)."""
        safety = safety or load_safety()
        if self.version > CALIBRATION_VERSION:
            raise UserError(f"calibration version {self.version} is newer than this code reads "
                            f"({CALIBRATION_VERSION}): update the software")
        lim = np.asarray(JOINT_LIMITS_RAD) - safety.joint_margin_rad
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
            _check_transform(self.t_cell_base(arm), f"{arm}.t_cell_base")
            c.gripper.validate(arm)
        if not np.allclose(self.t_cell_base("right"), np.eye(4), atol=1e-9):
            raise UserError("calibration right.t_cell_base must be the identity: the cell frame is the right arm's "
                            "base frame (express the left base relative to it)")
        unknown = set(self.cameras) - set(CAMERA_NAMES)
        if unknown:
            raise UserError(f"calibration cameras {sorted(unknown)} unknown; "
                            f"cameras are {list(CAMERA_NAMES)}")
        for name, cam in self.cameras.items():
            expected = CELL_FRAME if name == "cam_high" else f"{name.split('_')[1]}_flange"
            if cam.frame != expected:
                raise UserError(f"calibration cameras.{name}.frame must be {expected!r} (where that camera is "
                                f"mounted), got {cam.frame!r}")
            _check_transform(cam.t_frame_camera, f"cameras.{name}.t_frame_camera")
            if len(cam.dist) != 5 or not np.all(np.isfinite(cam.dist)):
                raise UserError(f"calibration cameras.{name}.dist needs 5 finite numbers (k1 k2 p1 p2 k3)")


def default_calibration_path() -> Path:
    """The bring-up's calibration.yaml (installed share folder when the ament index knows it)."""
    return config_dir() / "calibration.yaml"


def load_calibration(path: str | Path | None = None, overrides: dict | None = None) -> CalibrationConfig:
    """Load and validate; ``path=None`` reads the bring-up's calibration.yaml."""
    path = default_calibration_path() if path is None else Path(path)
    if not path.exists():
        raise UserError(f"calibration file {path} not found")
    cfg = load_yaml(CalibrationConfig, path, overrides)
    cfg.validate()
    return cfg
