"""The safety layer: unit rules, and end to end through the arm driver, the real SDK and the emulator.

The end-to-end tests assert on what the emulated controller received: a refused command never reaches it.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from ate_drivers.arm.realman import RealmanArm
from ate_drivers.arm.realman_emulator import RealmanEmulator
from ate_drivers.arm_driver import ArmDriver
from ate_drivers.safety import EStop, Refused, SafetyConfig, SafetyFilter
from ate_description.contract import JOINT_LIMITS_RAD, arm_joint_names

NAMES = arm_joint_names("left")
HOME = np.radians([0.0, 20.0, 0.0, 60.0, 0.0, 40.0, 0.0])


# --- unit rules ------------------------------------------------------------------------------------------------

def test_named_joints_are_reordered_and_unknown_or_missing_names_refused():
    f = SafetyFilter("left")
    q = f.order(list(reversed(NAMES)), list(range(7))[::-1])
    np.testing.assert_array_equal(q, np.arange(7))
    with pytest.raises(Refused, match="unknown_joint"):
        f.order(arm_joint_names("right"), [0.0] * 7)
    with pytest.raises(Refused, match="wrong_length"):
        f.order(NAMES[:6], [0.0] * 6)
    assert f.refusals == {"unknown_joint": 1, "wrong_length": 1}


@pytest.mark.parametrize("bad, reason", [
    (np.r_[HOME[:6], np.nan], "not_finite"),
    (np.r_[HOME[:6], np.inf], "not_finite"),
    (HOME[:6], "wrong_length"),
])
def test_malformed_commands_are_refused_and_counted(bad, reason):
    f = SafetyFilter("left")
    with pytest.raises(Refused, match=reason):
        f.check_arm(bad, HOME, now_s=0.0)
    assert f.refusals[reason] == 1 and f.diagnostics()[f"refused_{reason}"] == "1"


def test_joint_limits_apply_with_margin():
    cfg = SafetyConfig(joint_margin_rad=math.radians(2), max_velocity_rad_s=200.0, tracking_bound_rad=10.0)
    f = SafetyFilter("left", cfg)
    q = np.zeros(7)
    q[1] = JOINT_LIMITS_RAD[1] - math.radians(1)  # inside the controller's limit, inside the margin band
    with pytest.raises(Refused, match="joint_limit"):
        f.check_arm(q, np.zeros(7), now_s=0.0)
    q[1] = JOINT_LIMITS_RAD[1] - math.radians(3)
    np.testing.assert_array_equal(f.check_arm(q, np.zeros(7), now_s=0.0), q)


def test_step_limit_is_judged_against_the_last_target_then_the_measured_position_after_a_pause():
    cfg = SafetyConfig(max_velocity_rad_s=1.0, watchdog_s=0.25)      # 0.05 rad per 20 Hz command
    f = SafetyFilter("left", cfg)
    assert cfg.max_step_rad == pytest.approx(0.05)
    q1 = HOME + 0.04
    f.check_arm(q1, HOME, now_s=0.0)
    f.check_arm(q1 + 0.04, HOME, now_s=0.05)         # 0.04 from the last target: fine while streaming
    with pytest.raises(Refused, match="too_fast"):
        f.check_arm(q1 + 0.04, HOME, now_s=1.0)      # after the watchdog: 0.08 from where the arm is
    assert f.watchdog_expired(1.0) and not f.watchdog_expired(0.1)


def test_stale_and_future_commands_are_refused():
    f = SafetyFilter("left", SafetyConfig(watchdog_s=0.25, future_stamp_tolerance_s=0.02))
    with pytest.raises(Refused, match="stale"):
        f.check_arm(HOME, HOME, now_s=10.0, stamp_s=9.5)
    with pytest.raises(Refused, match="future_stamp"):
        f.check_arm(HOME, HOME, now_s=10.0, stamp_s=10.05)
    f.check_arm(HOME, HOME, now_s=10.0, stamp_s=10.01)          # within the tolerance


def test_targets_and_frames_far_from_the_measured_joints_are_refused():
    f = SafetyFilter("left", SafetyConfig(tracking_bound_rad=0.1, max_velocity_rad_s=1.0))
    stuck = HOME.copy()
    q = HOME + 0.04
    f.check_arm(q, stuck, now_s=0.0)
    f.check_arm(q + 0.04, stuck, now_s=0.05)                    # 0.08 from the arm: inside the bound
    with pytest.raises(Refused, match="tracking"):
        f.check_arm(q + 0.08, stuck, now_s=0.10)                # 0.12 from the arm that does not follow
    # Frames: the velocity cap over the frame's period, and the same tracking bound.
    f.check_frame(HOME + 0.004, HOME, 0.005, HOME)
    with pytest.raises(Refused, match="frame_too_fast"):
        f.check_frame(HOME + 0.006, HOME, 0.005, HOME)         # 1.2 rad/s > 1.0
    with pytest.raises(Refused, match="tracking"):
        f.check_frame(HOME + 0.104, HOME + 0.1, 0.005, HOME)
    seen = []
    f.add_listener(lambda reason, detail: seen.append(reason))
    with pytest.raises(Refused):
        f.check_frame(np.r_[HOME[:6], np.nan], HOME, 0.005, HOME)
    assert seen == ["frame_invalid"]


def test_estop_latches_until_reset_and_calls_every_listener():
    e = EStop()
    calls = []
    e.add_listener(lambda: calls.append("a"))
    e.add_listener(lambda: 1 / 0)               # a failing arm must not keep the next one from stopping
    e.add_listener(lambda: calls.append("b"))
    f = SafetyFilter("left", estop=e)
    e.trigger("test")
    assert calls == ["a", "b"]
    with pytest.raises(Refused, match="estop"):
        f.check_arm(HOME, HOME, now_s=0.0)
    with pytest.raises(Refused, match="estop"):
        f.check_gripper(0.5)
    e.reset()
    f.check_arm(HOME, HOME, now_s=0.0)


def test_gripper_commands_outside_0_1_are_refused():
    f = SafetyFilter("left")
    assert f.check_gripper(0.5, 0.2, 1.0) == (0.5, 0.2, 1.0)
    for bad in [(1.2, 1, 1), (-0.1, 1, 1), (float("nan"), 1, 1), (0.5, 2.0, 1)]:
        with pytest.raises(Refused):
            f.check_gripper(*bad)


# --- end to end: driver -> real SDK -> emulator ------------------------------------------------------------------

@pytest.fixture
def driver_pair():
    """Two arms in one process (like the lab PC), sharing one e-stop."""
    emus = [RealmanEmulator(q0_deg=np.degrees(HOME)).start() for _ in range(2)]
    estop = EStop()
    drivers = [ArmDriver(arm, RealmanArm(ip="127.0.0.1", port=e.port, reply_timeout_ms=150),
                         SafetyConfig(), estop) for arm, e in zip(("left", "right"), emus)]   # streaming threads
    for d in drivers:
        assert d.tick() is not None
    yield drivers, emus, estop
    for d in drivers:
        d.close()
    for e in emus:
        e.stop()


def test_refused_commands_never_reach_the_controller(driver_pair):
    (left, _), (emu, _), _ = driver_pair
    n0 = len(emu.commands("movej_canfd"))
    far = HOME.copy()
    far[0] += 0.5                                               # too fast for one tick
    out = HOME.copy()
    out[3] = JOINT_LIMITS_RAD[3] + 0.1                          # beyond the joint limit
    nan = HOME.copy()
    nan[2] = np.nan
    now = time.monotonic()
    assert not left.on_command(NAMES, far, stamp_s=now)
    assert not left.on_command(NAMES, out, stamp_s=now)
    assert not left.on_command(NAMES, nan, stamp_s=now)
    assert not left.on_command(NAMES, HOME, stamp_s=now - 5.0)  # stale
    assert not left.on_command(arm_joint_names("right"), HOME, stamp_s=now)
    time.sleep(0.05)
    assert len(emu.commands("movej_canfd")) == n0
    assert sum(left.safety.refusals.values()) == 5
    level, msg, kv = left.diagnostics()
    assert level == 1 and kv["refused_total"] == "5" and kv["refused_too_fast"] == "1"
    # ... and a good command does reach it, as a stream of frames that ends on it.
    assert left.on_command(NAMES, HOME + 0.01, stamp_s=time.monotonic())
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5.0 and not (len(emu.commands("movej_canfd")) > n0 and np.allclose(
            np.radians(emu.canfd_targets_deg()[-1]), HOME + 0.01, atol=1e-4)):
        left.tick()
        time.sleep(0.01)
    assert len(emu.commands("movej_canfd")) > n0
    np.testing.assert_allclose(np.radians(emu.canfd_targets_deg()[-1]), HOME + 0.01, atol=1e-4)


def test_no_fresh_command_means_no_frame_the_last_target_is_never_replayed(driver_pair):
    (left, _), (emu, _), _ = driver_pair
    assert left.on_command(NAMES, HOME + 0.01, stamp_s=time.monotonic())
    for _ in range(15):             # state ticks with no new command: the stream ends on the target ...
        left.tick()
        time.sleep(0.03)
    n = len(emu.commands("movej_canfd"))
    np.testing.assert_allclose(np.radians(emu.canfd_targets_deg()[-1]), HOME + 0.01, atol=1e-4)
    for _ in range(10):             # ... and nothing more is sent
        left.tick()
        time.sleep(0.03)
    assert len(emu.commands("movej_canfd")) == n
    assert left.diagnostics()[2]["watchdog_holding"] == "True"


def test_estop_reaches_both_arms_within_one_tick_and_latches(driver_pair):
    (left, right), (emu_l, emu_r), estop = driver_pair
    t0 = time.monotonic()
    estop.trigger("operator")
    # The SDK stop is synchronous (the controller answers it): both controllers have it before trigger returns,
    # i.e. well within one 20 Hz control tick.
    assert emu_l.commands("set_arm_stop")[-1].t - t0 < 0.05
    assert emu_r.commands("set_arm_stop")[-1].t - t0 < 0.05
    n = len(emu_l.commands("movej_canfd"))
    assert not left.on_command(NAMES, HOME, stamp_s=time.monotonic())
    assert len(emu_l.commands("movej_canfd")) == n
    assert left.diagnostics()[0] == 2
    estop.reset()
    assert left.on_command(NAMES, HOME, stamp_s=time.monotonic())
