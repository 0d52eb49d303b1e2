"""Frame assembly from asynchronous streams: the one place where "which sample belongs to this tick" is decided.

The rule (issue 4), used live by the recorder and offline by the bag converter:

* every 20 Hz tick takes, for each stream, the **newest sample captured at or before the tick**;
* the sample is **fresh** when its age (tick time - capture time) is at most ``max_age_s`` (default one period,
  50 ms); otherwise the stream is **stale** on that tick;
* a stale sample is still used (holding the last value is what the robot saw), but its real capture time is
  stored next to LeRobot's nominal timestamp and the tick is counted, so a late frame is never passed off as on
  time. Past a configurable share of stale ticks the episode is flagged.

Pure Python + numpy: no rclpy, no LeRobot, so it runs inside a ROS callback thread and in unit tests alike.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np


@dataclass(frozen=True)
class Sample:
    value: Any
    capture_time_s: float


class LatestSample:
    """Thread-safe holder of one stream's newest sample (producers: driver callbacks; consumer: the tick)."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._sample: Sample | None = None
        self.received = 0

    def put(self, value: Any, capture_time_s: float) -> None:
        if not math.isfinite(capture_time_s):
            raise ValueError(f"stream {self.name!r}: capture time must be finite, got {capture_time_s}")
        with self._lock:
            # Out-of-order arrivals (two camera threads, network reordering) must not replace a newer sample.
            if self._sample is None or capture_time_s >= self._sample.capture_time_s:
                self._sample = Sample(value, capture_time_s)
            self.received += 1

    def get(self) -> Sample | None:
        with self._lock:
            return self._sample

    def clear(self) -> None:
        with self._lock:
            self._sample = None


@dataclass
class TickResult:
    """What one tick assembled: values and real capture times per stream, and which streams were late."""

    tick_time_s: float
    values: dict[str, Any]
    capture_times_s: dict[str, float]
    stale: set[str] = field(default_factory=set)      # had a sample, but older than max_age_s
    missing: set[str] = field(default_factory=set)    # never had a sample

    def complete(self, required: Iterable[str]) -> bool:
        return not (set(required) & self.missing)


class FrameAssembler:
    """Online assembly: holds a ``LatestSample`` per stream and builds a ``TickResult`` at each tick."""

    def __init__(self, streams: Iterable[str], max_age_s: float):
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        self.max_age_s = float(max_age_s)
        self.buffers = {name: LatestSample(name) for name in streams}
        if not self.buffers:
            raise ValueError("FrameAssembler needs at least one stream")

    def put(self, stream: str, value: Any, capture_time_s: float) -> None:
        try:
            buf = self.buffers[stream]
        except KeyError:
            raise KeyError(f"unknown stream {stream!r}; known: {sorted(self.buffers)}") from None
        buf.put(value, capture_time_s)

    def clear(self) -> None:
        for b in self.buffers.values():
            b.clear()

    def assemble(self, tick_time_s: float) -> TickResult:
        res = TickResult(tick_time_s, {}, {})
        for name, buf in self.buffers.items():
            s = buf.get()
            if s is None:
                res.missing.add(name)
                continue
            res.values[name] = s.value
            res.capture_times_s[name] = s.capture_time_s
            if is_stale(tick_time_s, s.capture_time_s, self.max_age_s):
                res.stale.add(name)
        return res


def is_stale(tick_time_s: float, capture_time_s: float, max_age_s: float) -> bool:
    # A sample stamped slightly after the tick (clock jitter between threads) counts as age 0, not as stale.
    return tick_time_s - capture_time_s > max_age_s + 1e-9


def align(tick_times_s: np.ndarray, sample_times_s: np.ndarray, max_age_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Offline assembly of one stream: for each tick, the index of the newest sample at or before it.

    Returns ``(index, stale)``: ``index[k] == -1`` where no sample precedes tick k; ``stale[k]`` where the chosen
    sample is older than ``max_age_s`` (or missing). ``sample_times_s`` must be sorted.
    """
    tick_times_s = np.asarray(tick_times_s, dtype=np.float64)
    sample_times_s = np.asarray(sample_times_s, dtype=np.float64)
    if sample_times_s.size > 1 and np.any(np.diff(sample_times_s) < 0):
        raise ValueError("sample times must be sorted")
    # +1e-9: a sample stamped exactly on the tick belongs to it despite float rounding of the tick grid.
    idx = np.searchsorted(sample_times_s, tick_times_s + 1e-9, side="right") - 1
    age = np.where(idx >= 0, tick_times_s - sample_times_s[np.clip(idx, 0, None)], np.inf)
    stale = age > max_age_s + 1e-9
    return idx, stale


@dataclass
class StreamSyncStats:
    """Per-stream sync accounting of one episode: ages (tick - capture) and stale / repeated counts."""

    ages_s: list[float] = field(default_factory=list)
    stale_ticks: int = 0
    repeated: int = 0          # ticks that reused the previous tick's sample: a frame the stream did not deliver
    _last_time: float | None = None

    def add(self, tick_time_s: float, capture_time_s: float, stale: bool) -> None:
        self.ages_s.append(tick_time_s - capture_time_s)
        self.stale_ticks += int(stale)
        if self._last_time is not None and capture_time_s == self._last_time:
            self.repeated += 1
        self._last_time = capture_time_s

    def summary(self) -> dict:
        return {**age_summary(np.asarray(self.ages_s)), "stale_ticks": self.stale_ticks, "repeated": self.repeated}


def age_summary(ages_s: np.ndarray) -> dict:
    """p50 / p95 / max of |tick - capture| in milliseconds (NaN when there are no ticks)."""
    a = np.abs(np.asarray(ages_s, dtype=np.float64))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "max_ms": float("nan")}
    return {"p50_ms": float(np.percentile(a, 50) * 1e3), "p95_ms": float(np.percentile(a, 95) * 1e3),
            "max_ms": float(a.max() * 1e3)}


@dataclass
class EpisodeSyncStats:
    """Sync accounting of one episode across streams, plus the flag decision."""

    streams: Iterable[str]
    required: Iterable[str]
    max_stale_share: float
    ticks: int = 0
    stale_ticks: int = 0       # ticks where at least one *required* stream was stale
    per_stream: dict[str, StreamSyncStats] = field(default_factory=dict)

    def __post_init__(self):
        self.streams = tuple(self.streams)
        self.required = tuple(self.required)
        self.per_stream = {s: StreamSyncStats() for s in self.streams}

    def add(self, tick: TickResult) -> None:
        self.ticks += 1
        for name, t in tick.capture_times_s.items():
            self.per_stream[name].add(tick.tick_time_s, t, name in tick.stale)
        if any(r in tick.stale or r in tick.missing for r in self.required):
            self.stale_ticks += 1

    @property
    def stale_share(self) -> float:
        return self.stale_ticks / self.ticks if self.ticks else 0.0

    @property
    def flagged(self) -> bool:
        return self.ticks > 0 and self.stale_share > self.max_stale_share

    def summary(self) -> dict:
        return {"ticks": self.ticks, "stale_ticks": self.stale_ticks, "stale_share": self.stale_share,
                "flagged": self.flagged, "streams": {k: v.summary() for k, v in self.per_stream.items()}}
