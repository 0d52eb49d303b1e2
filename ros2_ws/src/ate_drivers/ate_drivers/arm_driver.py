"""The arm driver's logic, without ROS: safety, streaming, tracking guard, controller faults, watchdog, e-stop,
reconnect with back-off, diagnostics.

The arm node owns one :class:`ArmDriver` and calls ``on_command`` from its subscription, ``tick`` from its
state timer, ``clear_error`` from its service, and publishes what they return. Rules:

* A 20 Hz target goes to the arm at most once (never replayed) and only after :class:`SafetyFilter` passed it
  (limits, velocity cap over one period, tracking bound to the measured joints, stamps).
* **Streaming** (a backend with a ``frame_period_s``, the RealMan SDK): accepted targets feed a
  :class:`~ate_drivers.arm.streaming.JointStream`, and the driver's own thread sends one frame per controller
  period (e.g. 200 Hz) while commands keep coming (and until it rests on the last target), each checked again
  (limits, velocity cap over the frame period, tracking bound) before it is sent; once commands stop for
  ``watchdog_s`` and the stream rests, no frame is sent (the controller holds; nothing is replayed). It costs
  one 20 Hz tick of latency (the stream interpolates toward the newest target over one period). A backend
  without a frame period (the simulated cell) gets each target as it comes.
* **Tracking guard**: a target or frame farther than ``tracking_bound_rad`` from the measured joints (the
  controller stopped following: collision stop, brake) is refused and the arm holds; the next command is
  judged against the measured position, so nothing jumps when the arm moves again.
* **Controller errors** latch: the arm holds and every command is refused until ``clear_error()`` (the node's
  ``clear_error`` service) has cleared them through the SDK and the controller reports none.
* A dropped connection: the driver marks itself disconnected, retries with exponential back-off, and after a
  reconnect (which re-checks the controller and re-applies tool power) first stops the arm, then waits for a
  *fresh* command (stamped after the reconnect) judged against the measured position.
* The e-stop stops the arm through the SDK at once (the :class:`EStop` listener), then ignores commands until
  reset.

**Events for a supervisor**: ``add_event_listener(fn)`` registers ``fn(kind, detail)``, called (from the
thread that noticed it, never holding the caller up for long) for the driver's own decisions: ``refused``
(every refused command, detail ``reason: text``), ``hold`` (the driver stopped the arm by itself: tracking, a
refused frame, a controller error), ``controller_error``, ``error_cleared``, ``disconnected``, ``connected``.
``hold()`` called from outside (a supervisor holding both arms) emits nothing, so a supervisor that reacts to
``hold`` cannot loop.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ate_description.contract import PERIOD_S
from ate_description.errors import UserError
from ate_drivers.arm.streaming import JointStream
from ate_drivers.interfaces import ArmBackend, ArmState
from ate_drivers.safety import EStop, Refused, SafetyConfig, SafetyFilter

log = logging.getLogger(__name__)

FILTER_SETTLE_RAD = 5e-4
"""filter mode: the last target is re-sent until the measured joints are this close (the mode's documented need)."""


def _dispatching(method):
    """Deliver the events a public method queued, after it released the driver's lock."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        finally:
            self._dispatch()
    return wrapper


@dataclass
class ReconnectConfig:
    # First retry soon (a controller reboot takes seconds), then back off so a dead link does not flood the
    # log.
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0


class ArmDriver:
    def __init__(self, arm: str, backend: ArmBackend, safety: SafetyConfig | None = None,
                 estop: EStop | None = None, reconnect: ReconnectConfig | None = None,
                 clock=time.monotonic, stream_thread: bool = True, require_stamps: bool = False):
        self.arm = arm
        self.backend = backend
        self.clock = clock
        self.estop = estop or EStop()
        self.safety = SafetyFilter(arm, safety, self.estop)
        self.reconnect_cfg = reconnect or ReconnectConfig()
        # robot:=real: a command must carry its stamp (a zero stamp would skip the stale check).
        self.require_stamps = require_stamps
        self.state: ArmState | None = None
        self.wrench: np.ndarray | None = None
        self.connected = False
        self.reconnects = 0
        self.comm_errors = 0
        self.last_error = ""
        self.fault = ""                  # latched controller error; commands refused until clear_error()
        self.last_hold = ""
        self.holds = 0
        self.frames_sent = 0
        self.frames_refused = 0
        self.max_tracking_error_rad = 0.0
        self._backoff = self.reconnect_cfg.initial_backoff_s
        self._next_attempt = -math.inf
        self._fresh_after = -math.inf   # commands stamped before this are refused (set at reconnect)
        # Direct mode (no frame period): a checked target that came sooner than the backend takes waits here
        # for the next tick (replaced by any newer one, dropped when older than the watchdog): no burst.
        self._pending: tuple[float, np.ndarray] | None = None
        self.deferred = 0
        self._lock = threading.RLock()
        self._listeners: list[Callable[[str, str], None]] = []
        self._events: list[tuple[str, str]] = []
        self._stream: JointStream | None = None
        self._last_command_t = -math.inf
        self._use_thread = stream_thread
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.safety.add_listener(lambda reason, detail: self._emit("refused", f"{reason}: {detail}"))
        self.estop.add_listener(self._on_estop)

    # --- events --------------------------------------------------------------------------------------------
    def add_event_listener(self, fn: Callable[[str, str], None]) -> None:
        self._listeners.append(fn)

    def _emit(self, kind: str, detail: str) -> None:
        # Queued and delivered by _dispatch once the driver's lock is released: a listener that holds the
        # other arm (taking that driver's lock) can then never deadlock with it.
        self._events.append((kind, detail))

    def _dispatch(self) -> None:
        while True:
            try:
                kind, detail = self._events.pop(0)
            except IndexError:
                return
            for fn in list(self._listeners):
                try:
                    fn(kind, detail)
                except Exception as e:  # a failing listener must not break the driver
                    log.error("[%s] event listener failed: %s", self.arm, e)

    # --- streaming -----------------------------------------------------------------------------------------
    @property
    def frame_period_s(self) -> float | None:
        """The controller frame period when this backend streams (RealMan), else None (targets sent as they come)."""
        return getattr(self.backend, "frame_period_s", None)

    def _start_thread(self) -> None:
        if not self._use_thread or self.frame_period_s is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._stream_loop, name=f"arm-stream-{self.arm}", daemon=True)
        self._thread.start()

    def _stream_loop(self) -> None:
        """Send one frame per controller period on absolute deadlines (late wake-ups do not accumulate; a stall
        longer than a period resynchronises instead of sending a burst)."""
        next_t = time.monotonic()
        while not self._stop.is_set():
            period = self.frame_period_s or 0.01
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                if self._stop.wait(delay):
                    return
            elif delay < -period:
                next_t = time.monotonic()
            try:
                self.stream_step()
            except Exception as e:  # never let the stream thread die silently
                log.error("[%s] stream step failed: %s", self.arm, e)

    @_dispatching
    def stream_step(self, now: float | None = None) -> bool:
        """Compute, check and send the frame for ``now``; True when a frame went out. The stream thread calls it
        once per frame period; tests with an injected clock call it themselves (``stream_thread=False``)."""
        with self._lock:
            s = self._stream
            if s is None or not s.active or not self.connected or self.state is None or self.fault \
                    or self.estop.latched:
                return False
            t = self.clock() if now is None else now
            measured = self.state.q_rad
            live = t - self._last_command_t <= self.safety.config.watchdog_s
            if s.settled() and not live:
                if not (getattr(getattr(self.backend, "plan", None), "trajectory_mode", 0) == 2
                        and float(np.max(np.abs(measured - s.goal))) > FILTER_SETTLE_RAD
                        and t - self._last_command_t < 10 * self.safety.config.watchdog_s):
                    return False   # commands stopped and the stream rests on the last target: nothing is replayed
            prev = s.q.copy()
            q = s.next_frame(t)
            try:
                self.safety.check_frame(q, prev, s.dt, measured)
            except Refused as r:
                self.frames_refused += 1
                self._trip(r.reason, str(r))
                return False
            self.max_tracking_error_rad = max(self.max_tracking_error_rad, float(np.max(np.abs(q - measured))))
            try:
                sent = self.backend.send_joint_targets(q) is not False
            except Exception as e:
                self._lost(e)
                return False
            self.frames_sent += int(sent)
            return sent

    # --- connection ----------------------------------------------------------------------------------------
    def _lost(self, err: Exception) -> None:
        with self._lock:
            self.comm_errors += 1
            self.last_error = str(err)
            was = self.connected
            if self.connected:
                log.error("[%s] connection lost: %s", self.arm, err)
            self.connected = False
            self._pending = None
            self._stream = None
            self.safety.forget_reference()
            try:
                self.backend.disconnect()
            except Exception:
                pass
            self._next_attempt = self.clock() + self._backoff
        if was:
            self._emit("disconnected", str(err))

    @_dispatching
    def ensure_connected(self) -> bool:
        if self.connected:
            return True
        now = self.clock()
        if now < self._next_attempt:
            return False
        try:
            # connect() checks the controller (model, generation vs mode) and re-applies tool power.
            self.backend.connect()
            # Stop first: whatever the controller was doing before the link dropped must not continue.
            self.backend.stop()
            state = self.backend.read_state()
        except UserError:
            raise   # the controller cannot run this cell as configured: retrying will not fix it
        except Exception as e:
            self.last_error = str(e)
            self._next_attempt = now + self._backoff
            log.warning("[%s] connect failed (%s); next try in %.1f s", self.arm, e, self._backoff)
            self._backoff = min(self._backoff * 2, self.reconnect_cfg.max_backoff_s)
            return False
        with self._lock:
            if self.reconnects or self.comm_errors:
                log.warning("[%s] reconnected; waiting for a fresh command", self.arm)
            self.state = state
            self.reconnects += 1
            self.connected = True
            self._backoff = self.reconnect_cfg.initial_backoff_s
            self._fresh_after = self.clock()
            self._stream = None
            self.safety.forget_reference()
        self._start_thread()
        self._emit("connected", f"reconnects {self.reconnects - 1}")
        return True

    # --- loop ----------------------------------------------------------------------------------------------
    @_dispatching
    def tick(self, read_wrench: bool = False) -> ArmState | None:
        """Read the state (reconnecting if needed); returns it, or None while disconnected."""
        if not self.ensure_connected():
            return None
        try:
            self._flush_pending()
            state = self.backend.read_state()
            if read_wrench and hasattr(self.backend, "read_wrench"):
                self.wrench = self.backend.read_wrench()
                state.wrench = self.wrench
        except Exception as e:
            self._lost(e)
            return None
        with self._lock:
            self.state = state
            if state.errors and not self.fault:
                self.fault = f"controller errors {[hex(e) for e in state.errors]}"
                log.error("[%s] %s: holding; commands refused until clear_error", self.arm, self.fault)
                self._emit("controller_error", self.fault)
                self._trip("controller_error", self.fault)
        return state

    @_dispatching
    def on_command(self, names, positions, stamp_s: float | None = None) -> bool:
        """Check one 20 Hz joint command; True when accepted (streamed, sent now, or at the next tick)."""
        with self._lock:
            now = self.clock()
            if not self.connected or self.state is None:
                self.safety.refuse("disconnected", "arm not connected")
                return False
            if stamp_s is None and self.require_stamps:
                self.safety.refuse("unstamped", "command without a header stamp (robot:=real needs one)")
                return False
            if stamp_s is not None and stamp_s < self._fresh_after:
                self.safety.refuse("stale", "command older than the last reconnect")
                return False
            if self.fault:
                self.safety.refuse("controller_error", f"{self.fault}; call clear_error first")
                return False
            try:
                q = self.safety.check_arm(self.safety.order(names, positions), self.state.q_rad, now, stamp_s)
            except Refused as r:
                if r.reason == "tracking":
                    self._trip("tracking", str(r))
                return False
            self._last_command_t = now
            if self.frame_period_s is not None:
                if self._stream is None or not self._stream.active:
                    self._stream = self._new_stream()
                    self._stream.reset(self.state.q_rad, now)
                self._stream.push(q, now)
                return True
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

    @_dispatching
    def on_trajectory(self, names, times_from_start_s, points, stamp_s: float | None = None) -> bool:
        """Check and stream a whole chunk (trajectory_msgs/JointTrajectory): ``points[i]`` (named joints) at
        ``stamp_s + times_from_start_s[i]``. The stream follows the chunk's own timeline, without the tick of
        interpolation a 20 Hz target costs; a later chunk or target replaces it. Points already in the past are
        dropped. True when accepted."""
        with self._lock:
            now = self.clock()
            if not self.connected or self.state is None:
                self.safety.refuse("disconnected", "arm not connected")
                return False
            if self.frame_period_s is None:
                self.safety.refuse("no_stream", "this backend takes 20 Hz targets only")
                return False
            if stamp_s is None and self.require_stamps:
                self.safety.refuse("unstamped", "trajectory without a header stamp (robot:=real needs one)")
                return False
            t0 = now if stamp_s is None else stamp_s
            if stamp_s is not None and stamp_s < self._fresh_after:
                self.safety.refuse("stale", "trajectory older than the last reconnect")
                return False
            if self.fault:
                self.safety.refuse("controller_error", f"{self.fault}; call clear_error first")
                return False
            try:
                if stamp_s is not None and stamp_s - now > self.safety.config.future_stamp_tolerance_s:
                    raise self.safety.refuse("future_stamp", f"trajectory stamped {stamp_s - now:.3f} s ahead")
                n_joints = len(self.safety.joint_names)
                q = np.array([self.safety.order(names, p) for p in points], dtype=float).reshape(len(points),
                                                                                                  n_joints)
                t = t0 + np.asarray(times_from_start_s, dtype=float).reshape(-1)
                if t.size != q.shape[0]:
                    raise self.safety.refuse("wrong_length", f"{t.size} times for {q.shape[0]} points")
                keep = t > now
                if not np.any(keep):
                    raise self.safety.refuse("stale", "every point of the trajectory lies in the past")
                q, t = q[keep], t[keep]
                if self._stream is None or not self._stream.active:
                    self._stream = self._new_stream()
                    self._stream.reset(self.state.q_rad, now)
                self.safety.check_path(q, t, self._stream.reference(now), now, self.state.q_rad)
            except Refused as r:
                if r.reason == "tracking":
                    self._trip("tracking", str(r))
                return False
            self._stream.set_path(t, q, now)
            # The next 20 Hz target is judged against the measured joints, not a point of this chunk.
            self.safety.forget_reference()
            self._last_command_t = float(t[-1])
            return True

    def _new_stream(self) -> JointStream:
        c = self.safety.config
        return JointStream(self.frame_period_s, PERIOD_S, c.max_velocity_rad_s, c.max_acceleration_rad_s2,
                           c.max_jerk_rad_s3)

    def _flush_pending(self) -> None:
        with self._lock:
            if self._pending is None:
                return
            t, q = self._pending
            if self.estop.latched or self.fault or self.clock() - t > self.safety.config.watchdog_s:
                self._pending = None  # never send a target that has gone stale or was overtaken by a stop
                return
            if self.backend.send_joint_targets(q) is not False:
                self._pending = None

    # --- holding and faults --------------------------------------------------------------------------------
    def _on_estop(self) -> None:
        self.hold()

    def hold(self) -> None:
        """Stop the arm where it is: drop the stream and any deferred target, stop through the SDK, judge the next
        command against the measured position (the e-stop, a supervisor, a new episode of the sim cell)."""
        with self._lock:
            self._pending = None
            self._stream = None
            self.safety.forget_reference()
            if self.connected:
                try:
                    self.backend.stop()
                except Exception as e:
                    if getattr(self.backend, "is_connected", False):
                        # Answered but refused (e.g. a controller in error): not a lost link; it stopped itself.
                        log.error("[%s] stop refused: %s", self.arm, e)
                    else:
                        self._lost(e)

    def _trip(self, kind: str, detail: str) -> None:
        """The driver holds by itself (tracking, refused frame, controller error) and says so."""
        self.holds += 1
        self.last_hold = f"{kind}: {detail}"
        log.error("[%s] holding: %s", self.arm, self.last_hold)
        self.hold()
        self._emit("hold", self.last_hold)

    @_dispatching
    def clear_error(self) -> tuple[bool, str]:
        """Clear the controller's errors through the SDK (the node's ``clear_error`` service); commands flow again
        only when the controller then reports none. Returns (success, message)."""
        with self._lock:
            if not self.connected:
                return False, "arm not connected"
            try:
                if hasattr(self.backend, "clear_errors"):
                    self.backend.clear_errors()
                state = self.backend.read_state()
            except Exception as e:
                return False, f"clearing failed: {e}"
            self.state = state
            if state.errors:
                return False, f"controller still reports errors {[hex(e) for e in state.errors]}"
            was, self.fault = self.fault, ""
            self._stream = None
            self.safety.forget_reference()
        self._emit("error_cleared", was or "no error was latched")
        log.warning("[%s] controller errors cleared (%s)", self.arm, was or "none latched")
        return True, f"cleared ({was})" if was else "no controller error"

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        with self._lock:
            self._stream = None
            try:
                if self.connected:
                    self.backend.stop()
            except Exception:
                pass
            self.backend.disconnect()
            self.connected = False
        release = getattr(self.backend, "release", None)   # what the backend owns beyond the connection
        if release is not None:
            release()

    # --- diagnostics ---------------------------------------------------------------------------------------
    def diagnostics(self) -> tuple[int, str, dict[str, str]]:
        """(level 0 ok / 1 warn / 2 error, message, key values) for diagnostic_msgs/DiagnosticStatus."""
        d = self.safety.diagnostics()
        d.update({"connected": str(self.connected), "reconnects": str(max(self.reconnects - 1, 0)),
                  "comm_errors": str(self.comm_errors), "last_error": self.last_error,
                  "deferred_to_next_tick": str(self.deferred),
                  "watchdog_holding": str(self.safety.watchdog_expired(self.clock())),
                  "controller_fault": self.fault, "holds": str(self.holds), "last_hold": self.last_hold,
                  "frames_sent": str(self.frames_sent), "frames_refused": str(self.frames_refused),
                  "max_tracking_error_rad": f"{self.max_tracking_error_rad:.4f}"})
        period = self.frame_period_s
        d["frame_period_ms"] = f"{period * 1e3:g}" if period else "none (targets sent as they come)"
        d.update({f"controller_{k}": v for k, v in getattr(self.backend, "info", {}).items()})
        errors = self.state.errors if self.state is not None else []
        d["controller_errors"] = ",".join(str(e) for e in errors)
        if not self.connected:
            return 2, f"disconnected: {self.last_error}", d
        if self.estop.latched:
            return 2, "e-stop latched", d
        if self.fault:
            return 2, f"{self.fault}: holding until clear_error", d
        if self.safety.refusals:
            return 1, f"ok; {sum(self.safety.refusals.values())} commands refused ({self.safety.last_refusal})", d
        return 0, "ok", d
