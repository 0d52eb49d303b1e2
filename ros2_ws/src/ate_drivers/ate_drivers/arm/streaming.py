"""20 Hz joint targets -> a smooth frame stream at the controller's rate (pure math, no I/O, no clock of its own).

Two stages, evaluated once per frame:

1. **Reference**: each accepted target starts a straight segment from where the reference is at that moment to
   the new target, lasting one target period (50 ms). On a steady 20 Hz input the reference therefore passes
   through every target exactly one tick after it arrived (linear interpolation between consecutive targets);
   a late or early target never makes it jump, because a segment always starts at the reference's current
   value.
2. **Rate limiter** (libfranka's ``limitRate`` idea): the frame moves toward the reference with bounded
   velocity, acceleration and jerk per joint. The velocity asked for is also capped by what can still be
   braked within the remaining distance, so the stream settles on a target without overshooting it by more
   than jerk rounding.

Latency this adds: one target period (the interpolation) plus a few frames while the limiter rounds velocity
corners; ``benchmarks/arm_loop.py`` measures it. The driver feeds it (``ArmDriver``) and checks every frame it
emits against the safety layer before it is sent.
"""

from __future__ import annotations

import numpy as np


PATH_CORRECTION_S = 0.03
"""A chunk: how fast the stream closes a gap to the chunk's timeline (a first-order time constant)."""


class JointStream:
    def __init__(self, frame_period_s: float, target_period_s: float, max_velocity: float,
                 max_acceleration: float, max_jerk: float):
        if not (frame_period_s > 0 and target_period_s > 0 and max_velocity > 0 and max_acceleration > 0
                and max_jerk > 0):
            raise ValueError("stream periods and limits must be positive")
        self.dt = float(frame_period_s)
        self.target_period_s = float(target_period_s)
        self.v_max, self.a_max, self.j_max = float(max_velocity), float(max_acceleration), float(max_jerk)
        self.q: np.ndarray | None = None        # last frame
        self.v: np.ndarray | None = None
        self.a: np.ndarray | None = None
        self._seg: tuple[float, np.ndarray, np.ndarray] | None = None   # (t0, start, goal) of the reference
        self._path: tuple[np.ndarray, np.ndarray] | None = None         # (times, points) of a whole chunk
        self.t_last_frame = -np.inf

    @property
    def active(self) -> bool:
        return self.q is not None

    def reset(self, q_measured: np.ndarray, t: float) -> None:
        """Start from rest at the measured joints (after a hold, a reconnect, or before the first target)."""
        q = np.asarray(q_measured, dtype=float).copy()
        self.q, self.v, self.a = q, np.zeros_like(q), np.zeros_like(q)
        self._seg = (t, q.copy(), q.copy())
        self._path = None
        self.t_last_frame = t

    def clear(self) -> None:
        self.q = self.v = self.a = None
        self._seg = None
        self._path = None

    def reference(self, t: float) -> np.ndarray:
        if self._path is not None:
            times, points = self._path
            return np.array([np.interp(t, times, points[:, j]) for j in range(points.shape[1])])
        t0, start, goal = self._seg
        s = min(max((t - t0) / self.target_period_s, 0.0), 1.0)
        return start + (goal - start) * s

    def push(self, q_target: np.ndarray, t: float) -> None:
        """A new accepted target at time ``t``: the reference heads there over one target period."""
        if self.q is None:
            raise RuntimeError("JointStream.push before reset()")
        r = self.reference(t)
        self._path = None
        self._seg = (t, r, np.asarray(q_target, dtype=float).copy())

    def set_path(self, times: np.ndarray, points: np.ndarray, t: float) -> None:
        """A whole chunk: the reference runs from where it is at ``t`` through ``points`` at their absolute
        ``times`` (all after ``t``), with no tick of interpolation delay, and rests on the last point."""
        if self.q is None:
            raise RuntimeError("JointStream.set_path before reset()")
        r = self.reference(t)
        times = np.concatenate([[t], np.asarray(times, dtype=float)])
        points = np.vstack([r, np.asarray(points, dtype=float)])
        self._path = (times, points)
        self._seg = (float(times[-1]) - self.target_period_s, points[-1].copy(), points[-1].copy())

    def rest_time(self) -> float:
        """When the reference stops moving (end of the segment or of the chunk)."""
        return self._seg[0] + self.target_period_s

    @property
    def goal(self) -> np.ndarray | None:
        return None if self._seg is None else self._seg[2]

    def settled(self, tol: float = 1e-6) -> bool:
        """At rest on the last target: nothing left to stream."""
        return (self.q is not None and float(np.max(np.abs(self.q - self._seg[2]))) <= tol
                and float(np.max(np.abs(self.v))) <= tol and float(np.max(np.abs(self.a))) <= tol * 1e3)

    def next_frame(self, t: float) -> np.ndarray:
        """The frame for time ``t`` (one frame period after the previous one)."""
        dt = self.dt
        r = self.reference(t)
        e = r - self.q
        # Velocity that reaches the reference at this frame, but toward the last target no faster than what
        # can still be braked to rest before it (braking distance with the jerk ramp: d = v^2 / (2 A) + v A /
        # (2 J), solved for v), so the stream stops on the last target instead of overshooting it.
        # A chunk is a known future: its turns are the caller's plan, so braking is only toward its last point,
        # in its last segment.
        brake = self._path is None or t >= self._path[0][-2]
        e_goal = self._seg[2] - self.q
        c = self.a_max ** 2 / (2.0 * self.j_max)
        v_brake = np.sqrt(c * c + 2.0 * self.a_max * np.abs(e_goal)) - c if brake else np.full_like(e, np.inf)
        if self._path is None:
            v_des = e / dt
        else:   # a chunk: its own velocity plus a damped correction (deadbeat would ring under the bounds)
            v_des = (r - self.reference(t - dt)) / dt + e / PATH_CORRECTION_S
        v_des = np.where(e_goal >= 0, np.minimum(v_des, v_brake), np.maximum(v_des, -v_brake))
        v_des = np.clip(v_des, -self.v_max, self.v_max)
        a_des = (v_des - self.v) / dt
        a_des = np.clip(a_des, self.a - self.j_max * dt, self.a + self.j_max * dt)
        a_des = np.clip(a_des, -self.a_max, self.a_max)
        v_new = np.clip(self.v + a_des * dt, -self.v_max, self.v_max)
        # Brake as hard as the bounds allow where this frame's state could no longer stop before the last
        # target.
        sgn = np.where(e_goal >= 0, 1.0, -1.0)
        late = self._stopping_distance(sgn * v_new, sgn * a_des) > np.abs(e_goal - v_new * dt) + 1e-12
        late &= sgn * self.v > 0           # from rest, always take the first step (else a short move could stall)
        late &= brake
        a_brake = sgn * np.maximum(sgn * self.a - self.j_max * dt, -self.a_max)
        a_des = np.where(late, a_brake, a_des)
        v_brk = np.clip(self.v + a_brake * dt, -self.v_max, self.v_max)
        v_brk = np.where(sgn * self.v >= 0, sgn * np.maximum(sgn * v_brk, 0.0), v_brk)   # brake, never reverse
        v_new = np.where(late, v_brk, v_new)
        a_des = np.where(late, (v_new - self.v) / dt, a_des)
        q_new = self.q + v_new * dt
        # Settle exactly on a reference that stands still once within one frame of full acceleration: stops
        # the limiter from dithering around the target (the only place the bounds are exceeded, by one
        # sub-millirad frame at the end of a motion). The reference rests once it stood for more than a frame
        # past its segment (a steady 20 Hz input starts the next segment right at the end of this one); the
        # snapping frame keeps within the acceleration bound.
        resting = t > self.rest_time() + 1.5 * dt
        v_snap = (r - self.q) / dt
        done = resting & (np.abs(v_snap) <= self.a_max * dt) & (np.abs(v_snap - self.v) <= self.a_max * dt)
        q_new = np.where(done, r, q_new)
        v_new = np.where(done, v_snap, v_new)
        a_new = (v_new - self.v) / dt
        self.q, self.v, self.a = q_new, v_new, a_new
        self.t_last_frame = t
        return q_new.copy()

    def _stopping_distance(self, v: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Distance covered toward the goal (v, a > 0 toward it) before rest: first ramp a down to 0 at the jerk
        bound, then brake with the jerk ramp to -A (d = v^2 / (2 A) + v A / (2 J))."""
        J, A = self.j_max, self.a_max
        ap = np.maximum(a, 0.0)
        t1 = ap / J
        d1 = v * t1 + ap * t1 ** 2 / 2 - J * t1 ** 3 / 6
        v1 = np.maximum(v + ap ** 2 / (2 * J), 0.0)
        # From (v1, a = 0): a triangle of deceleration (peak sqrt(v1 J)) when -A is never reached, else a
        # trapezoid.
        d_tri = v1 * np.sqrt(v1 / J)
        d_trap = v1 ** 2 / (2 * A) + v1 * A / (2 * J)
        return np.maximum(d1, 0.0) + np.where(v1 <= A * A / J, d_tri, d_trap)
