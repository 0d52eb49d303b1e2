"""The safety layer: THE one place where arm and gripper commands are checked before they reach hardware.

Every driver node that commands an arm or a gripper holds a :class:`SafetyFilter` (and shares one
:class:`EStop` per process). It refuses, never repairs, a command that is:

* malformed: wrong length, unknown or duplicated joint names, NaN/inf;
* outside the joint limits shrunk by a margin (limits from ``ate_description.contract``);
* too far from the reference in one tick (velocity cap ``max_velocity_rad_s`` over one 20 Hz period); the
  reference is the last target sent while commands keep coming, otherwise the measured position, so a command
  after a pause is judged against where the arm is;
* too far from the measured joints (tracking guard, ``tracking_bound_rad``): the controller is not following;
* stale: stamped longer ago than the watchdog timeout (a late message is never replayed), or stamped in the
  future beyond ``future_stamp_tolerance_s``;
* sent while the e-stop is latched.

Every frame the arm driver streams to the controller is checked again by :meth:`SafetyFilter.check_frame`
(limits, velocity cap over the frame's period, tracking bound).

Watchdog: when no fresh command arrived for ``watchdog_s`` the driver holds (sends nothing, the controller
keeps the last position); the old target is never re-sent. Every refusal is counted by reason and kept for
diagnostics. Pure Python, no rclpy.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ate_description.contract import JOINT_LIMITS_RAD, N_ARM_JOINTS, arm_joint_names
from ate_description.limits import SafetyConfig  # noqa: F401  (the limits live with the robot description)
from ate_drivers.supervisor import ThrottledLog

log = logging.getLogger(__name__)


class Refused(ValueError):
    """A command the safety layer will not pass on; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class EStop:
    """Latched emergency stop shared by every driver in a process; listeners (each arm's SDK stop) run at once."""

    def __init__(self):
        self._latched = False
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self.trigger_count = 0

    @property
    def latched(self) -> bool:
        return self._latched

    def add_listener(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def trigger(self, reason: str = "") -> None:
        with self._lock:
            self._latched = True
            self.trigger_count += 1
        log.error("E-STOP triggered%s", f": {reason}" if reason else "")
        for fn in list(self._listeners):
            try:
                fn()
            except Exception as e:  # one arm failing to stop must not keep the other from stopping
                log.error("e-stop listener failed: %s", e)

    def reset(self) -> None:
        with self._lock:
            self._latched = False
        log.warning("e-stop reset")


class SafetyFilter:
    """Checks one arm's joint commands (and its gripper's) against the rules above."""

    def __init__(self, arm: str, config: SafetyConfig | None = None, estop: EStop | None = None):
        self.arm = arm
        self.config = config or SafetyConfig()
        self.estop = estop or EStop()
        self.joint_names = arm_joint_names(arm)
        lim = np.asarray(JOINT_LIMITS_RAD) - self.config.joint_margin_rad
        self.q_min, self.q_max = -lim, lim
        self.refusals: Counter[str] = Counter()
        self.last_refusal: str = ""
        self.first_refusal: str = ""
        # One log line per reason and 5 s (with the count it stands for): a misbehaving policy must not flood the
        # log; every refusal is still counted in diagnostics (refused_<reason>, first and last).
        self._log = ThrottledLog(log)
        self.accepted = 0
        self._listeners: list[Callable[[str, str], None]] = []
        self._last_target: np.ndarray | None = None
        self._last_accept_t = -math.inf

    # --- bookkeeping ---------------------------------------------------------------------------------------
    def refuse(self, reason: str, detail: str) -> Refused:
        self.refusals[reason] += 1
        self.last_refusal = f"{reason}: {detail}"
        self.first_refusal = self.first_refusal or self.last_refusal
        self._log(reason, f"[{self.arm}] command refused: {self.last_refusal}")
        self._notify(reason, detail)
        return Refused(reason, detail)

    def add_listener(self, fn: Callable[[str, str], None]) -> None:
        """``fn(reason, detail)`` for every refusal (the arm driver's event hook)."""
        self._listeners.append(fn)

    def _notify(self, reason: str, detail: str) -> None:
        for fn in list(self._listeners):
            fn(reason, detail)

    def watchdog_expired(self, now_s: float) -> bool:
        return now_s - self._last_accept_t > self.config.watchdog_s

    def forget_reference(self) -> None:
        """After a reconnect or an e-stop: the next command is judged against the measured position only."""
        self._last_target = None
        self._last_accept_t = -math.inf

    # --- arm -----------------------------------------------------------------------------------------------
    def order(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """Positions in this arm's joint order; names may come in any order (``left_joint1`` .. ``left_joint7``)."""
        pos = np.asarray(list(positions), dtype=float).reshape(-1)
        if not names:
            if pos.shape != (N_ARM_JOINTS,):
                raise self.refuse("wrong_length", f"{pos.size} positions without names, expected {N_ARM_JOINTS}")
            return pos
        if len(names) != len(pos):
            raise self.refuse("wrong_length", f"{len(names)} names but {len(pos)} positions")
        unknown = [n for n in names if n not in self.joint_names]
        if unknown:
            raise self.refuse("unknown_joint", f"{unknown} (expected {self.joint_names})")
        if len(set(names)) != len(names) or len(names) != N_ARM_JOINTS:
            raise self.refuse("wrong_length", f"need each of {self.joint_names} exactly once, got {list(names)}")
        index = {n: i for i, n in enumerate(names)}
        return pos[[index[n] for n in self.joint_names]]

    def check_arm(self, q_rad, q_measured: np.ndarray | None, now_s: float,
                  stamp_s: float | None = None) -> np.ndarray:
        """The target to send, or :class:`Refused`. ``q_rad`` is already in joint order (see :meth:`order`)."""
        if self.estop.latched:
            raise self.refuse("estop", "e-stop latched; reset it first")
        q = np.asarray(q_rad, dtype=float).reshape(-1)
        if q.shape != (N_ARM_JOINTS,):
            raise self.refuse("wrong_length", f"{q.size} positions, expected {N_ARM_JOINTS}")
        if not np.all(np.isfinite(q)):
            raise self.refuse("not_finite", f"{q.tolist()}")
        if stamp_s is not None and now_s - stamp_s > self.config.watchdog_s:
            raise self.refuse("stale", f"command is {now_s - stamp_s:.3f} s old (> {self.config.watchdog_s} s)")
        if stamp_s is not None and stamp_s - now_s > self.config.future_stamp_tolerance_s:
            raise self.refuse("future_stamp", f"command stamped {stamp_s - now_s:.3f} s in the future "
                                              f"(> {self.config.future_stamp_tolerance_s} s): clocks disagree")
        bad = np.flatnonzero((q < self.q_min) | (q > self.q_max))
        if bad.size:
            j = int(bad[0])
            raise self.refuse("joint_limit", f"{self.joint_names[j]} = {q[j]:.4f} rad outside "
                                              f"[{self.q_min[j]:.4f}, {self.q_max[j]:.4f}] (margin included)")
        ref = self._last_target if (self._last_target is not None and not self.watchdog_expired(now_s)) \
            else q_measured
        if ref is None:
            raise self.refuse("no_state", "no measured joint position yet to judge the step against")
        step = np.abs(q - ref)
        if np.max(step) > self.config.max_step_rad:
            j = int(np.argmax(step))
            raise self.refuse("too_fast", f"{self.joint_names[j]} would move {step[j]:.4f} rad in one command "
                                           f"(max {self.config.max_step_rad:.4f})")
        self._check_tracking(q, q_measured, "target")
        self._last_target = q.copy()
        self._last_accept_t = now_s
        self.accepted += 1
        return q

    def _check_tracking(self, q: np.ndarray, q_measured: np.ndarray | None, what: str) -> None:
        if q_measured is None:
            return
        err = np.abs(q - np.asarray(q_measured, dtype=float))
        if np.max(err) > self.config.tracking_bound_rad:
            j = int(np.argmax(err))
            raise self.refuse("tracking", f"{what} {self.joint_names[j]} is {err[j]:.4f} rad from the measured "
                                           f"joint (bound {self.config.tracking_bound_rad:.4f}): the controller "
                                           "is not following")

    def check_path(self, points, times_s, q_from: np.ndarray, t_from: float,
                   q_measured: np.ndarray | None) -> np.ndarray:
        """A whole chunk (points in joint order at absolute ``times_s``, after ``t_from``), or :class:`Refused`:
        every point finite and inside the limits, every step within the velocity cap over its time (the first one
        from ``q_from``, where the stream's reference is at ``t_from``), the first point within the tracking bound.
        """
        if self.estop.latched:
            raise self.refuse("estop", "e-stop latched; reset it first")
        q = np.asarray(points, dtype=float)
        t = np.asarray(times_s, dtype=float).reshape(-1)
        if q.ndim != 2 or q.shape[1] != N_ARM_JOINTS or q.shape[0] != t.size or t.size == 0:
            raise self.refuse("wrong_length", f"trajectory of shape {q.shape} with {t.size} times")
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))):
            raise self.refuse("not_finite", "trajectory with NaN/inf")
        dts = np.diff(np.concatenate([[t_from], t]))
        if np.any(dts <= 0):
            raise self.refuse("trajectory_time", "trajectory times must increase and lie in the future")
        bad = np.argwhere((q < self.q_min) | (q > self.q_max))
        if bad.size:
            k, j = (int(v) for v in bad[0])
            raise self.refuse("joint_limit", f"point {k}: {self.joint_names[j]} = {q[k, j]:.4f} rad outside "
                                              f"[{self.q_min[j]:.4f}, {self.q_max[j]:.4f}] (margin included)")
        steps = np.abs(np.diff(np.vstack([np.asarray(q_from, dtype=float), q]), axis=0))
        speed = steps / dts[:, None]
        if np.max(speed) > self.config.max_velocity_rad_s:
            k, j = np.unravel_index(int(np.argmax(speed)), speed.shape)
            raise self.refuse("too_fast", f"point {k}: {self.joint_names[j]} would move at {speed[k, j]:.3f} "
                                           f"rad/s (max {self.config.max_velocity_rad_s:.3f})")
        self._check_tracking(q[0], q_measured, "trajectory start")
        self.accepted += 1
        return q

    def check_frame(self, q_rad, q_prev: np.ndarray, period_s: float, q_measured: np.ndarray | None) -> np.ndarray:
        """One frame of the driver's stream to the controller, or :class:`Refused`: finite, inside the limits,
        within the velocity cap over ``period_s`` from the previous frame, within the tracking bound."""
        if self.estop.latched:
            raise self.refuse("estop", "e-stop latched; reset it first")
        q = np.asarray(q_rad, dtype=float).reshape(-1)
        if q.shape != (N_ARM_JOINTS,) or not np.all(np.isfinite(q)):
            raise self.refuse("frame_invalid", f"{q.tolist()}")
        bad = np.flatnonzero((q < self.q_min) | (q > self.q_max))
        if bad.size:
            j = int(bad[0])
            raise self.refuse("frame_joint_limit", f"{self.joint_names[j]} = {q[j]:.4f} rad outside "
                                                    f"[{self.q_min[j]:.4f}, {self.q_max[j]:.4f}]")
        step = np.abs(q - np.asarray(q_prev, dtype=float))
        cap = self.config.max_velocity_rad_s * period_s * (1 + 1e-9) + 1e-12
        if np.max(step) > cap:
            j = int(np.argmax(step))
            raise self.refuse("frame_too_fast", f"{self.joint_names[j]} would move {step[j]:.5f} rad in one "
                                                 f"{period_s * 1e3:g} ms frame (max {cap:.5f})")
        self._check_tracking(q, q_measured, "frame")
        return q

    # --- gripper -------------------------------------------------------------------------------------------
    def check_gripper(self, position: float, force: float = 1.0, speed: float = 1.0) -> tuple[float, float, float]:
        if self.estop.latched:
            raise self.refuse("estop", "e-stop latched; reset it first")
        vals = (float(position), float(force), float(speed))
        if not all(math.isfinite(v) for v in vals):
            raise self.refuse("not_finite", f"gripper command {vals}")
        if not self.config.gripper_min <= vals[0] <= self.config.gripper_max:
            raise self.refuse("gripper_range", f"opening {vals[0]} outside "
                                                f"[{self.config.gripper_min}, {self.config.gripper_max}]")
        if not (0.0 <= vals[1] <= 1.0 and 0.0 <= vals[2] <= 1.0):
            raise self.refuse("gripper_range", f"force/speed fractions {vals[1:]} outside [0, 1]")
        self.accepted += 1
        return vals

    def diagnostics(self) -> dict[str, str]:
        d = {"accepted": str(self.accepted), "estop": str(self.estop.latched),
             "refused_total": str(sum(self.refusals.values())), "first_refusal": self.first_refusal,
             "last_refusal": self.last_refusal}
        d.update({f"refused_{k}": str(v) for k, v in sorted(self.refusals.items())})
        return d
