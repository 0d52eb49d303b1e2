"""The gripper driver's logic, without ROS: safety check, hold, connect and reconnect with back-off, faults.

* **Hold** (the e-stop, and a cell hold of the supervisor): the gripper is commanded to its *measured* opening
  and further commands are refused. The OmniPicker has position commands only: there is no "stop", and opening it
  would drop what it holds (the bun in a handover), so holding where it is is the only safe stop.
* **Connection**: a CAN error on a command or in the feedback (adapter unplugged, bus-off) marks the gripper
  disconnected (``connected`` False, reported in diagnostics), the bus is closed and reopened after ``retry_s``;
  feedback that stays away longer than the backend's ``max_feedback_age_s`` is reported as "no feedback".
* The state carries the feedback's capture time (``GripperState.stamp_s``, monotonic), never the publish time.
* **Stroke mapping** (``mapping``, the calibration's ``GripperCalibration`` from ``python -m calibration gripper``):
  commands and states stay the data contract's opening fraction (linear in mm, 1 = 120 mm); only here are they
  mapped to and from the gripper's own command/feedback fractions. None: the gripper's fractions are used as they are.
"""

from __future__ import annotations

import logging
import math
import time

from dataclasses import replace

from ate_drivers.gripper.omnipicker_protocol import FAULTS, STATES
from ate_drivers.interfaces import GripperBackend, GripperState
from ate_drivers.safety import EStop, Refused, SafetyConfig, SafetyFilter

log = logging.getLogger(__name__)


class GripperDriver:
    def __init__(self, arm: str, backend: GripperBackend, safety: SafetyConfig | None = None,
                 estop: EStop | None = None, retry_s: float = 1.0, clock=time.monotonic, mapping=None):
        self.arm, self.backend, self.clock, self.retry_s = arm, backend, clock, retry_s
        self.mapping = mapping if mapping is not None and mapping.calibrated() else None
        self.estop = estop or EStop()
        self.safety = SafetyFilter(arm, safety, self.estop)
        self.connected = False
        self.state: GripperState | None = None
        self.last_error = ""
        self.comm_errors = 0
        self.reconnects = 0
        self.holds_sent = 0          # hold commands (measured opening) that went out
        self._next_attempt = -math.inf
        self.estop.add_listener(self.hold)

    # --- connection ----------------------------------------------------------------------------------------
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
        if self.comm_errors:
            self.reconnects += 1
            log.warning("[%s gripper] reconnected", self.arm)
        self.connected = True
        return True

    def _lost(self, err: Exception) -> None:
        self.comm_errors += 1
        self.last_error = str(err)
        if self.connected:
            log.error("[%s gripper] connection lost: %s", self.arm, err)
        self.connected = False
        self.state = None
        try:
            self.backend.disconnect()
        except Exception:  # noqa: BLE001  (closing a broken bus may fail too)
            pass
        self._next_attempt = self.clock() + self.retry_s

    # --- loop ----------------------------------------------------------------------------------------------
    def tick(self) -> GripperState | None:
        if not self.ensure_connected():
            return None
        try:
            st = self.backend.read_state()
        except Exception as e:
            self._lost(e)
            return None
        if st is not None and self.mapping is not None:
            st = replace(st, position=self.mapping.opening_from_feedback(st.position))
        self.state = st
        return self.state

    def _gripper_fraction(self, opening: float) -> float:
        return opening if self.mapping is None else self.mapping.command_for(opening)

    def on_command(self, position: float, force: float = 1.0, speed: float = 1.0) -> bool:
        if not self.connected:
            self.safety.refuse("disconnected", "gripper not connected")
            return False
        try:
            p, f, s = self.safety.check_gripper(position, force, speed)
        except Refused:
            return False
        try:
            self.backend.command(self._gripper_fraction(p), f, s)
        except Exception as e:
            self._lost(e)
            return False
        return True

    def hold(self) -> bool:
        """Keep the jaw where it is: command the measured opening (True when that command went out)."""
        st = self.state
        if not self.connected or st is None:
            return False
        try:
            self.backend.command(self._gripper_fraction(min(max(st.position, 0.0), 1.0)), 1.0, 1.0)
        except Exception as e:
            self._lost(e)
            return False
        self.holds_sent += 1
        return True

    def close(self) -> None:
        self.hold()
        try:
            self.backend.disconnect()
        finally:
            self.connected = False
            release = getattr(self.backend, "release", None)   # what the backend owns beyond the connection
            if release is not None:
                release()

    def diagnostics(self) -> tuple[int, str, dict[str, str]]:
        d = self.safety.diagnostics()
        d.update(connected=str(self.connected), last_error=self.last_error, comm_errors=str(self.comm_errors),
                 reconnects=str(self.reconnects), holds_sent=str(self.holds_sent))
        st = self.state
        if st is not None:
            d.update(position=f"{st.position:.3f}", state=STATES.get(st.state, str(st.state)),
                     fault=FAULTS.get(st.fault, f"unknown fault {st.fault}"), fault_code=str(st.fault),
                     feedback_age_s=f"{max(0.0, self.clock() - st.stamp_s):.3f}")
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
