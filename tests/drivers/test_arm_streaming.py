"""Controller-rate streaming, the tracking guard and controller faults: the arm driver through the real SDK
(``libapi_c.so``) against the controller emulator.

The deterministic tests share one injected clock between the driver and the emulator: the test sets the time,
lets the driver send its frame, and waits until the emulator has it before moving time on, so every recorded
arrival time and every emulated joint position is exact. The follow model is the emulator's (docs/drivers.md).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from ate_description.contract import PERIOD_S, arm_joint_names
from ate_description.limits import SafetyConfig, load_safety
from ate_drivers.arm.realman import RealmanArm
from ate_drivers.arm.realman_emulator import HIGH_FOLLOW_PERIOD_S, RealmanEmulator
from ate_drivers.arm.streaming import JointStream
from ate_drivers.arm_driver import ArmDriver

NAMES = arm_joint_names("left")
HOME_DEG = [0.0, 20.0, 0.0, 60.0, 0.0, 40.0, 0.0]
HOME = np.radians(HOME_DEG)


class Clock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _wait(pred, timeout: float = 5.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.0002)
    return False


class Rig:
    """Driver + real SDK + emulator on one injected clock, stepped one frame at a time."""

    def __init__(self, safety: SafetyConfig | None = None, rate_hz: float = 200.0, **arm_cfg):
        self.clock = Clock()
        self.emu = RealmanEmulator(q0_deg=HOME_DEG, clock=self.clock).start()
        self.backend = RealmanArm(ip="127.0.0.1", port=self.emu.port, reply_timeout_ms=300, stream_rate_hz=rate_hz,
                                  clock=self.clock, **arm_cfg)
        self.drv = ArmDriver("left", self.backend, safety or load_safety(), clock=self.clock, stream_thread=False)
        self.events: list[tuple[str, str]] = []
        self.drv.add_event_listener(lambda kind, detail: self.events.append((kind, detail)))
        assert self.drv.tick() is not None, self.drv.last_error
        self.dt = self.backend.frame_period_s

    def frames(self) -> int:
        return len(self.emu.commands("movej_canfd"))

    def step(self, target=None) -> bool:
        """One frame period: time moves on, an optional 20 Hz target arrives, the driver streams its frame (the
        test waits until the emulator has it), then the state is read as the node's state timer does."""
        self.clock.t += self.dt
        accepted = None
        if target is not None:
            accepted = self.drv.on_command(NAMES, target, stamp_s=self.clock.t)
        n = self.frames()
        if self.drv.stream_step():
            assert _wait(lambda: self.frames() == n + 1), "frame never arrived"
        self.drv.tick()
        return accepted

    def close(self):
        self.drv.close()
        self.emu.stop()


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def sine_target(k: int) -> np.ndarray:
    """20 Hz target k: joint 1 and 4 swing 0.25 rad at 0.5 Hz (peak 0.79 rad/s, within every shipped bound)."""
    q = HOME.copy()
    s = 0.25 * np.sin(2 * np.pi * 0.5 * k * PERIOD_S)
    q[0] += s
    q[3] -= s
    return q


# --- the stream on its own -------------------------------------------------------------------------------------

def test_stream_passes_each_target_one_tick_later_within_velocity_acceleration_and_jerk_bounds():
    cfg = SafetyConfig()
    dt, n_frames = 0.005, int(0.05 / 0.005)
    s = JointStream(dt, PERIOD_S, cfg.max_velocity_rad_s, cfg.max_acceleration_rad_s2, cfg.max_jerk_rad_s3)
    s.reset(np.zeros(1), 0.0)
    targets = [0.3 * np.sin(np.pi * k * PERIOD_S) for k in range(60)] + [0.3 * np.sin(np.pi * 59 * PERIOD_S)] * 20
    q = []
    for k in range(len(targets) * n_frames):
        t = k * dt
        if k % n_frames == 0:
            s.push(np.array([targets[k // n_frames]]), t)
        q.append(s.next_frame(t + dt)[0])
    q = np.array(q)
    t_frames = dt * np.arange(1, len(q) + 1)
    # Independent expectation: the targets linearly interpolated, one 20 Hz tick late.
    expected = np.interp(t_frames - PERIOD_S, PERIOD_S * np.arange(len(targets)), targets)
    v, a = np.diff(q) / dt, np.diff(q, 2) / dt ** 2
    j = np.diff(q, 3) / dt ** 3
    assert np.max(np.abs(v)) <= cfg.max_velocity_rad_s + 1e-9
    assert np.max(np.abs(a)) <= cfg.max_acceleration_rad_s2 * (1 + 1e-6)
    moving = (np.abs(v[1:-1]) > 1e-9) & (np.abs(v[2:]) > 1e-9)        # jerk: bounded except when coming to rest
    assert np.max(np.abs(j[moving])) <= cfg.max_jerk_rad_s3 * (1 + 1e-6)
    # It tracks that within the distance it needs to stop from the input's top speed (it must be able to stop
    # on the newest target): v^2 / (2 A) + v A / (2 J).
    v_in = 0.3 * np.pi
    brake = v_in ** 2 / (2 * cfg.max_acceleration_rad_s2) + v_in * cfg.max_acceleration_rad_s2 / (2 * cfg.max_jerk_rad_s3)
    assert np.max(np.abs(q[: 60 * n_frames] - expected[: 60 * n_frames])) < brake + 0.005
    assert q[-1] == pytest.approx(targets[-1], abs=1e-12)                          # settles on the last target
    assert np.max(q) <= max(targets) + 1e-9                                        # never beyond it


# --- driver + SDK + emulator, deterministic ----------------------------------------------------------------------

def test_20hz_targets_become_a_steady_200hz_high_follow_stream_the_arm_follows_without_stopping(rig):
    assert rig.dt == pytest.approx(0.005) and rig.backend.plan.follow and rig.backend.plan.trajectory_mode == 0
    n_ticks = 60                                     # 3 s of 20 Hz targets
    for k in range(n_ticks * 10):
        rig.step(sine_target(k // 10) if k % 10 == 0 else None)
    times = np.array(rig.emu.frame_times())
    gaps = np.diff(times)
    # Every frame one controller period after the last, far inside high follow's 10 ms...
    assert len(times) >= n_ticks * 10 - 20
    np.testing.assert_allclose(gaps, 0.005, atol=1e-9)
    assert np.max(gaps) < HIGH_FOLLOW_PERIOD_S
    # ... so the emulated arm never stopped between frames, and it followed: within a tick and a half of the
    # input, never more than the velocity cap per frame, ending on the last target.
    assert rig.emu.follow_stops == 0 and rig.emu.rejected_frames == 0
    frames = np.radians(np.array(rig.emu.canfd_targets_deg()))
    assert np.max(np.abs(np.diff(frames, axis=0))) <= load_safety().max_velocity_rad_s * 0.005 + 1e-5
    for _ in range(40):
        rig.step()
    np.testing.assert_allclose(np.radians(rig.emu.joints_deg()), sine_target(n_ticks - 1), atol=2e-5)
    assert rig.drv.diagnostics()[2]["frame_period_ms"] == "5"


def test_the_emulator_says_when_frames_come_too_slowly_for_high_follow():
    """The old way (one frame per 20 Hz tick): the emulated arm moves for 10 ms, then stands 40 ms, every tick."""
    clock = Clock()
    with RealmanEmulator(q0_deg=HOME_DEG, clock=clock) as emu:
        arm = RealmanArm(ip="127.0.0.1", port=emu.port, reply_timeout_ms=300)
        arm.connect()
        positions = []
        for k in range(1, 11):
            clock.t += PERIOD_S
            n = len(emu.frame_times())
            arm._sdk().rm_movej_canfd(list(np.degrees(HOME + 0.01 * k)), True, 0, 0, 0)   # today's driver
            assert _wait(lambda: len(emu.frame_times()) == n + 1)
            clock.t += 0.02
            mid = emu.joints_deg()
            clock.t += 0.02
            positions.append((mid, emu.joints_deg()))
        arm.disconnect()
    assert emu.follow_stops == 9                     # every gap after the first frame
    for mid, late in positions:
        np.testing.assert_allclose(mid, late)        # standing still for the rest of each tick


def test_filter_mode_needs_the_last_target_resent_and_the_driver_does_so():
    r = Rig(mode="filter", radio=500)
    try:
        assert r.backend.plan.trajectory_mode == 2 and r.emu.commands("movej_canfd") == []
        target = HOME + 0.05
        r.step(target)
        for _ in range(120):
            r.step()
        # The emulated filter only advances when frames arrive: the driver kept sending the settled target
        # until the joints were there, then stopped.
        np.testing.assert_allclose(np.radians(r.emu.joints_deg()), target, atol=1e-3)
        assert r.emu.commands("movej_canfd")[-1].msg["trajectory_mode"] == 2
        assert r.emu.commands("movej_canfd")[-1].msg["radio"] == 500
        n = r.frames()
        for _ in range(20):
            r.step()
        assert r.frames() == n
    finally:
        r.close()


# --- tracking guard and controller faults -------------------------------------------------------------------------

def test_a_controller_that_stops_following_is_caught_by_the_tracking_guard_and_recovery_does_not_jump(rig):
    bound = load_safety().tracking_bound_rad
    for k in range(20):                                  # streaming normally
        rig.step(HOME + 0.03 * (k // 10 + 1) if k % 10 == 0 else None)
    rig.emu.faults.stalled = True                        # brake / collision without an error report
    q_stall = np.radians(rig.emu.joints_deg())
    results = []
    for tick in range(12):                               # the policy keeps going at 0.6 rad/s
        target = q_stall + 0.03 * (tick + 1)
        results.append(rig.step(target))
        for _ in range(9):
            rig.step()
    assert results[0] and not all(results)
    assert rig.drv.safety.refusals["tracking"] >= 1
    assert any(kind == "hold" and "tracking" in detail for kind, detail in rig.events)
    assert rig.emu.commands("set_arm_stop"), "the driver stopped the arm"
    # No frame ever strayed further from the stalled arm than the bound.
    frames = np.radians(np.array(rig.emu.canfd_targets_deg()))
    assert np.max(np.abs(frames - q_stall)) <= bound + 1e-6
    # Recovery: the arm can move again; commands are judged against where it is, so the stream starts there.
    rig.emu.faults.stalled = False
    q_now = np.radians(rig.emu.joints_deg())
    n = rig.frames()
    assert not rig.step(q_stall + 0.03 * 13)             # the old plan, far from the arm: refused
    assert rig.step(q_now + 0.02)                         # a fresh command near the arm
    for _ in range(30):
        rig.step()
    after = np.radians(np.array(rig.emu.canfd_targets_deg()[n:]))
    assert len(after) > 0
    assert np.max(np.abs(after[0] - q_now)) <= load_safety().max_velocity_rad_s * rig.dt + 1e-5
    assert np.max(np.abs(np.diff(after, axis=0))) <= load_safety().max_velocity_rad_s * rig.dt + 1e-5
    np.testing.assert_allclose(np.radians(rig.emu.joints_deg()), q_now + 0.02, atol=1e-4)


def test_a_controller_error_blocks_commands_until_cleared_through_the_sdk(rig):
    rig.step(HOME + 0.02)
    for _ in range(15):
        rig.step()
    rig.emu.collision_stop(0x1003)
    rig.step()                                           # the state read reports the error
    assert rig.drv.fault and rig.drv.diagnostics()[0] == 2
    kinds = [k for k, _ in rig.events]
    assert "controller_error" in kinds and "hold" in kinds
    n = rig.frames()
    assert not rig.step(HOME + 0.03)
    assert rig.drv.safety.refusals["controller_error"] == 1
    # Even when the controller's own error is gone (it would clear on the next motion command), the driver
    # waits for the explicit clear.
    rig.emu.faults.errors = []
    rig.step()
    assert not rig.step(HOME + 0.03) and rig.frames() == n
    rig.emu.faults.errors = [0x1003]
    rig.emu.faults.joint_errors[2] = 7
    ok, msg = rig.drv.clear_error()
    assert ok, msg
    assert rig.emu.commands("clear_system_err") and rig.emu.faults.joint_errors[2] == 0
    assert rig.emu.commands("set_joint_clear_err")[-1].msg["joint_clear_err"] == 3
    assert ("error_cleared" in [k for k, _ in rig.events]) and not rig.drv.fault
    q_now = np.radians(rig.emu.joints_deg())
    assert rig.step(q_now + 0.01)
    for _ in range(20):
        rig.step()
    assert rig.frames() > n


def test_clear_error_fails_while_the_controller_keeps_reporting(rig):
    rig.emu.collision_stop()
    rig.step()
    rig.emu.faults.refuse.add("clear_system_err")
    ok, msg = rig.drv.clear_error()
    assert not ok and rig.drv.fault


# --- stamps ----------------------------------------------------------------------------------------------------

def test_real_mode_refuses_unstamped_and_future_commands(rig):
    rig.drv.require_stamps = True
    tol = load_safety().future_stamp_tolerance_s
    t = rig.clock.t
    assert not rig.drv.on_command(NAMES, HOME, stamp_s=None)
    assert not rig.drv.on_command(NAMES, HOME, stamp_s=t + tol + 0.01)
    assert rig.drv.on_command(NAMES, HOME, stamp_s=t + tol / 2)
    assert rig.drv.safety.refusals["unstamped"] == 1 and rig.drv.safety.refusals["future_stamp"] == 1


# --- real time -------------------------------------------------------------------------------------------------

def _stream_on_the_wall_clock(emulator, seconds: float = 2.0) -> tuple[np.ndarray, float]:
    drv = ArmDriver("left", RealmanArm(ip="127.0.0.1", port=emulator.port, reply_timeout_ms=150), load_safety())
    try:
        assert drv.tick() is not None
        t0 = time.monotonic()
        n0 = len(emulator.frame_times())
        for k in range(int(seconds / PERIOD_S)):      # 20 Hz targets, state read as the node's timer does
            drv.on_command(NAMES, sine_target(k), stamp_s=time.monotonic())
            drv.tick()
            time.sleep(max(0.0, t0 + (k + 1) * PERIOD_S - time.monotonic()))
        times = np.array(emulator.frame_times()[n0:])
    finally:
        drv.close()
    return np.diff(times), drv.backend.frame_period_s


def test_realtime_stream_thread_holds_the_frame_period(emulator):
    """Smoke test on the wall clock: >= 95 % of frame gaps within the period + 2 ms. This CPU is shared with other
    jobs that can starve any process for a while, so one of three 2 s windows has to meet it. The arm node
    shortens
    the interpreter's thread switch interval for its stream thread; so does this test."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        shares = []
        for _ in range(3):
            gaps, period = _stream_on_the_wall_clock(emulator)
            assert len(gaps) > 0.8 * 2.0 / period
            shares.append(float(np.mean(gaps <= period + 0.002)))
            if shares[-1] >= 0.95:
                break
    finally:
        sys.setswitchinterval(switch)
    assert max(shares) >= 0.95, shares


def test_the_emulators_smoothing_and_low_follow_modes_lag_as_documented():
    """A 0.02 rad step streamed at 5 ms: pass-through is there within a few frames; curve fitting lags
    more the larger its radio (up to ~15 frames at 100); low follow lags too but keeps moving."""
    clock = Clock()
    after_50ms = {}
    with RealmanEmulator(q0_deg=HOME_DEG, clock=clock) as emu:
        arm = RealmanArm(ip="127.0.0.1", port=emu.port, reply_timeout_ms=300)
        arm.connect()
        for name, follow, tmode, radio in (("pass", True, 0, 0), ("curve20", True, 1, 20),
                                           ("curve100", True, 1, 100), ("low", False, 0, 0)):
            emu.q_deg = np.asarray(HOME_DEG, dtype=float)
            emu.target_deg = emu.q_deg.copy()
            goal = np.asarray(HOME_DEG) + np.degrees(0.02)
            for k in range(10):
                clock.t += 0.005
                n = len(emu.frame_times())
                arm._sdk().rm_movej_canfd(list(goal), follow, 0, tmode, radio)
                assert _wait(lambda: len(emu.frame_times()) == n + 1)
            after_50ms[name] = float(np.radians(emu.joints_deg()[0] - HOME_DEG[0]))
        arm.disconnect()
    assert after_50ms["pass"] == pytest.approx(0.02, abs=1e-4)
    assert 0.02 > after_50ms["curve20"] > after_50ms["curve100"] > 0.0
    assert 0.02 > after_50ms["low"] > 0.0
    assert emu.follow_stops == 0


def test_a_refused_stop_during_a_controller_error_is_not_a_lost_link(rig):
    rig.emu.faults.refuse.add("set_arm_stop")
    rig.emu.collision_stop()
    rig.step()
    assert rig.drv.fault and rig.drv.connected and rig.drv.reconnects == 1


# --- a whole chunk -----------------------------------------------------------------------------------------------

def chunk(t0_k: int, n: int = 20):
    """n points of the sine input, 50 ms apart, starting one tick after ``t0_k``'s target."""
    return [0.05 * (i + 1) for i in range(n)], [sine_target(t0_k + i + 1) for i in range(n)]


def test_a_whole_chunk_is_streamed_on_its_own_timeline_without_the_tick_of_interpolation(rig):
    for k in range(20):                                  # at rest on the first target
        rig.step(sine_target(0) if k == 0 else None)
    t0 = rig.clock.t
    times, points = chunk(0)
    assert rig.drv.on_trajectory(NAMES, times, points, stamp_s=t0)
    n = rig.frames()
    for _ in range(int(1.3 / rig.dt)):                # the chunk's second, then the stream settles
        rig.step()
    frames = rig.emu.commands("movej_canfd")[n:]
    ft = np.array([f.t for f in frames])
    fq = np.radians(np.array([np.asarray(f.msg["joint"]) / 1000.0 for f in frames]))
    # Independent expectation: the chunk's points linearly interpolated on their own times (no delay).
    pt = t0 + np.array([0.0] + times)
    pq = np.vstack([sine_target(0)] + points)
    expected = np.array([np.interp(ft, pt, pq[:, j]) for j in range(7)]).T
    lag_free = np.max(np.abs(fq - expected)[ft > t0 + 0.2])
    delayed = np.array([np.interp(ft - PERIOD_S, pt, pq[:, j]) for j in range(7)]).T
    assert lag_free < 0.01 < np.max(np.abs(delayed - expected)[ft > t0 + 0.2])
    np.testing.assert_allclose(fq[-1], points[-1], atol=1e-6)
    assert rig.emu.follow_stops == 0 and np.max(np.diff(ft)) == pytest.approx(rig.dt)


def test_a_chunk_with_a_point_too_fast_is_refused_whole(rig):
    times, points = chunk(0)
    points[5] = points[5] + 0.2                           # 0.2 rad in 50 ms: 4 rad/s
    n = rig.frames()
    assert not rig.drv.on_trajectory(NAMES, times, points, stamp_s=rig.clock.t)
    for _ in range(20):
        rig.step()
    assert rig.frames() == n and rig.drv.safety.refusals["too_fast"] == 1
