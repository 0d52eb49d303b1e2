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
    # Largest joint change accepted in one command (velocity cap): a fraction of what the slowest joint can do
    # in one 20 Hz period, and well under the controller's 10 deg per movej_canfd frame.
    max_step_rad: float = 0.5 * min(JOINT_MAX_SPEED_RAD_S) * PERIOD_S
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
