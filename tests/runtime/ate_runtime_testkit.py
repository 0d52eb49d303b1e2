"""Helpers of the runtime tests: a scripted policy with known outputs and injected latencies, observations."""

from __future__ import annotations

import threading
import time

import numpy as np
from ate_description import contract
from ate_policy.runtime import Observation

PERIOD = contract.PERIOD_S


def obs_at(t_s: float, hw=(6, 8), stale: dict | None = None) -> Observation:
    """An observation whose every stream was captured at ``t_s`` (``stale``: stream -> age to use instead)."""
    o = Observation.dummy(hw, stamp_s=t_s)
    for s, age in (stale or {}).items():
        o.stamps_s[s] = t_s - age
    return o


class ScriptedPolicy:
    """select_chunk with known outputs: the chunk from the observation of tick k0 holds ``value(k0, i)`` in
    all 16 dims at index i (default k0 + i: the target *for tick k0 + i*), after ``latency_s`` of wall time.

    The observation's tick is read from its state stamp (the tests stamp observations with the tick time)."""

    def __init__(self, chunk_len: int = 8, latency_s: float = 0.0, value=None, nan_ticks=(), fail_ticks=(),
                 supports_rtc: bool = False):
        self.chunk_len, self.latency_s = chunk_len, latency_s
        self.value = value or (lambda k0, i: float(k0 + i))
        self.nan_ticks, self.fail_ticks = set(nan_ticks), set(fail_ticks)
        self.supports_rtc = supports_rtc
        self.calls: list[int] = []          # k0 of every call, in order
        self.rtc_requests: list = []
        self.obs_seen: list[Observation] = []
        self.lock = threading.Lock()

    def __call__(self, obs: Observation, rtc=None) -> np.ndarray:
        k0 = int(round(obs.stamps_s["state"] / PERIOD))
        with self.lock:
            self.calls.append(k0)
            self.obs_seen.append(obs)
            self.rtc_requests.append(rtc)
        if self.latency_s:
            time.sleep(self.latency_s)
        if k0 in self.fail_ticks:
            raise RuntimeError(f"scripted failure at tick {k0}")
        chunk = np.array([[self.value(k0, i)] * contract.ACTION_DIM for i in range(self.chunk_len)], float)
        if k0 in self.nan_ticks:
            chunk[self.chunk_len // 2, 3] = np.nan
        return chunk

# RuntimeConfig fields that turn the target limiters off: tests of the plan that check its exact values (a scripted
# chunk holds the tick number in every dim; the dummy observation's joints stay at 0)
UNLIMITED = {"step_limit_fraction": None, "lead_limit_fraction": None}
