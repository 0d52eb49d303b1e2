"""The sim cell's controllers behave like the real ones: rate-limited tracking, limits never exceeded,
bad commands refused, gripper stroke and clocks as documented."""

import time

import numpy as np
import pytest

from ate_description import contract
from ate_sim.cell import HOME_Q

LIM = np.asarray(contract.JOINT_LIMITS_RAD)
VMAX = np.asarray(contract.JOINT_MAX_SPEED_RAD_S)


def _run(cell, arm, q_target, seconds, dt=contract.PERIOD_S):
    """Stream one target at 20 Hz; return the joint trajectory sampled every physics step."""
    qs = []
    for _ in range(int(round(seconds / dt))):
        cell.set_joint_targets(arm, q_target)
        for _ in range(int(round(dt / cell.model.opt.timestep))):
            cell.step(cell.model.opt.timestep)
            qs.append(cell.joint_positions(arm))
    return np.array(qs)


def test_joint_targets_are_reached_no_faster_than_the_max_joint_speed(cell):
    target = HOME_Q + np.array([1.2, -0.6, 1.0, -0.5, 1.5, 0.6, 2.0])
    qs = _run(cell, "left", target, 2.0)
    speed = np.abs(np.diff(qs, axis=0)) / cell.model.opt.timestep
    assert np.all(speed.max(axis=0) <= VMAX * 1.05), speed.max(axis=0) / VMAX
    # A 2 rad move at 225 deg/s takes ~0.5 s plus acceleration: done well within 2 s.
    np.testing.assert_allclose(qs[-1], target, atol=2e-3)
    # The right arm was not commanded and stayed home.
    np.testing.assert_allclose(cell.joint_positions("right"), HOME_Q, atol=1e-3)


def test_tracking_error_of_a_moving_target_stays_small(cell):
    errs = []
    for k in range(60):  # a 0.5 Hz sweep of joint 1 and 4, streamed at 20 Hz
        q = HOME_Q + 0.5 * np.sin(2 * np.pi * 0.5 * k * contract.PERIOD_S) * np.array([1, 0, 0, 1, 0, 0, 0])
        cell.set_joint_targets("left", q)
        cell.step()
        errs.append(np.abs(cell.joint_positions("left") - cell.setpoint("left")).max())
    assert max(errs) < 0.01  # rad, servo error around the rate-limited setpoint


def test_joint_limits_are_never_exceeded_whatever_is_commanded(cell):
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(15):  # wild targets far outside the limits, switching every 0.3 s
        target = rng.uniform(-3, 3, size=7) * LIM
        qs = _run(cell, "right", target, 0.3)
        worst = max(worst, float(np.max(np.abs(qs) - LIM)))
    assert worst <= 1e-4, f"limit exceeded by {worst} rad"


def test_targets_outside_the_limits_are_clipped_to_the_limits(cell):
    cell.set_joint_targets("left", LIM * 2)
    np.testing.assert_allclose(cell.ctl["left"].target, LIM)


@pytest.mark.parametrize("bad", [np.zeros(6), np.full(7, np.nan), [0, 0, 0, np.inf, 0, 0, 0]])
def test_malformed_joint_targets_are_refused_and_change_nothing(cell, bad):
    before = cell.ctl["left"].target.copy()
    with pytest.raises(ValueError):
        cell.set_joint_targets("left", bad)
    np.testing.assert_array_equal(cell.ctl["left"].target, before)


def test_gripper_opening_fraction_maps_to_the_120_mm_stroke(cell):
    for frac in (1.0, 0.5, 0.0, 0.25):
        cell.set_gripper("left", frac)
        cell.step(1.0)
        assert cell.gripper_opening("left") == pytest.approx(frac, abs=0.02)
        a = cell.data.body("left_finger_a").xpos
        b = cell.data.body("left_finger_b").xpos
        gap = np.linalg.norm(a - b) - 2 * 0.008  # inner faces: centres minus two half thicknesses
        assert gap == pytest.approx(frac * contract.GRIPPER_STROKE_M, abs=0.003)
        assert cell.gripper_state("left") == 0  # arrived


def test_gripper_is_rate_limited_like_the_omnipicker(cell):
    cell.set_gripper("left", 0.0)
    cell.step(0.2)
    # Full stroke takes gripper_time_s (0.6 s): after 0.2 s it is about a third of the way.
    assert 0.5 < cell.gripper_opening("left") < 0.8
    assert cell.gripper_state("left") == 1  # moving


def test_lockstep_time_advances_only_when_stepped(cell):
    t0 = cell.sim_time
    time.sleep(0.05)
    assert cell.sim_time == t0
    assert cell.step(0.5) == pytest.approx(t0 + 0.5)


def test_realtime_clock_advances_without_stepping():
    from ate_sim.cell import SimCell

    c = SimCell(clock="realtime")
    try:
        c.start_realtime()
        time.sleep(0.5)
        assert c.sim_time > 0.05
    finally:
        c.close()
    t = c.sim_time
    time.sleep(0.1)
    assert c.sim_time == t  # stopped with close()


def test_unknown_clock_and_task_are_refused():
    from ate_sim.cell import SimCell

    with pytest.raises(ValueError, match="clock"):
        SimCell(clock="wallclock")
    with pytest.raises(ValueError, match="unknown sim task"):
        SimCell(task="make_tea")
