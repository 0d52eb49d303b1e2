"""Sim backends of ``ate_drivers.interfaces``: arm, gripper and camera on one shared ``SimCell``.

Registered under the name ``sim`` (``ate_drivers.registry.make_arm("sim", arm="left")``), so a driver node
switches from the real cell to the twin by configuration only. All stamps are SIMULATED time
(``SimCell.sim_time``): in lockstep mode the caller advances it (tests, data generation); in real-time mode a
thread does (people watching).

Backends built by the registry without an explicit ``cell`` share one process-wide cell (``shared_cell()``),
so the arm, gripper and camera backends of one process see the same world. Separate processes (one ROS node
per device) each get their own cell: run the sim driver nodes in one process to see one world.
"""

from __future__ import annotations

import threading

import numpy as np

from ate_drivers import registry
from ate_drivers.interfaces import ArmState, Frame, GripperState
from ate_description import contract
from ate_sim.cell import SimCell
from ate_description.kinematics import pose6_from_matrix

_SHARED: SimCell | None = None
_SHARED_LOCK = threading.Lock()


def shared_cell(task: str | None = None, clock: str = "realtime", seed: int | None = 0) -> SimCell:
    """The process-wide cell (created on first use; later calls return it whatever they ask for)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = SimCell(task=task, clock=clock, seed=seed)
            if clock == "realtime":
                _SHARED.start_realtime()
        return _SHARED


def reset_shared_cell() -> None:
    """Forget the process-wide cell (tests)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is not None:
            _SHARED.close()
        _SHARED = None


def _check_arm(arm: str) -> str:
    if arm not in contract.ARMS:
        raise ValueError(f"unknown arm {arm!r}; expected one of {contract.ARMS}")
    return arm


class SimArm:
    """An RM75-6s of the sim cell: stream joint targets, read joints / flange pose / wrench."""

    def __init__(self, cell: SimCell, arm: str = "left"):
        self.cell, self.arm = cell, _check_arm(arm)
        self._connected = False
        self.tool_voltage = 0

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    def _require(self):
        if not self._connected:
            raise RuntimeError(f"sim arm {self.arm!r} is not connected (call connect() first)")

    def read_state(self) -> ArmState:
        self._require()
        with self.cell.lock:
            q = self.cell.joint_positions(self.arm)
            pose = pose6_from_matrix(self.cell.flange_pose(self.arm))
            return ArmState(q_rad=q, pose=pose, stamp_s=self.cell.sim_time, wrench=self.cell.wrench(self.arm))

    def send_joint_targets(self, q_rad: np.ndarray) -> bool:
        self._require()
        self.cell.set_joint_targets(self.arm, q_rad)
        return True   # the sim takes a target at any rate

    def stop(self) -> None:
        self._require()
        self.cell.hold(self.arm)

    def set_tool_voltage(self, volts: int) -> None:
        self._require()
        self.tool_voltage = int(volts)


class SimGripper:
    """The OmniPicker on one sim arm: opening fraction command, state as the gripper reports it."""

    def __init__(self, cell: SimCell, arm: str = "left"):
        self.cell, self.arm = cell, _check_arm(arm)
        self._connected = False

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    def command(self, position: float, force: float = 1.0, speed: float = 1.0) -> None:
        if not self._connected:
            raise RuntimeError(f"sim gripper {self.arm!r} is not connected (call connect() first)")
        for name, v in (("position", position), ("force", force), ("speed", speed)):
            if not np.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError(f"gripper {name} must be a fraction in [0, 1], got {v}")
        self.cell.set_gripper(self.arm, position, force, speed)

    def read_state(self) -> GripperState | None:
        if not self._connected:
            return None
        with self.cell.lock:
            return GripperState(position=self.cell.gripper_opening(self.arm), state=self.cell.gripper_state(self.arm),
                                fault=0, stamp_s=self.cell.sim_time)


class SimCamera:
    """One of the three cameras, rendered offscreen at the current simulated time."""

    def __init__(self, cell: SimCell, name: str = "cam_high", image_hw: tuple[int, int] = (224, 224)):
        if name not in contract.CAMERA_NAMES:
            raise ValueError(f"unknown camera {name!r}; expected one of {contract.CAMERA_NAMES}")
        self.cell, self.name, self.image_hw = cell, name, (int(image_hw[0]), int(image_hw[1]))
        self._open = False
        self._last: Frame | None = None
        self._index = 0

    def open(self) -> None:
        self.cell.render(self.name, self.image_hw)  # fail here, clearly, if this machine cannot render
        self._open = True

    def close(self) -> None:
        self._open = False

    def forget_frame(self) -> None:
        """Render anew at the next read (the scene was reset: the same simulated time shows another world)."""
        self._last = None

    def read_latest(self, max_age_ms: float | None = None) -> Frame:
        if not self._open:
            raise RuntimeError(f"sim camera {self.name!r} is not open (call open() first)")
        with self.cell.lock:
            now = self.cell.sim_time
            # In lockstep nothing changes until the next step: the same frame, not a re-render.
            if self._last is None or self._last.capture_time_s != now:
                self._last = Frame(self.cell.render(self.name, self.image_hw), now, self._index)
                self._index += 1
            frame = self._last
        if max_age_ms is not None and (now - frame.capture_time_s) * 1000.0 > max_age_ms:
            raise TimeoutError(f"sim camera {self.name!r}: no frame newer than {max_age_ms} ms")
        return frame


# --- registry factories: hardware settings of the real backends (ip, port, serial, ...) mean nothing here -------

@registry.register_arm("sim")
def make_sim_arm(arm: str = "left", cell: SimCell | None = None, task: str | None = None,
                 clock: str = "realtime", **_hardware_settings) -> SimArm:
    return SimArm(cell or shared_cell(task, clock), arm)


@registry.register_gripper("sim")
def make_sim_gripper(arm: str = "left", cell: SimCell | None = None, task: str | None = None,
                     clock: str = "realtime", **_hardware_settings) -> SimGripper:
    return SimGripper(cell or shared_cell(task, clock), arm)


@registry.register_camera("sim")
def make_sim_camera(name: str = "cam_high", image_hw: tuple[int, int] | None = None, width: int | None = None,
                    height: int | None = None, cell: SimCell | None = None, task: str | None = None,
                    clock: str = "realtime", **_hardware_settings) -> SimCamera:
    hw = tuple(image_hw) if image_hw is not None else (height or 224, width or 224)
    return SimCamera(cell or shared_cell(task, clock), name, hw)
