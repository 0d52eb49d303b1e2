"""What a procedure works with: arms moved through the drivers' safety layer, cameras, grippers, and an operator.

A procedure never knows whether it runs on the lab's cell (``hardware_rig``: the real backends from drivers.yaml),
or on the simulated twin (``calibration.sim_rig.SimRig``, the tests and dry runs); the operator's part (mount the
board, jog the arm to a start pose, measure the finger gap) is an :class:`Operator`: a person at a console, or a
script in the sim.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ate_description.contract import PERIOD_S, arm_joint_names
from ate_description.errors import UserError
from ate_description.kinematics import fk
from calibration.charuco import Intrinsics


class Operator(Protocol):
    def say(self, text: str) -> None:
        """Progress for the person running the procedure."""

    def do(self, key: str, text: str) -> None:
        """Perform the instruction ``text`` (``key`` names it for scripted operators); return when done."""

    def measure(self, key: str, text: str) -> float:
        """A number the operator measured (e.g. a finger gap in mm)."""


class ConsoleOperator:
    """A person at the terminal; ``answers`` pre-fills measurements (``--gap-mm`` and friends) by key."""

    def __init__(self, answers: dict[str, float] | None = None, stream=None, read=input,
                 assume_done: bool = False):
        self.answers = dict(answers or {})
        self.stream, self.read = stream, read
        self.assume_done = assume_done   # --yes: print the instructions, do not wait (unattended, emulated runs)

    def say(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def do(self, key: str, text: str) -> None:
        self.say(f"\n>>> {text}")
        if self.assume_done:
            return
        reply = self.read("    press Enter when done (q + Enter aborts): ")
        if reply.strip().lower() in ("q", "quit", "abort"):
            raise UserError(f"aborted by the operator at step {key!r}")

    def measure(self, key: str, text: str) -> float:
        if key in self.answers:
            self.say(f"{text}: {self.answers[key]:g} (given)")
            return float(self.answers[key])
        while True:
            reply = self.read(f"\n>>> {text}: ").strip()
            if reply.lower() in ("q", "quit", "abort"):
                raise UserError(f"aborted by the operator at step {key!r}")
            try:
                value = float(reply)
            except ValueError:
                self.say(f"    not a number: {reply!r}; type e.g. 42.5")
                continue
            if math.isfinite(value):
                return value


class ArmMover:
    """Moves one arm through the drivers' safety layer (``ate_drivers.arm_driver.ArmDriver``): joint targets are
    streamed at the 20 Hz command rate, each step within the layer's step limit, so the procedure commands the arm
    exactly as the teleop and the policy do (limits, e-stop, watchdog apply)."""

    def __init__(self, driver, wait_tick: Callable[[], None], settle_tol_rad: float = 2e-4,
                 settle_timeout_s: float = 10.0, speed_rad_s: float = 0.5):
        self.driver = driver
        self.speed_rad_s = speed_rad_s
        self.arm = driver.arm
        self.names = arm_joint_names(driver.arm)
        self.wait_tick = wait_tick
        self.settle_tol_rad = settle_tol_rad
        self.settle_timeout_s = settle_timeout_s

    def state(self):
        st = self.driver.tick()
        if st is None:
            raise UserError(f"the {self.arm} arm is not connected ({self.driver.last_error or 'no state'})")
        return st

    def q(self) -> np.ndarray:
        return np.asarray(self.state().q_rad, dtype=float)

    def flange_pose(self) -> np.ndarray:
        """The flange pose (4x4) in the arm's base frame: the description's forward kinematics of the measured
        joints, not the controller's reported pose, which depends on the tool and work frames set on the
        controller (the calibration must describe the flange the URDF and the IK use)."""
        return fk(self.q())

    def move_to(self, q_target) -> np.ndarray:
        """Stream to ``q_target`` and wait until the arm stands still there; returns the measured joints."""
        q_target = np.asarray(q_target, dtype=float)
        q0 = self.q()
        # A smooth (cosine) profile at a calm speed, well inside the safety layer's velocity, acceleration and
        # tracking bounds: calibration moves need no hurry, and a still, unshaken arm gives the best views.
        peak = min(self.speed_rad_s, 0.5 * getattr(self.driver.safety.config, "max_velocity_rad_s", 1.0))
        duration = 0.5 * math.pi * float(np.max(np.abs(q_target - q0))) / peak
        n = max(1, int(math.ceil(duration / PERIOD_S)))
        for k in range(1, n + 1):
            target = q0 + (q_target - q0) * 0.5 * (1.0 - math.cos(math.pi * k / n))
            if not self.driver.on_command(self.names, target, stamp_s=self.driver.clock()):
                raise UserError(f"the safety layer refused a move of the {self.arm} arm "
                                f"({self.driver.safety.last_refusal}): reset the e-stop, or choose a start pose "
                                "farther from the joint limits")
            self.wait_tick()
            self.state()
        t_end = self.driver.clock() + self.settle_timeout_s
        prev, still = None, 0
        while True:
            q = self.q()
            moving = prev is None or np.max(np.abs(q - prev)) > 2e-5
            still = 0 if (moving or np.max(np.abs(q - q_target)) > self.settle_tol_rad) else still + 1
            if still >= 3:
                return q
            if self.driver.clock() > t_end:
                raise UserError(f"the {self.arm} arm did not settle at its target within {self.settle_timeout_s} s "
                                f"(off by {np.degrees(np.max(np.abs(q - q_target))):.2f} deg)")
            prev = q
            self.wait_tick()


@dataclass
class Rig:
    """Arms, cameras and grippers of one cell, and its operator."""

    operator: Operator
    arms: dict[str, ArmMover] = field(default_factory=dict)
    cameras: dict[str, object] = field(default_factory=dict)           # name -> CameraBackend (open)
    grippers: dict[str, object] = field(default_factory=dict)          # arm -> GripperBackend (connected)
    factory_intrinsics: Callable[[str], Intrinsics | None] = lambda name: None
    wait_s: Callable[[float], None] = time.sleep
    """Let time pass (the sim advances simulated time; the real cell sleeps)."""
    now_s: Callable[[], float] = time.monotonic

    def arm(self, name: str) -> ArmMover:
        if name not in self.arms:
            raise UserError(f"this rig has no {name} arm (it has {sorted(self.arms)})")
        return self.arms[name]

    def close(self) -> None:
        """Stop the arms (their drivers hold and disconnect), close the cameras and grippers; best effort."""
        for part in [*(m.driver for m in self.arms.values()), *self.cameras.values(), *self.grippers.values()]:
            for method in ("close", "disconnect"):
                fn = getattr(part, method, None)
                if fn is not None:
                    try:
                        fn()
                    except Exception:  # noqa: BLE001  (closing after an error must not hide it)
                        pass
                    break

    def capture(self, camera: str) -> np.ndarray:
        if camera not in self.cameras:
            raise UserError(f"this rig has no camera {camera!r} (it has {sorted(self.cameras)})")
        # The newest frame after the arm stood still (a frame from before the last move must not be used).
        self.wait_s(0.1)
        return self.cameras[camera].read_latest(max_age_ms=1000.0).image


def _realtime_tick(period_s: float = PERIOD_S) -> Callable[[], None]:
    state = {"next": time.monotonic()}

    def tick() -> None:
        state["next"] = max(state["next"] + period_s, time.monotonic())
        time.sleep(max(0.0, state["next"] - time.monotonic()))

    return tick


def realsense_factory_intrinsics(serial: str, capture_wh: tuple[int, int], publish_wh: tuple[int, int]) -> Intrinsics:
    """A D405's colour intrinsics from its own factory calibration (librealsense), at the published size.

    The camera node captures ``capture_wh`` (the D405 has no 960x540 mode) and resizes to ``publish_wh``; the
    intrinsics are scaled the same way. The camera must not be open in another process."""
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        raise UserError(f"pyrealsense2 is not installed ({e}); install the robot extra") from e
    pipe, cfg = rs.pipeline(), rs.config()
    cfg.enable_device(serial)
    cfg.enable_stream(rs.stream.color, capture_wh[0], capture_wh[1], rs.format.rgb8, 30)
    try:
        profile = pipe.start(cfg)
    except RuntimeError as e:
        raise UserError(f"RealSense {serial} cannot be opened for its factory intrinsics: {e}") from e
    try:
        i = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
        # librealsense's "Brown-Conrady" coefficients are OpenCV's k1 k2 p1 p2 k3.
        intr = Intrinsics(i.width, i.height, i.fx, i.fy, i.ppx, i.ppy, tuple(float(c) for c in i.coeffs[:5]))
    finally:
        pipe.stop()
    return intr.scaled(*publish_wh)


def hardware_rig(drivers_config: str | None = None, robot: str | None = None, arms=("left", "right"),
                 cameras=(), grippers=(), operator: Operator | None = None) -> Rig:
    """The cell of drivers.yaml (``robot`` real | emulated): arms through ArmDriver with the configured safety
    limits, cameras and grippers by their registered backends. Nothing else may command the arms meanwhile
    (stop the bring-up first)."""
    import ate_drivers.backends  # noqa: F401  (registers the real and emulated backends)
    from ate_drivers import registry
    from ate_drivers.arm_driver import ArmDriver
    from ate_drivers.config import load_drivers_config
    from ate_drivers.safety import EStop

    cfg = load_drivers_config(drivers_config, robot)
    names = cfg.backend_names()
    rig = Rig(operator=operator or ConsoleOperator())
    estop = EStop()
    for arm in arms:
        backend = registry.make_arm(names.arm, arm=arm, config=cfg.side(arm).realman)
        driver = ArmDriver(arm, backend, cfg.safety, estop, cfg.reconnect)
        if not driver.ensure_connected():
            raise UserError(f"the {arm} arm's controller cannot be reached ({driver.last_error}); check "
                            "drivers.yaml and the network, or try the procedure on the sim (--robot sim)")
        rig.arms[arm] = ArmMover(driver, _realtime_tick())
    for name in cameras:
        if name not in cfg.cameras:
            raise UserError(f"drivers.yaml has no camera {name!r} (it has {sorted(cfg.cameras)})")
        cam = registry.make_camera(names.camera, name=name, config=cfg.cameras[name])
        cam.open()
        rig.cameras[name] = cam

    def factory(name: str) -> Intrinsics | None:
        c = cfg.cameras[name]
        if c.kind != "realsense" or robot == "emulated" or cfg.robot == "emulated":
            return None     # the L515 is read as a UVC camera: no factory intrinsics on Python 3.12
        rig.cameras[name].close()   # librealsense opens the device exclusively
        try:
            return realsense_factory_intrinsics(c.serial_or_path, (c.capture_width, c.capture_height),
                                                (c.width, c.height))
        finally:
            rig.cameras[name].open()

    rig.factory_intrinsics = factory
    for arm in grippers:
        g = registry.make_gripper(names.gripper, arm=arm, config=cfg.side(arm).gripper)
        try:
            g.connect()
        except (ConnectionError, OSError) as e:
            raise UserError(f"the {arm} gripper cannot be reached: {e}") from e
        rig.grippers[arm] = g
    return rig
