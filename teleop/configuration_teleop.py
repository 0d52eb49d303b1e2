"""The teleop configuration (``ate_bringup/config/teleop.yaml``) as typed dataclasses.

Loaded with ``ate_description.config.load_yaml`` (the one config system). ``load_teleop_config(path, overrides)``
also resolves ``calibration_file`` relative to the YAML's folder, so the bring-up's ``teleop.yaml`` finds the
``calibration.yaml`` next to it wherever the package is installed. Launch arguments become overrides:
``dataset`` -> ``{"recorder": {"root": ...}}``, ``left_avp_ip`` -> ``{"left": {"avp": {"ip": ...}}}``, the
task instruction -> ``{"task": ...}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ate_description.config import config_dir, load_yaml, resolve_config_path
from ate_description.errors import UserError
from ate_description.limits import SafetyConfig, load_safety
from ate_policy.recording.recorder import RecorderConfig
from teleop.avp import AvpConfig
from teleop.buttons import RAW_BUTTONS, ButtonMapConfig, JoyConConfig
from teleop.filters import FilterConfig
from ate_description.ik import IK_EXTRA_MARGIN_RAD, IKConfig

GRIPPER_MODES = ("toggle", "hold", "stick", "pinch")


@dataclass
class GripperControlConfig:
    # toggle: gripper_toggle flips open/closed | hold: closed while gripper_close is held | stick: the stick's
    # vertical axis drives the opening proportionally | pinch: the tracked hand's thumb-index distance.
    # gripper_open / gripper_close presses set the target in every mode.
    mode: str = "toggle"
    stick_rate_per_s: float = 1.5      # full stick deflection: opening fraction per second
    pinch_open_m: float = 0.08         # pinch mode: thumb-index distance read as fully open ...
    pinch_closed_m: float = 0.02       # ... and as closed


def _right_avp() -> AvpConfig:
    return AvpConfig(ip="192.168.1.102")


@dataclass
class OperatorConfig:
    avp: AvpConfig = field(default_factory=AvpConfig)
    joycon: JoyConConfig = field(default_factory=JoyConConfig)
    buttons: ButtonMapConfig = field(default_factory=ButtonMapConfig)
    gripper: GripperControlConfig = field(default_factory=GripperControlConfig)
    enabled: bool = True               # false: this arm is not teleoperated (single-arm sessions)
    # joycon | scripted: `button_script` windows [t_start_s, t_end_s, raw button] counted from connect(), for
    # unattended runs (CI, demos) against emulated headsets; the operator then has no buttons in hand.
    buttons_source: str = "joycon"
    button_script: list[tuple[float, float, str]] = field(default_factory=list)


def _right_operator() -> OperatorConfig:
    return OperatorConfig(avp=_right_avp())


@dataclass
class TeleopConfig:
    task: str = ""                          # language instruction recorded with every episode
    calibration_file: str = "calibration.yaml"   # relative to the teleop YAML's folder
    rate_hz: float = 20.0
    left: OperatorConfig = field(default_factory=OperatorConfig)
    right: OperatorConfig = field(default_factory=_right_operator)
    ik: IKConfig = field(default_factory=IKConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    # drivers.yaml (relative to the teleop YAML's folder): its `safety` section is the one source of the limits
    # the teleop stays inside (joint margin, step) so the arm driver never refuses a command.
    drivers_file: str = "drivers.yaml"
    # Filled from drivers_file's `safety` section by load_teleop_config, never set in teleop.yaml.
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    # IK did not converge: the best-effort solution is still used ("clamped": the flange stops at the edge of
    # the workspace) when it is this close to the target; further away the arm holds ("unreachable").
    clamp_pos_m: float = 0.03
    clamp_rot_rad: float = math.radians(15.0)
    # A wrist stream (or Joy-Con) that comes back within this time resumes teleop by itself; after a longer
    # loss the hand may be anywhere, so the operator re-aligns (init or clutch) first.
    resume_after_loss_s: float = 0.5
    # A recording starts only when both arms are in teleop (the paper's two-operator episodes).
    require_both_arms: bool = True
    record: bool = True                     # false: teleop only, no dataset
    recorder: RecorderConfig = field(default_factory=RecorderConfig)

    def operator(self, arm: str) -> OperatorConfig:
        if arm not in ("left", "right"):
            raise UserError(f"unknown arm {arm!r}")
        return getattr(self, arm)

    def validate(self) -> None:
        if self.rate_hz <= 0:
            raise UserError("rate_hz must be positive")
        for arm in ("left", "right"):
            op = self.operator(arm)
            op.avp.validate()
            op.buttons.validate()
            if op.gripper.mode not in GRIPPER_MODES:
                raise UserError(f"{arm}.gripper.mode must be one of {GRIPPER_MODES}, got {op.gripper.mode!r}")
            if op.gripper.pinch_open_m <= op.gripper.pinch_closed_m:
                raise UserError(f"{arm}.gripper: pinch_open_m must exceed pinch_closed_m")
            if op.buttons_source not in ("joycon", "scripted"):
                raise UserError(f"{arm}.buttons_source must be 'joycon' or 'scripted', got {op.buttons_source!r}")
            unknown = {b for _, _, b in op.button_script} - set(RAW_BUTTONS[op.buttons.side])
            if unknown:
                raise UserError(f"{arm}.button_script: {sorted(unknown)} are not {op.buttons.side} Joy-Con buttons")
            if op.joycon.side != op.buttons.side:
                raise UserError(f"{arm}: joycon.side {op.joycon.side!r} and buttons.side "
                                f"{op.buttons.side!r} differ")
        if not any(self.operator(a).enabled for a in ("left", "right")):
            raise UserError("no operator is enabled")
        if self.left.enabled and self.right.enabled and self.left.avp.ip == self.right.avp.ip:
            raise UserError(f"both operators use the Vision Pro at {self.left.avp.ip}: "
                            "each needs its own headset")
        if self.record:
            self.recorder.validate()


def default_teleop_config_path() -> Path:
    return config_dir() / "teleop.yaml"


def load_teleop_config(path: str | Path | None = None, overrides: dict | None = None) -> TeleopConfig:
    """Load ``path`` (default: the bring-up's teleop.yaml), apply overrides, resolve the calibration path."""
    if path is None or str(path) == "":
        path = default_teleop_config_path()
    else:
        path = Path(resolve_config_path(str(path)))
    cfg = load_yaml(TeleopConfig, path, overrides)
    cal = Path(cfg.calibration_file)
    if not cal.is_absolute():
        cfg.calibration_file = str((path.parent / cal).resolve())
    drivers = Path(cfg.drivers_file)
    if not drivers.is_absolute():
        cfg.drivers_file = str((path.parent / drivers).resolve())
    # One source of the safety limits: a `safety` override still applies on top (tests, a stricter session).
    cfg.safety = load_safety(cfg.drivers_file, (overrides or {}).get("safety"))
    cfg.ik.limit_margin_rad = max(cfg.ik.limit_margin_rad, cfg.safety.joint_margin_rad + IK_EXTRA_MARGIN_RAD)
    cfg.validate()
    return cfg
