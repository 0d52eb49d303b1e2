"""The arm driver's logic, without ROS: safety, watchdog, e-stop, reconnect with back-off, diagnostics.

The arm node owns one :class:`ArmDriver` and calls ``on_command`` from its subscription, ``tick`` from its state
timer, and publishes what they return. Rules:

* A command goes to the controller at most once (never replayed) and only after :class:`SafetyFilter` passed it.
  One arriving sooner than the controller's frame period is sent at the next tick instead (the newest wins).
* A dropped connection: the driver marks itself disconnected, retries with exponential back-off, and after a
  reconnect first stops the arm, then waits for a *fresh* command (stamped after the reconnect) judged against
  the measured position, so no burst of queued targets follows a reconnect.
* The e-stop stops the arm through the SDK at once (the :class:`EStop` listener), then ignores commands until reset.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from ate_drivers.interfaces import ArmBackend, ArmState
from ate_drivers.safety import EStop, Refused, SafetyConfig, SafetyFilter

log = logging.getLogger(__name__)


@dataclass
class ReconnectConfig:
    # First retry soon (a controller reboot takes seconds), then back off so a dead link does not flood the log.
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0


class ArmDriver:
    def __init__(self, arm: str, backend: ArmBackend, safety: SafetyConfig | None = None,
                 estop: EStop | None = None, reconnect: ReconnectConfig | None = None,
                 clock=time.monotonic):
        self.arm = arm
        self.backend = backend
        self.clock = clock
        self.estop = estop or EStop()
        self.safety = SafetyFilter(arm, safety, self.estop)
        self.reconnect_cfg = reconnect or ReconnectConfig()
        self.state: ArmState | None = None
        self.wrench: np.ndarray | None = None
        self.connected = False
        self.reconnects = 0
        self.comm_errors = 0
        self.last_error = ""
        self._backoff = self.reconnect_cfg.initial_backoff_s
        self._next_attempt = -math.inf
        self._fresh_after = -math.inf   # commands stamped before this are refused (set at reconnect)
        # A checked target that came sooner than the controller's minimum frame period waits here for the next
        # tick (replaced by any newer one, dropped when older than the watchdog): one frame per period, no burst.
        self._pending: tuple[float, np.ndarray] | None = None
        self.deferred = 0
        self.estop.add_listener(self._on_estop)

    # --- connection ----------------------------------------------------------------------------------------
    def _lost(self, err: Exception) -> None:
        self.comm_errors += 1
        self.last_error = str(err)
        if self.connected:
            log.error("[%s] connection lost: %s", self.arm, err)
        self.connected = False
        self._pending = None
        self.safety.forget_reference()
        try:
            self.backend.disconnect()
        except Exception:
            pass
        self._next_attempt = self.clock() + self._backoff

    def ensure_connected(self) -> bool:
        if self.connected:
            return True
        now = self.clock()
        if now < self._next_attempt:
            return False
        try:
            self.backend.connect()
            # Stop first: whatever the controller was doing before the link dropped must not continue.
            self.backend.stop()
            self.state = self.backend.read_state()
        except Exception as e:
            self.last_error = str(e)
            self._next_attempt = now + self._backoff
            log.warning("[%s] connect failed (%s); next try in %.1f s", self.arm, e, self._backoff)
            self._backoff = min(self._backoff * 2, self.reconnect_cfg.max_backoff_s)
            return False
        if self.reconnects or self.comm_errors:
            log.warning("[%s] reconnected; waiting for a fresh command", self.arm)
        self.reconnects += 1
        self.connected = True
        self._backoff = self.reconnect_cfg.initial_backoff_s
        self._fresh_after = self.clock()
        self.safety.forget_reference()
        return True

    # --- loop ----------------------------------------------------------------------------------------------
    def tick(self, read_wrench: bool = False) -> ArmState | None:
        """Read the state (reconnecting if needed); returns it, or None while disconnected."""
        if not self.ensure_connected():
            return None
        try:
            self._flush_pending()
            self.state = self.backend.read_state()
            if read_wrench and hasattr(self.backend, "read_wrench"):
                self.wrench = self.backend.read_wrench()
                self.state.wrench = self.wrench
        except Exception as e:
            self._lost(e)
            return None
        return self.state

    def on_command(self, names, positions, stamp_s: float | None = None) -> bool:
        """Check and stream one joint command; True when accepted (sent now, or at the next tick)."""
        now = self.clock()
        if not self.connected or self.state is None:
            self.safety.refuse("disconnected", "arm not connected")
            return False
        if stamp_s is not None and stamp_s < self._fresh_after:
            self.safety.refuse("stale", "command older than the last reconnect")
            return False
        try:
            q = self.safety.check_arm(self.safety.order(names, positions), self.state.q_rad, now, stamp_s)
        except Refused:
            return False
        try:
            if self.backend.send_joint_targets(q) is False:
                self._pending = (now, q)
                self.deferred += 1
            else:
                self._pending = None
            return True
        except Exception as e:
            self._lost(e)
            return False

    def _flush_pending(self) -> None:
        if self._pending is None:
            return
        t, q = self._pending
        if self.estop.latched or self.clock() - t > self.safety.config.watchdog_s:
            self._pending = None    # never send a target that has gone stale or was overtaken by an e-stop
            return
        if self.backend.send_joint_targets(q) is not False:
            self._pending = None

    def _on_estop(self) -> None:
        self.hold()

    def hold(self) -> None:
        """Stop the arm where it is: drop a deferred target, stop through the SDK, judge the next command
        against the measured position (the e-stop, and a new episode of the sim cell)."""
        self._pending = None
        self.safety.forget_reference()
        if self.connected:
            try:
                self.backend.stop()
            except Exception as e:
                self._lost(e)

    def close(self) -> None:
        try:
            if self.connected:
                self.backend.stop()
        except Exception:
            pass
        self.backend.disconnect()
        self.connected = False

    # --- diagnostics ---------------------------------------------------------------------------------------
    def diagnostics(self) -> tuple[int, str, dict[str, str]]:
        """(level 0 ok / 1 warn / 2 error, message, key values) for diagnostic_msgs/DiagnosticStatus."""
        d = self.safety.diagnostics()
        d.update({"connected": str(self.connected), "reconnects": str(max(self.reconnects - 1, 0)),
                  "comm_errors": str(self.comm_errors), "last_error": self.last_error,
                  "deferred_to_next_tick": str(self.deferred),
                  "watchdog_holding": str(self.safety.watchdog_expired(self.clock()))})
        errors = self.state.errors if self.state is not None else []
        d["controller_errors"] = ",".join(str(e) for e in errors)
        if not self.connected:
            return 2, f"disconnected: {self.last_error}", d
        if self.estop.latched:
            return 2, "e-stop latched", d
        if errors:
            return 2, f"controller errors {errors}", d
        if self.safety.refusals:
            return 1, f"ok; {sum(self.safety.refusals.values())} commands refused ({self.safety.last_refusal})", d
        return 0, "ok", d
