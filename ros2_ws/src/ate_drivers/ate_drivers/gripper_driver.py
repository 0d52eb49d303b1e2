"""The gripper driver's logic, without ROS: safety check, connect with back-off, fault reporting."""

from __future__ import annotations

import logging
import math
import time

from ate_drivers.gripper.omnipicker_protocol import FAULTS, STATES
from ate_drivers.interfaces import GripperBackend, GripperState
from ate_drivers.safety import EStop, Refused, SafetyConfig, SafetyFilter

log = logging.getLogger(__name__)


class GripperDriver:
    def __init__(self, arm: str, backend: GripperBackend, safety: SafetyConfig | None = None,
                 estop: EStop | None = None, retry_s: float = 1.0, clock=time.monotonic):
        self.arm, self.backend, self.clock, self.retry_s = arm, backend, clock, retry_s
        self.estop = estop or EStop()
        self.safety = SafetyFilter(arm, safety, self.estop)
        self.connected = False
        self.state: GripperState | None = None
        self.last_error = ""
        self._next_attempt = -math.inf

    def ensure_connected(self) -> bool:
        if self.connected:
            return True
        now = self.clock()
        if now < self._next_attempt:
            return False
        try:
            self.backend.connect()
        except Exception as e:
            self.last_error = str(e)
            self._next_attempt = now + self.retry_s
            return False
        self.connected = True
        return True

    def tick(self) -> GripperState | None:
        if not self.ensure_connected():
            return None
        self.state = self.backend.read_state()
        return self.state

    def on_command(self, position: float, force: float = 1.0, speed: float = 1.0) -> bool:
        if not self.connected:
            self.safety.refuse("disconnected", "gripper not connected")
            return False
        try:
            p, f, s = self.safety.check_gripper(position, force, speed)
        except Refused:
            return False
        try:
            self.backend.command(p, f, s)
        except Exception as e:
            self.last_error = str(e)
            return False
        return True

    def diagnostics(self) -> tuple[int, str, dict[str, str]]:
        d = self.safety.diagnostics()
        d["connected"] = str(self.connected)
        d["last_error"] = self.last_error
        st = self.state
        if st is not None:
            d.update(position=f"{st.position:.3f}", state=STATES.get(st.state, str(st.state)),
                     fault=FAULTS.get(st.fault, f"unknown fault {st.fault}"), fault_code=str(st.fault))
        if not self.connected:
            return 2, f"disconnected: {self.last_error}", d
        if st is None:
            return 2, "no feedback from the gripper", d
        if st.fault:
            return 2, f"gripper fault {st.fault}: {FAULTS.get(st.fault, 'unknown')}", d
        if self.estop.latched:
            return 2, "e-stop latched", d
        return (1, f"ok; {sum(self.safety.refusals.values())} commands refused", d) if self.safety.refusals \
            else (0, "ok", d)
