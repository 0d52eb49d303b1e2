"""The runtime escalates instead of waiting forever: an inference call past its deadline is abandoned and the
runtime holds (diagnostics error) until an explicit resume; a hold of the cell flushes everything; after a flush
the recovery request starts at once instead of queueing behind the stale call."""

from __future__ import annotations

import threading
import time

import numpy as np
from ate_runtime_testkit import PERIOD, UNLIMITED, ScriptedPolicy, obs_at

from ate_policy.runtime import BlendConfig, PolicyRuntime, RuntimeConfig


class StuckOnce(ScriptedPolicy):
    """The first call blocks until released (a hung CUDA call, a deadlocked processor); later calls are quick.
    Records the wall time each call started."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.release = threading.Event()
        self.started: list[float] = []

    def __call__(self, obs, rtc=None):
        with self.lock:
            self.started.append(time.perf_counter())
            first = len(self.started) == 1
        if first:
            self.release.wait(30.0)
        return super().__call__(obs, rtc)


def realtime(pol, **kw) -> PolicyRuntime:
    kw.setdefault("warmup_runs", 0)
    return PolicyRuntime(pol, RuntimeConfig(**UNLIMITED,
                                            clock="realtime", queue_threshold_ticks=4, blending=BlendConfig("latest"),
                                            **kw))


def tick_for(rt, seconds: float, until=None, t0: float | None = None):
    """Tick at 20 Hz on the wall clock; returns the results (stops early when ``until(result)``)."""
    t0 = time.monotonic() if t0 is None else t0
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.monotonic() - t0
        r = rt.tick(obs_at(now), now)
        out.append(r)
        if until is not None and until(r):
            break
        time.sleep(PERIOD)
    return out


def test_a_call_past_its_deadline_is_abandoned_the_runtime_holds_with_an_error_until_resumed():
    pol = StuckOnce(chunk_len=8)
    rt = realtime(pol, inference_deadline_s=0.3)
    rt.start()
    t0 = time.monotonic()
    res = tick_for(rt, 5.0, until=lambda r: r.reason == "inference_deadline", t0=t0)
    assert res[-1].reason == "inference_deadline", [r.reason for r in res]
    waited = time.monotonic() - t0
    assert 0.3 <= waited < 2.0, waited                            # escalated at the deadline, not later
    level, msg, kv = rt.diagnostics()
    assert level == 2 and "inference_deadline" in msg and kv["inference_deadlines"] == "1"
    assert rt.state == "held"
    # it never resumes by itself: ticks keep holding, no new request goes out
    more = tick_for(rt, 0.5, t0=t0)
    assert all(r.action is None and r.reason == "inference_deadline" for r in more)
    assert len(pol.started) == 1
    # the operator resumes: a fresh worker serves the next request although the first call is still stuck
    rt.resume()
    res = tick_for(rt, 3.0, until=lambda r: r.reason == "ok", t0=t0)
    assert res[-1].reason == "ok" and not pol.release.is_set()
    assert np.allclose(res[-1].action, res[-1].tick)
    assert rt.stats()["workers_replaced"] == 1
    pol.release.set()
    rt.close()


def test_after_a_flush_the_recovery_request_does_not_queue_behind_the_stale_call():
    pol = StuckOnce(chunk_len=8)
    rt = realtime(pol, inference_deadline_s=10.0)
    rt.start()
    t0 = time.monotonic()
    tick_for(rt, 0.2, t0=t0)                                       # the first request is now stuck
    assert len(pol.started) == 1
    now = time.monotonic() - t0
    held = rt.tick(obs_at(now, stale={"cam_high": 1.0}), now)      # a stale camera: hold, flush the plan
    assert held.reason.startswith("stale")
    t_flush = time.perf_counter()
    res = tick_for(rt, 3.0, until=lambda r: r.reason == "ok", t0=t0)
    assert res[-1].reason == "ok", [r.reason for r in res]
    assert len(pol.started) == 2 and pol.started[1] - t_flush < 0.5   # started at once, on a fresh worker
    assert not pol.release.is_set()                                  # while the stale call still runs
    pol.release.set()
    rt.close()


def test_a_cell_hold_flushes_and_holds_every_tick_until_an_explicit_resume():
    from test_runtime_loop import lockstep   # the lockstep runtime of the loop tests

    pol = ScriptedPolicy(chunk_len=8)
    rt = lockstep(pol, d=1, threshold=2)
    rt.start()
    res = [rt.tick(obs_at(k * PERIOD), k * PERIOD) for k in range(5)]
    assert res[-1].reason == "ok"
    rt.hold("held", "refusal on arm/left: too_fast")
    res = [rt.tick(obs_at(k * PERIOD), k * PERIOD) for k in range(5, 15)]
    assert all(r.action is None and r.reason == "held" for r in res)
    assert res[-1].queue_depth == 0                                 # the plan was flushed
    level, msg, _ = rt.diagnostics()
    assert level == 2 and "too_fast" in msg and "resume" in msg
    rt.reset()
    rt.start()                                                      # a new episode of the same cell: still held
    assert rt.tick(obs_at(15 * PERIOD), 15 * PERIOD).reason == "held"
    rt.resume()
    res = [rt.tick(obs_at(k * PERIOD), k * PERIOD) for k in range(16, 20)]
    assert res[-1].reason == "ok" and np.allclose(res[-1].action, 19)   # the target for t = 19 periods
    rt.close()


def test_lockstep_a_hung_policy_holds_instead_of_raising():
    from test_runtime_loop import lockstep

    pol = StuckOnce(chunk_len=8)
    rt = lockstep(pol, d=1, threshold=2, lockstep_timeout_s=0.3)
    rt.start()
    res = [rt.tick(obs_at(k * PERIOD), k * PERIOD) for k in range(3)]
    assert [r.reason for r in res] == ["warming_up", "inference_deadline", "inference_deadline"]
    assert rt.diagnostics()[0] == 2
    pol.release.set()
    rt.close()
