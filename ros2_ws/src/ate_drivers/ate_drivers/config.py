"""The driver configuration (``ate_bringup/config/drivers.yaml``) as typed dataclasses, loaded with
``ate_description.config.load_yaml`` (the one config system).

``robot`` picks the cell: ``real`` (the lab's hardware), ``emulated`` (the real SDK / python-can backends against
in-process protocol emulators) or ``sim`` (the simulated cell). ``backends`` maps each to the registered backend
names (``ate_drivers.registry``), so a node asks the registry by name and never branches on the mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ate_drivers.arm.configuration_realman import RealmanArmConfig
from ate_drivers.arm_driver import ReconnectConfig
from ate_drivers.camera.configuration_cameras import CameraConfig
from ate_drivers.gripper.configuration_omnipicker import OmniPickerConfig
from ate_drivers.safety import SafetyConfig
from ate_description.config import load_yaml
from ate_description.errors import UserError

ROBOT_MODES = ("real", "emulated", "sim")


@dataclass
class BackendNames:
    arm: str
    gripper: str
    camera: str


def _default_backends() -> dict[str, BackendNames]:
    return {
        "real": BackendNames("realman", "omnipicker", "lerobot"),
        "emulated": BackendNames("realman_emulated", "omnipicker_emulated", "playback"),
        "sim": BackendNames("sim", "sim", "sim"),
    }


@dataclass
class ArmSideConfig:
    realman: RealmanArmConfig = field(default_factory=RealmanArmConfig)
    gripper: OmniPickerConfig = field(default_factory=OmniPickerConfig)


def _right_side() -> ArmSideConfig:
    side = ArmSideConfig()
    side.realman.ip = "192.168.1.19"
    side.gripper.channel = "/dev/ttyUSB1"
    return side


@dataclass
class SimSettings:
    """robot:=sim: the simulated cell that stands in for every device (ate_sim.sim_node, docs/sim.md)."""

    task: str = ""                 # scene (ate_sim.scenes.SCENES: cook_bun, pick_bun, ...) | "" (empty table)
    seed: int = 0                  # object randomisation of the scene
    # realtime: the cell runs at wall-clock pace (people watching, EGL on a GPU machine); lockstep: simulated time
    # advances one 20 Hz tick once every consumer acknowledged it (tests, evaluation: CPU rendering costs wall
    # time only and a run is the same on any machine).
    clock: str = "realtime"
    consumers: list[str] = field(default_factory=list)   # lockstep: the nodes that acknowledge each tick
    # Rendered camera size: CPU rendering (OSMesa) costs about 75 ms per 224x224 frame, 960x540 is for GPUs.
    image_height: int = 224
    image_width: int = 224
    camera_fps: float = 20.0       # realtime: render rate per camera (best effort on a CPU)
    republish_s: float = 2.0       # lockstep: publish the tick again when no ack came within this (wall) time

    def validate(self) -> None:
        if self.clock not in ("realtime", "lockstep"):
            raise UserError(f"sim.clock must be realtime or lockstep, got {self.clock!r}")
        if self.clock == "lockstep" and not self.consumers:
            raise UserError("sim.clock lockstep needs sim.consumers: the nodes whose acknowledgement ends a tick "
                            "(e.g. [policy]); with none the cell would never know when to step")
        if self.image_height < 8 or self.image_width < 8 or self.camera_fps <= 0 or self.republish_s <= 0:
            raise UserError("sim.image_height/width must be >= 8, camera_fps and republish_s positive")


@dataclass
class DriversConfig:
    robot: str = "real"
    backends: dict[str, BackendNames] = field(default_factory=_default_backends)
    # joint_states publish rate; at >= 50 Hz so a 20 Hz consumer always has a state < 1 tick old.
    state_rate_hz: float = 100.0
    # The force sensor is queried every n-th state tick (each query is one more TCP round trip).
    wrench_every_n: int = 5
    gripper_rate_hz: float = 50.0
    diagnostics_period_s: float = 1.0
    # robot:=real and no controller within this time: the node exits with a message naming robot:=sim.
    fail_fast_s: float = 10.0
    left: ArmSideConfig = field(default_factory=ArmSideConfig)
    right: ArmSideConfig = field(default_factory=_right_side)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)
    cameras: dict[str, CameraConfig] = field(default_factory=dict)
    sim: SimSettings = field(default_factory=SimSettings)

    def side(self, arm: str) -> ArmSideConfig:
        if arm not in ("left", "right"):
            raise UserError(f"unknown arm {arm!r}; expected left or right")
        return getattr(self, arm)

    def backend_names(self) -> BackendNames:
        if self.robot not in self.backends:
            raise UserError(f"robot:={self.robot} is not one of {sorted(self.backends)}")
        return self.backends[self.robot]


def load_drivers_config(path: str | Path | None = None, robot: str | None = None,
                        overrides: dict | None = None) -> DriversConfig:
    over = dict(overrides or {})
    if robot:
        over["robot"] = robot
    cfg = load_yaml(DriversConfig, path, over)
    cfg.backend_names()
    if cfg.robot == "sim":
        cfg.sim.validate()
    return cfg
