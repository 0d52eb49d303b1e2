"""Device interfaces every backend implements (real vendor SDK, simulated cell, or real SDK vs an emulator).

Pure Python, no rclpy: the ROS nodes hold one of these and never know which backend is behind it.
A backend may also define ``release()``: the driver calls it once, after its final ``disconnect()`` (``disconnect``
alone is also used to reconnect), to free what the backend owns beyond the connection (the emulated backends stop
their emulator there).
Units: radians, metres, seconds (monotonic clock for capture times unless a backend says otherwise),
gripper opening fraction 0 = closed .. 1 = open (ate_description.contract).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class ArmState:
    q_rad: np.ndarray                      # (7,) joint angles
    pose: np.ndarray                       # (6,) flange x, y, z (m), rx, ry, rz (rad), base frame
    stamp_s: float                         # when the state was read
    wrench: np.ndarray | None = None       # (6,) fx, fy, fz (N), tx, ty, tz (Nm)
    errors: list[int] = field(default_factory=list)  # controller error codes, empty = ok


@runtime_checkable
class ArmBackend(Protocol):
    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    @property
    def is_connected(self) -> bool: ...
    def read_state(self) -> ArmState: ...
    def send_joint_targets(self, q_rad: np.ndarray) -> bool:
        """Stream one joint target (no reply awaited); the caller has already applied the safety layer. True: sent;
        False: dropped because it came sooner than the controller accepts frames (the driver counts it and sends a
        later one), never queued."""
    def stop(self) -> None:
        """Fastest stop the controller offers."""
    def set_tool_voltage(self, volts: int) -> None: ...


@dataclass
class GripperState:
    position: float        # opening fraction, 0 closed .. 1 open
    state: int             # 0 arrived, 1 moving, 2 stalled, 3 object dropped
    fault: int             # 0 ok, 1 over-temperature, 2 over-speed, 3 init failure, 4 over-limit
    stamp_s: float


@runtime_checkable
class GripperBackend(Protocol):
    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def command(self, position: float, force: float = 1.0, speed: float = 1.0) -> None:
        """Position as opening fraction; force and speed as fractions of the gripper's maximum."""
    def read_state(self) -> GripperState | None: ...


@dataclass
class Frame:
    image: np.ndarray      # (H, W, 3) uint8 RGB
    capture_time_s: float  # when the frame was captured
    index: int = 0


@runtime_checkable
class CameraBackend(Protocol):
    def open(self) -> None: ...
    def close(self) -> None: ...
    def read_latest(self, max_age_ms: float | None = None) -> Frame:
        """Newest frame; raises TimeoutError when none is newer than max_age_ms."""
