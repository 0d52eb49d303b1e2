"""The achieved rate of a fixed-rate loop, reported the moment it falls below the configured rate.

A 20 Hz loop that misses ticks (a busy CPU, a slow render) records fewer frames than the time it ran: the
recorder fills each missed tick with a repeated frame so the dataset's time stays true, and this monitor tells
the operator live, before the episode is saved. Used by the recorder and by the teleop node (its control loop).
Pure Python: ticks carry their own time (monotonic or simulated), nothing sleeps.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable


def missed_between(prev_s: float, now_s: float, period_s: float) -> int:
    """Ticks of a ``period_s`` grid that fell between two calls: 0 on time, 1 when one tick was skipped, ...

    Rounded, so timer jitter of up to half a period neither invents nor hides a tick.
    """
    return max(0, int(round((now_s - prev_s) / period_s)) - 1)


class RateMonitor:
    """Sliding-window rate of a loop; a warning line while it runs below ``min_share`` of ``rate_hz``."""

    def __init__(self, rate_hz: float, window_s: float = 1.0, min_share: float = 0.95, name: str = "loop"):
        if rate_hz <= 0 or window_s <= 0 or not 0 < min_share <= 1:
            raise ValueError("rate_hz and window_s must be > 0 and min_share within (0, 1]")
        self.rate_hz, self.period_s, self.window_s, self.min_share = rate_hz, 1.0 / rate_hz, window_s, min_share
        self.name = name
        self._lock = threading.Lock()
        self._recent: collections.deque[tuple[float, int]] = collections.deque()  # (time, ticks missed before)
        self._last_s: float | None = None
        self.missed_ticks = 0
        self.warning = ""                  # non-empty while the achieved rate is too low
        self.warnings_raised = 0
        self._listeners: list[Callable[[str], None]] = []

    def add_listener(self, fn: Callable[[str], None]) -> None:
        """``fn(line)`` is called (from the ticking thread) each time the rate falls below the limit."""
        self._listeners.append(fn)

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self._last_s = None
            self.warning = ""

    def tick(self, now_s: float) -> int:
        """Register one loop iteration at ``now_s``; returns how many ticks were missed since the previous one."""
        fire = ""
        with self._lock:
            missed = 0 if self._last_s is None else missed_between(self._last_s, now_s, self.period_s)
            self._last_s = now_s
            self.missed_ticks += missed
            self._recent.append((now_s, missed))
            while self._recent and self._recent[0][0] <= now_s - self.window_s:
                self._recent.popleft()
            hz = self._achieved_locked()
            if hz < self.min_share * self.rate_hz:
                if not self.warning:
                    fire = (f"{self.name} runs at {hz:.1f} Hz, below its {self.rate_hz:g} Hz "
                            f"({self.missed_ticks} ticks missed so far; missed ticks are recorded as repeated "
                            "frames)")
                    self.warnings_raised += 1
                self.warning = fire or self.warning
            else:
                self.warning = ""
        if fire:
            for fn in list(self._listeners):
                fn(fire)
        return missed

    def _achieved_locked(self) -> float:
        done = len(self._recent)
        missed = sum(m for _, m in self._recent)
        return self.rate_hz * done / (done + missed) if done else self.rate_hz

    @property
    def achieved_hz(self) -> float:
        with self._lock:
            return self._achieved_locked()

    def status(self) -> dict:
        with self._lock:
            return {"rate_hz": self.rate_hz, "achieved_hz": round(self._achieved_locked(), 2),
                    "rate_ok": not self.warning, "rate_warning": self.warning, "missed_ticks": self.missed_ticks}
