"""The pose-source interface of one operator, and a scripted source for tests and the sim.

A pose source delivers the newest wrist pose of the operator's tracked hand (4x4 in avp_stream's Z-up headset
frame), the pinch distance and the head pose, with the sample's age on the source's own clock, and says
whether it can be trusted: ``ok``, ``stale`` (nothing new for longer than ``max_age_ms``: Wi-Fi or app
stopped), ``frozen`` (bit-identical wrist matrices for longer than ``frozen_after_ms``: a stuck tracker or a
replayed message; real hand tracking always has some noise), ``invalid`` (not a rigid transform: hand not
tracked). The teleop holds the arm unless the sample is ``ok``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

STATUS_OK = "ok"
STATUS_STALE = "stale"
STATUS_FROZEN = "frozen"
STATUS_INVALID = "invalid"


@dataclass
class WristSample:
    wrist: np.ndarray        # (4, 4) wrist pose of the configured hand, Z-up headset frame, metres
    pinch_m: float           # thumb tip - index tip distance
    head: np.ndarray         # (4, 4) head pose, Z-up
    received_s: float        # when the sample arrived (the source's clock, time.monotonic for real sources)
    age_s: float             # now - received_s, at the latest() call
    unchanged_s: float       # how long the wrist matrix has been bit-identical
    seq: int                 # samples received so far
    status: str              # ok | stale | frozen | invalid

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


@runtime_checkable
class PoseSource(Protocol):
    def connect(self, timeout_s: float | None = None) -> None:
        """Block until the first sample (or raise an error naming the device)."""
    def latest(self) -> WristSample | None:
        """Newest sample with its age and status; None before the first sample."""
    def close(self) -> None: ...


def is_rigid(T: np.ndarray, atol: float = 1e-3) -> bool:
    """True for a finite 4x4 whose rotation is orthonormal with det +1 (float32 wire: loose tolerance)."""
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        return False
    R = T[:3, :3]
    return bool(np.allclose(R.T @ R, np.eye(3), atol=atol) and np.linalg.det(R) > 0)


class SampleTracker:
    """Newest-sample bookkeeping shared by every source: age, frozen detection, status. Thread-safe."""

    def __init__(self, max_age_ms: float, frozen_after_ms: float,
                 clock: Callable[[], float] = time.monotonic):
        if max_age_ms <= 0 or frozen_after_ms <= 0:
            raise ValueError("max_age_ms and frozen_after_ms must be positive")
        self.max_age_s = max_age_ms / 1000.0
        self.frozen_after_s = frozen_after_ms / 1000.0
        self.clock = clock
        self._cond = threading.Condition()
        self._wrist: np.ndarray | None = None
        self._pinch = float("nan")
        self._head = np.eye(4)
        self._received = float("-inf")
        self._changed = float("-inf")
        self.seq = 0

    def put(self, wrist: np.ndarray, pinch_m: float, head: np.ndarray,
            received_s: float | None = None) -> None:
        t = self.clock() if received_s is None else received_s
        wrist = np.array(wrist, dtype=float)
        with self._cond:
            if self._wrist is None or not np.array_equal(wrist, self._wrist):
                self._changed = t
            self._wrist, self._pinch, self._head = wrist, float(pinch_m), np.array(head, float)
            self._received = t
            self.seq += 1
            self._cond.notify_all()

    def latest(self) -> WristSample | None:
        with self._cond:
            return self._build(self.clock())

    def _build(self, now: float) -> WristSample | None:
        if self._wrist is None:
            return None
        age, unchanged = now - self._received, now - self._changed
        if not is_rigid(self._wrist):
            status = STATUS_INVALID
        elif age > self.max_age_s:
            status = STATUS_STALE
        elif unchanged > self.frozen_after_s:
            status = STATUS_FROZEN
        else:
            status = STATUS_OK
        return WristSample(self._wrist.copy(), self._pinch, self._head.copy(), self._received, age, unchanged,
                           self.seq, status)

    def wait_for(self, predicate: Callable[[WristSample], bool], timeout_s: float) -> WristSample | None:
        """Wait (wall time) until the newest sample satisfies ``predicate``; it, or None on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                s = self._build(self.clock())
                if s is not None and predicate(s):
                    return s
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)


class ScriptedPoseSource:
    """A pose source at the interface: the wrist pose is a function of a clock the caller controls.

    For unit tests of the session and for driving the sim without a headset. ``set_clock`` / ``hold`` /
    ``drop`` mimic what the real stream does (time moves, the tracker freezes, the stream stops).
    """

    def __init__(self, wrist_fn: Callable[[float], np.ndarray], clock: Callable[[], float],
                 max_age_ms: float = 150.0, frozen_after_ms: float = 500.0,
                 pinch_fn: Callable[[float], float] | None = None):
        self.wrist_fn, self.clock = wrist_fn, clock
        self.pinch_fn = pinch_fn or (lambda t: 0.08)
        self.tracker = SampleTracker(max_age_ms, frozen_after_ms, clock)
        self.dropped = False
        self.frozen_pose: np.ndarray | None = None

    def connect(self, timeout_s: float | None = None) -> None:
        self.pump()

    def pump(self) -> None:
        """Deliver one sample at the current clock time (unless the stream is dropped)."""
        if self.dropped:
            return
        t = self.clock()
        wrist = self.frozen_pose if self.frozen_pose is not None else self.wrist_fn(t)
        self.tracker.put(wrist, self.pinch_fn(t), np.eye(4), t)

    def latest(self) -> WristSample | None:
        self.pump()
        return self.tracker.latest()

    def close(self) -> None:
        self.dropped = True
