"""The safety limits of the cell: drivers.yaml's ``safety`` section, the one source for every module that commands
an arm or a gripper (the drivers' safety layer, the teleop's IK and filters, calibration, evaluation).

``SafetyConfig`` holds the limits with their defaults; ``load_safety()`` reads the section from the bring-up's
``drivers.yaml`` (or another file), so a limit changed there changes everywhere. The checks themselves live in
``ate_drivers.safety`` (the last line before the hardware).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from ate_description.config import config_dir, load_yaml
from ate_description.contract import JOINT_LIMITS_RAD, JOINT_MAX_SPEED_RAD_S, PERIOD_S
from ate_description.errors import UserError


@dataclass
class SafetyConfig:
    # Keeps commands this far inside the controller's own joint limits, so the controller never faults on a
    # target that rounding or a calibration offset puts a hair outside.
    joint_margin_rad: float = math.radians(2.0)
    # Velocity cap: half of what the slowest joint can do. Checked on every 20 Hz target (its step from the
    # reference over one period, see max_step_rad) and on every frame streamed to the controller (over the frame's
    # period); far under the controller's own 10 deg per movej_canfd frame.
    max_velocity_rad_s: float = 0.5 * min(JOINT_MAX_SPEED_RAD_S)
    # The arm driver's stream to the controller (libfranka's rate-limiter idea): acceleration and jerk bounds of the
    # interpolated frames, so a 20 Hz staircase of targets reaches the joints without velocity steps (in the range
    # of libfranka's joint limits: 15 rad/s^2, 7500 rad/s^3). The stream must be able to stop on any target one
    # 20 Hz step ahead, so these also bound its cruising speed: about 1.3 rad/s with these values.
    max_acceleration_rad_s2: float = 20.0
    max_jerk_rad_s3: float = 1000.0
    # Tracking guard: a target or frame farther than this from the measured joints is refused and the arm holds.
    # At full speed a target leads the measured joints by about one 20 Hz step (0.08 rad) plus the controller's
    # lag; a controller that stopped following (collision stop, brake) is caught within a few ticks, before
    # targets can walk far away from the arm and make it jump on recovery.
    tracking_bound_rad: float = 0.2
    # On the real cell a command's stamp must be set (zero = refused) and not lie in the future by more than this
    # (clock skew between processes of one PC is far below it).
    future_stamp_tolerance_s: float = 0.02
    # No fresh command for this long: hold, and judge the next command against the measured position.
    watchdog_s: float = 0.25
    # Gripper: opening fraction must lie in [0, 1]; force/speed fractions too.
    gripper_min: float = 0.0
    gripper_max: float = 1.0
    # Cell supervisor (ate_drivers.supervisor): a refusal, fault, tracking violation or stale input on one arm
    # holds "coupled" both arms (a handover must not go on with one arm frozen) or "independent" only that arm;
    # either way until an operator calls /cell/resume. A task that never couples the arms may choose independent.
    coupling: str = "coupled"
    # The e-stop node's heartbeat must reach every driver within this; a silent e-stop node latches the drivers'
    # e-stop (an e-stop that is not running cannot stop anything). 0 = no check (unit tests of one driver only).
    estop_timeout_s: float = 1.0

    @property
    def max_step_rad(self) -> float:
        """Largest joint change accepted between two 20 Hz targets: the velocity cap over one period."""
        return self.max_velocity_rad_s * PERIOD_S

    def joint_limits_rad(self) -> tuple[float, ...]:
        """The joint limits commands must stay within: the RM75-6s limits shrunk by the margin."""
        return tuple(lim - self.joint_margin_rad for lim in JOINT_LIMITS_RAD)


def default_drivers_config() -> Path:
    """The bring-up's drivers.yaml, where the ``safety`` section lives."""
    return config_dir() / "drivers.yaml"


def load_safety(path: str | Path | None = None, overrides: dict | None = None) -> SafetyConfig:
    """The ``safety`` section of ``path`` (default: the bring-up's drivers.yaml), with overrides applied."""
    path = Path(path) if path else default_drivers_config()
    if not path.exists():
        raise UserError(f"drivers config {path} not found: the safety limits live in its `safety` section")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {e}") from e
    section = data.get("safety") or {}
    if not isinstance(section, dict):
        raise UserError(f"{path}: `safety` must be a mapping, got {type(section).__name__}")
    return load_yaml(SafetyConfig, None, {**section, **(overrides or {})})
