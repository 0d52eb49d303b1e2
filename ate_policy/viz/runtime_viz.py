"""What the policy runtime did each tick, as ``CellLogger`` entries: one place, used by the policy node and
``ate_policy eval``.

Per tick (``on_tick(result, obs, ...)``): the measured state, the target sent (none on a held tick), the wrench,
the camera frames the runtime was given, the plan depth; on a chunk's arrival the plan from this tick on
(``policy/chunk`` and ``cell/plan/<arm>``) and a ``chunk`` event (the observation's tick, how many of its actions
time had overtaken, how many targets are planned); a ``hold`` event when the runtime starts holding or changes
its reason (``resumed`` when targets flow again); a ``refusal`` event for every chunk the runtime refused as
non-finite and for every command the drivers' safety layer refused (``refusals``: the caller's running counts
by reason, as ``SimRunner.refusals()`` gives them).
"""

from __future__ import annotations

import numpy as np

from ate_policy.viz.cell_logger import CellLogger


def planned_from(runtime, tick: int, first: np.ndarray | None) -> np.ndarray | None:
    """The runtime's plan from ``tick`` on: the target it returned for ``tick`` (``first``) followed by the
    targets planned for the ticks after it."""
    with runtime._lock:   # the plan as the tick left it (the runtime takes this lock around every tick)
        ahead = runtime._plan.window(tick + 1, 10 ** 6)
    rows = [np.asarray(first, dtype=float)[None]] if first is not None else []
    if ahead is not None and len(ahead):
        rows.append(ahead)
    return np.concatenate(rows) if rows else None


class RuntimeViz:
    def __init__(self, logger: CellLogger, runtime):
        self.logger = logger
        self.runtime = runtime
        self._reason: str | None = None
        self._counts: dict[str, int] = {}

    def reset(self) -> None:
        """A new episode: hold reasons and counters start over."""
        self._reason = None
        self._counts = {}

    def on_tick(self, res, obs=None, wrench=None, refusals: dict[str, int] | None = None) -> None:
        if res.repeated or res.tick < 0:
            return
        lg, k, t = self.logger, res.tick, res.now_s
        lg.log_tick(k, t, state=None if obs is None else obs.state, target=res.action, wrench=wrench,
                    images=None if obs is None else obs.images, queue_depth=res.queue_depth)
        c = self.runtime.counters
        overtaken = self._delta("overtaken", c["overtaken_actions"])
        if res.new_chunk:
            plan = planned_from(self.runtime, k, res.action)
            if plan is not None:
                lg.log_chunk(k, t, plan, res.chunk_tick)
            lg.log_event(k, t, "chunk", f"chunk of tick {res.chunk_tick} merged at tick {k}: {overtaken} actions "
                                        f"overtaken, {res.queue_depth} targets ahead")
        reason = None if res.action is not None else res.reason
        if reason != self._reason:
            if reason is not None:
                lg.log_event(k, t, "hold", f"hold: {reason}" + (f" ({res.detail})" if res.detail else ""))
            elif self._reason is not None:
                lg.log_event(k, t, "hold", f"resumed after {self._reason}", level="INFO")
            self._reason = reason
        n = self._delta("nonfinite", c["chunks_refused_nonfinite"])
        if n:
            lg.log_event(k, t, "refusal", f"runtime refused {n} chunk(s) holding NaN/inf")
        for why, count in (refusals or {}).items():
            n = self._delta(f"safety:{why}", count)
            if n:
                lg.log_event(k, t, "refusal", f"safety layer refused {n} command(s): {why}")

    def _delta(self, key: str, count: int) -> int:
        prev = self._counts.get(key, 0)
        self._counts[key] = count
        return max(0, count - prev)
