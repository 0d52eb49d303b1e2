"""The 20 Hz runtime with a scripted policy of known outputs and injected latencies (logic, not a device).

The scripted chunk from the observation of tick k0 holds the value k0 + i at index i, i.e. the target *for
tick k0 + i*: whatever the latency, the queue depth or the merging, a correctly timed runtime sends the value
k at tick k.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from ate_runtime_testkit import PERIOD, UNLIMITED, ScriptedPolicy, obs_at

from ate_description import contract
from ate_description.errors import UserError
from ate_policy.runtime import BlendConfig, PolicyRuntime, RuntimeConfig


def lockstep(policy, d: int, threshold: int, strategy: str = "latest", **kw) -> PolicyRuntime:
    kw.setdefault("warmup_runs", 0)
    cfg = RuntimeConfig(**UNLIMITED, clock="lockstep", lockstep_delay_ticks=d,
                        queue_threshold_ticks=threshold,
                        blending=BlendConfig(strategy), **kw)
    return PolicyRuntime(policy, cfg, instruction="cook the bun")


def run(rt: PolicyRuntime, n: int, start: int = 0, **obs_kw):
    rt.start()
    return [rt.tick(obs_at(k * PERIOD, **obs_kw), k * PERIOD) for k in range(start, start + n)]


@pytest.mark.parametrize("d", [0, 1, 3])
def test_lockstep_chunk_of_tick_k_is_used_from_tick_k_plus_d_with_no_missed_tick(d):
    pol = ScriptedPolicy(chunk_len=8)
    rt = lockstep(pol, d=d, threshold=max(d, 1))
    res = run(rt, 60)
    assert [r.reason for r in res[:d]] == ["warming_up"] * d
    assert all(r.reason == "ok" for r in res[d:])
    for r in res[d:]:
        assert np.allclose(r.action, r.tick)   # the target predicted for this very tick
        assert r.tick - r.chunk_tick >= d
    s = rt.stats()
    assert s["missed_ticks"] == 0 and s["holds"] == ({"warming_up": d} if d else {})
    assert s["overtaken_actions"] == d * s["chunks"]                  # d actions skipped per chunk
    assert pol.calls == sorted(set(pol.calls)) and pol.calls[0] == 0
    rt.close()


def test_lockstep_threshold_below_the_delay_misses_exactly_the_gap_per_chunk():
    d, threshold, L = 4, 2, 8
    pol = ScriptedPolicy(chunk_len=L)
    rt = lockstep(pol, d=d, threshold=threshold)
    res = run(rt, 61)
    starved = [r.tick for r in res if r.reason == "starved"]
    # Requested when `threshold - 1` targets remain; they last until the chunk arrives d ticks later minus the
    # gap.
    chunks_after_first = rt.stats()["chunks"] - 1
    assert len(starved) == (d - threshold) * chunks_after_first > 0
    assert rt.stats()["missed_ticks"] == len(starved)
    assert all(np.allclose(r.action, r.tick) for r in res if r.reason == "ok")
    rt.close()


def test_lockstep_waits_for_a_slow_policy_so_runs_do_not_depend_on_machine_speed():
    fast = run(lockstep(ScriptedPolicy(chunk_len=6), d=2, threshold=2, strategy="blend"), 30)
    slow_pol = ScriptedPolicy(chunk_len=6, latency_s=0.08)   # > one period of wall time per chunk
    slow = run(lockstep(slow_pol, d=2, threshold=2, strategy="blend"), 30)
    assert [r.reason for r in slow] == [r.reason for r in fast]
    for a, b in zip(fast, slow, strict=True):
        assert (a.action is None and b.action is None) or np.array_equal(a.action, b.action)


def test_blend_merges_two_different_predictions_with_the_cross_fade():
    # chunk of tick k0: value 100 * k0 + i, so chunks disagree and the blend is visible
    pol = ScriptedPolicy(chunk_len=6, value=lambda k0, i: 100.0 * k0 + i)
    rt = lockstep(pol, d=1, threshold=3, strategy="blend")
    res = run(rt, 12)
    # chunk 0 used from tick 1; at tick 3 (2 targets left after it) chunk 3 is asked for, used from tick 4.
    assert pol.calls[:2] == [0, 3]
    old = {k: float(k) for k in range(6)}              # chunk 0: value i for tick i
    new = {k: 300.0 + (k - 3) for k in range(3, 9)}    # chunk 3
    # overlap at arrival (tick 4): ticks 4, 5 -> weights 1/2, 1
    assert res[4].action[0] == pytest.approx(0.5 * old[4] + 0.5 * new[4])
    assert res[5].action[0] == pytest.approx(new[5])
    assert res[4].new_chunk and res[4].chunk_tick == 3


def test_realtime_skips_actions_overtaken_during_inference_and_keeps_targets_on_their_ticks():
    latency = 0.12   # 2.4 periods
    pol = ScriptedPolicy(chunk_len=12, latency_s=latency)
    cfg = RuntimeConfig(**UNLIMITED, clock="realtime", queue_threshold_ticks=8, warmup_runs=1,
                        blending=BlendConfig("blend"))
    rt = PolicyRuntime(pol, cfg)
    rt.warmup(obs_at(0.0))
    rt.start()
    t0 = time.monotonic()
    res = []
    for k in range(36):                                   # 1.8 s at 20 Hz, paced by the wall clock
        time.sleep(max(0.0, t0 + k * PERIOD - time.monotonic()))
        now = time.monotonic() - t0
        res.append(rt.tick(obs_at(now), now))
    ok = [r for r in res if r.reason == "ok"]
    assert len(ok) >= 10
    for r in ok:   # the target for the tick it is sent at (requests are stamped with their tick's time)
        assert r.action[0] == pytest.approx(r.tick)
    s = rt.stats()
    # A chunk requested at tick k is ready >= 120 ms later: at tick k + 2 at the earliest, however late the
    # loop runs; its first >= 2 actions are skipped. (Whether a tick is missed depends on this machine's load:
    # the benchmark measures that, not this test.)
    assert s["overtaken_actions"] >= 2 * s["chunks"] > 0
    assert set(s["holds"]) <= {"warming_up", "starved"}
    assert s["inference_ms"]["p50"] >= latency * 1e3 and len(s["warmup_ms"]) == 1
    rt.close()


def test_a_stale_camera_holds_reports_the_age_and_is_never_given_to_the_policy():
    pol = ScriptedPolicy(chunk_len=8)
    rt = lockstep(pol, d=1, threshold=2)
    rt.start()
    res = [rt.tick(obs_at(k * PERIOD), k * PERIOD) for k in range(5)]
    stale = rt.tick(obs_at(5 * PERIOD, stale={"cam_high": 0.25}), 5 * PERIOD)
    assert stale.action is None and stale.reason == "stale:cam_high" and "age 250 ms > 100 ms" in stale.detail
    assert stale.queue_depth == 0                         # the plan made before the stall is dropped
    state_stale = rt.tick(obs_at(6 * PERIOD, stale={"state": 0.101}), 6 * PERIOD)
    assert state_stale.reason == "stale:state"
    after = [rt.tick(obs_at(k * PERIOD), k * PERIOD) for k in range(7, 12)]
    assert after[0].reason == "warming_up" and after[1].reason == "ok" and after[1].action[0] == 8
    assert all(max(o.stamps_s.values()) - min(o.stamps_s.values()) == 0 for o in pol.obs_seen)
    assert 5 not in pol.calls and 6 not in pol.calls
    s = rt.stats()
    assert s["holds"]["stale:cam_high"] == 1 and s["holds"]["stale:state"] == 1 and s["missed_ticks"] == 0
    assert res[-1].reason == "ok"
    level, msg, kv = rt.diagnostics()
    assert level == 0 and kv["holds.stale:cam_high"] == "1"


def test_missing_frames_future_stamps_and_bad_state_hold():
    rt = lockstep(ScriptedPolicy(), d=0, threshold=1)
    rt.start()
    o = obs_at(0.0)
    del o.images["cam_left_wrist"]
    assert rt.tick(o, 0.0).reason == "missing:cam_left_wrist"
    o = obs_at(PERIOD)
    o.stamps_s["cam_right_wrist"] = PERIOD + 0.5
    assert rt.tick(o, PERIOD).reason == "future:cam_right_wrist"
    o = obs_at(2 * PERIOD)
    o.state[3] = np.inf
    r = rt.tick(o, 2 * PERIOD)
    assert r.reason == "bad_observation:state" and rt.diagnostics()[0] == 2
    assert rt.tick(obs_at(3 * PERIOD), 3 * PERIOD).reason == "ok"


def test_a_nan_chunk_is_refused_counted_and_never_sent():
    pol = ScriptedPolicy(chunk_len=6, nan_ticks={4})
    rt = lockstep(pol, d=2, threshold=2)
    res = run(rt, 14)
    assert all(np.all(np.isfinite(r.action)) for r in res if r.action is not None)
    # chunk 0 covers ticks 2..5; the chunk of tick 4 (due at 6) is refused; the one asked for at 6 arrives at
    # 8
    refused = [r for r in res if r.reason == "refused_nonfinite"]
    assert [r.tick for r in refused] == [6, 7] and all(r.action is None for r in refused)
    s = rt.stats()
    assert s["chunks_refused_nonfinite"] == 1 and s["missed_ticks"] == len(refused)
    assert res[-1].reason == "ok"                                 # the next chunk is used again
    level, msg, _ = rt.diagnostics()
    assert level == 1 and "2 missed ticks" in msg


def test_a_failing_policy_does_not_stop_the_loop():
    pol = ScriptedPolicy(chunk_len=6, fail_ticks={0})
    rt = lockstep(pol, d=1, threshold=2)
    res = run(rt, 6)
    assert res[1].reason == "inference_error" and "scripted failure" in res[1].detail
    assert rt.stats()["inference_errors"] == 1 and res[-1].reason == "ok"


def test_pause_resume_reset_and_warmup():
    pol = ScriptedPolicy(chunk_len=8)
    rt = lockstep(pol, d=1, threshold=2, warmup_runs=0)
    assert rt.tick(obs_at(0.0), 0.0).reason == "idle"
    lat = rt.warmup(obs_at(0.0), runs=3)
    assert len(lat) == 3 and pol.calls == [0, 0, 0] and rt.stats()["warmup_ms"]
    pol.calls.clear()
    rt.start()
    for k in range(4):
        rt.tick(obs_at(k * PERIOD), k * PERIOD)
    rt.pause()
    n_calls = len(pol.calls)
    paused = [rt.tick(obs_at(k * PERIOD), k * PERIOD) for k in range(4, 8)]
    assert all(r.reason == "paused" and r.action is None for r in paused)
    assert len(pol.calls) == n_calls                            # no inference while paused
    rt.resume()
    after = [rt.tick(obs_at(k * PERIOD), k * PERIOD) for k in range(8, 11)]
    assert [r.reason for r in after] == ["warming_up", "ok", "ok"] and after[1].action[0] == 9
    assert rt.stats()["holds"]["paused"] == 4
    rt.reset()
    assert rt.tick(obs_at(11 * PERIOD), 11 * PERIOD).reason == "idle"
    rt.start()                                                   # a new episode: its own clock and counters
    r = rt.tick(obs_at(20 * PERIOD), 20 * PERIOD)
    assert r.tick == 0 and rt.stats()["ticks"] == 1 and rt.stats()["episodes"] == 2
    rt.close()


def test_episode_time_limit_and_repeated_ticks():
    pol = ScriptedPolicy(chunk_len=8)
    rt = lockstep(pol, d=0, threshold=2, episode_time_limit_s=0.5)
    rt.start()
    first = rt.tick(obs_at(0.0), 0.0)
    again = rt.tick(obs_at(0.0), 0.0)
    assert again.repeated and np.array_equal(again.action, first.action) and rt.stats()["ticks"] == 1
    res = [rt.tick(obs_at(k * PERIOD), k * PERIOD) for k in range(1, 14)]
    assert all(r.reason == "ok" for r in res[:9]) and all(r.reason == "time_limit" for r in res[9:])
    n = len(pol.calls)
    rt.tick(obs_at(14 * PERIOD), 14 * PERIOD)
    assert len(pol.calls) == n


def test_rtc_gets_the_plan_from_the_request_tick_and_the_delay():
    pol = ScriptedPolicy(chunk_len=8, supports_rtc=True)
    rt = lockstep(pol, d=2, threshold=3, strategy="rtc")
    res = run(rt, 20)
    assert pol.rtc_requests[0].leftover is None                 # first chunk: nothing to continue
    for k0, req in zip(pol.calls[1:], pol.rtc_requests[1:], strict=True):
        assert req.inference_delay_ticks == 2 and req.execution_horizon_ticks == 10
        np.testing.assert_array_equal(req.leftover[:, 0], np.arange(k0, k0 + len(req.leftover)))
    assert all(np.allclose(r.action, r.tick) for r in res if r.reason == "ok")
    with pytest.raises(UserError, match="real-time chunking"):
        lockstep(ScriptedPolicy(), d=1, threshold=1, strategy="rtc")


def test_bad_runtime_configs_are_refused():
    with pytest.raises(ValueError, match="clock"):
        RuntimeConfig(clock="wall")
    with pytest.raises(ValueError, match="queue_threshold_ticks"):
        RuntimeConfig(queue_threshold_ticks=0)
    with pytest.raises(ValueError, match="max_age_ms"):
        RuntimeConfig(max_age_ms=0)


def test_targets_are_rate_limited_from_the_measured_posture_so_the_drivers_accept_every_one():
    """A first chunk far from the posture (0.5 rad on every joint, the arms at 0): the runtime approaches it at
    step_limit_fraction x the drivers' cap per tick, from the measured joints, then from each target it sent; the
    drivers' own safety filter (the oracle) accepts every target. Without the limiter it refuses the first one."""
    from ate_description.limits import SafetyConfig
    from ate_drivers.safety import Refused, SafetyFilter

    safety = SafetyConfig()
    cap = safety.max_step_rad

    def drive(fraction):
        pol = ScriptedPolicy(chunk_len=40, value=lambda k0, i: 0.5)
        cfg = RuntimeConfig(clock="lockstep", lockstep_delay_ticks=1, queue_threshold_ticks=2, warmup_runs=0,
                            step_limit_fraction=fraction, lead_limit_fraction=None, blending=BlendConfig("latest"))
        rt = PolicyRuntime(pol, cfg, safety=safety)
        res = [r for r in run(rt, 30) if r.action is not None]
        filters = {a: SafetyFilter(a, safety) for a in ("left", "right")}
        q = np.zeros(16)
        for r in res:                   # what the drivers see: each target, judged against the arms' joints
            for a, f in filters.items():
                f.check_arm(r.action[contract.arm_slice(a)][:7], q[contract.arm_slice(a)][:7], r.now_s)
            q = r.action
        return rt, res

    rt, res = drive(0.9)
    arm = [i for a in ("left", "right") for i in range(contract.arm_slice(a).start, contract.arm_slice(a).start + 7)]
    n = int(np.ceil(0.5 / (0.9 * cap)))
    for j, r in enumerate(res):
        np.testing.assert_allclose(r.action[arm], min(0.5, (j + 1) * 0.9 * cap), atol=1e-9)
        assert r.action[7] == r.action[15] == 0.5                      # grippers: not rate-limited
    s = rt.stats()
    assert s["clamped_ticks"] == n - 1 and s["step_limit_rad"] == pytest.approx(0.9 * cap, abs=1e-6)
    assert s["max_clamp_rad"] == pytest.approx(0.5 - 0.9 * cap, abs=1e-6)
    # after a pause longer than the drivers' watchdog the reference is the measured posture again (0.2 rad now)
    rt.pause()
    rt.resume()
    later = res[-1].tick + 10

    def at(t):
        o = obs_at(t * PERIOD)
        o.state[:] = 0.2
        return rt.tick(o, t * PERIOD)

    first = next(r for r in (at(t) for t in range(later, later + 5)) if r.action is not None)
    np.testing.assert_allclose(first.action[arm], 0.2 + 0.9 * cap, atol=1e-9)
    rt.close()

    with pytest.raises(Refused, match="would move 0.5000 rad"):
        drive(None)


def test_targets_never_lead_the_measured_joints_past_the_lead_limit_so_the_tracking_guard_never_holds():
    """The arm does not follow (its joints stay at 0) while the policy asks for 0.5 rad: the targets walk at the
    step limit up to lead_limit_fraction x the drivers' tracking bound and wait there; the drivers' filter (the
    oracle) accepts every one. Without the lead limit its tracking guard refuses once they pass 0.2 rad."""
    from ate_description.limits import SafetyConfig
    from ate_drivers.safety import Refused, SafetyFilter

    safety = SafetyConfig()

    def drive(lead):
        pol = ScriptedPolicy(chunk_len=40, value=lambda k0, i: 0.5)
        cfg = RuntimeConfig(clock="lockstep", lockstep_delay_ticks=1, queue_threshold_ticks=2, warmup_runs=0,
                            step_limit_fraction=0.8, lead_limit_fraction=lead, blending=BlendConfig("latest"))
        rt = PolicyRuntime(pol, cfg, safety=safety)
        res = [r for r in run(rt, 30) if r.action is not None]
        f = SafetyFilter("left", safety)
        for r in res:
            f.check_arm(r.action[:7], np.zeros(7), r.now_s)     # the measured joints: still at 0
        return rt, res

    rt, res = drive(0.9)
    lead = 0.9 * safety.tracking_bound_rad
    step = 0.8 * safety.max_step_rad                         # 0.0628: two free steps, the third stops at 0.18
    assert [round(float(r.action[0]), 6) for r in res[:4]] == [round(min(lead, (j + 1) * step), 6) for j in range(4)]
    assert all(np.allclose(r.action[:7], lead) for r in res[2:])
    s = rt.stats()
    assert s["lead_limited_ticks"] == len(res) - 2 and s["lead_limit_rad"] == pytest.approx(lead)
    with pytest.raises(Refused, match="tracking"):
        drive(None)


def test_the_limiter_takes_the_drivers_yaml_limits_and_refuses_to_guess_without_them(monkeypatch, tmp_path):
    """With no ``safety`` given the runtime reads drivers.yaml's limits (those the drivers judge by); where that
    file cannot be found it stops with the error instead of limiting to defaults the drivers may not share."""
    from ate_description import limits

    yaml_file = tmp_path / "drivers.yaml"
    yaml_file.write_text("safety:\n  max_velocity_rad_s: 0.5\n")
    monkeypatch.setattr(limits, "default_drivers_config", lambda: yaml_file)
    cfg = RuntimeConfig(clock="lockstep", step_limit_fraction=0.8, lead_limit_fraction=None)
    rt = PolicyRuntime(ScriptedPolicy(), cfg)
    try:
        assert rt._max_step_rad == pytest.approx(0.8 * 0.5 * PERIOD)
    finally:
        rt.close()
    yaml_file.unlink()
    with pytest.raises(UserError, match="drivers config .* not found"):
        PolicyRuntime(ScriptedPolicy(), cfg)
