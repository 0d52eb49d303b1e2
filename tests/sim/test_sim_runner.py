"""SimRunner: the simulated cell behind the real driver logic (safety layer, watchdog, e-stop) on simulated time."""

from __future__ import annotations

import numpy as np
import pytest

from ate_drivers.config import DriversConfig, SimSettings
from ate_description.contract import PERIOD_S, arm_joint_names
from ate_description.errors import UserError

NAMES = arm_joint_names("left")


@pytest.fixture
def runner():
    from ate_sim.runner import SimRunner

    cfg = DriversConfig(robot="sim", sim=SimSettings(task="cook_bun", image_height=24, image_width=32))
    r = SimRunner(cfg, cameras=("cam_high",))
    r.start()
    yield r
    r.close()


def test_commands_pass_the_drivers_safety_layer_on_simulated_time(runner):
    q0 = runner.read().arms["left"].q_rad
    target = q0.copy()
    for _ in range(10):  # 0.03 rad per tick: within the step limit
        target[0] += 0.03
        assert runner.command_arm("left", NAMES, target, runner.sim_time())
        runner.step()
    runner.step(0.3)
    assert abs(runner.read().arms["left"].q_rad[0] - target[0]) < 5e-3
    # too fast, NaN, stale (stamped before the watchdog window, in simulated seconds): refused, arm stays
    for bad, stamp in ((target + 0.5, runner.sim_time()), (target * np.nan, runner.sim_time()),
                       (target + 0.01, runner.sim_time() - 1.0)):
        assert not runner.command_arm("left", NAMES, bad, stamp)
        # Each refusal holds the cell (the supervisor, coupled: the other arm too); the operator's resume lets
        # the next command be judged on its own.
        assert runner.supervisor.held("right")
        assert runner.resume()[0]
    runner.step(0.3)
    assert abs(runner.read().arms["left"].q_rad[0] - target[0]) < 5e-3
    refusals = runner.arms["left"].safety.refusals
    assert refusals["too_fast"] == 1 and refusals["not_finite"] == 1 and refusals["stale"] == 1
    assert not runner.command_gripper("left", 1.5)  # outside the opening range
    assert runner.supervisor.held("left") and runner.resume()[0]
    assert runner.command_gripper("left", 0.2)


def test_estop_stops_both_arms_and_refuses_until_reset(runner):
    q = {a: runner.read().arms[a].q_rad for a in ("left", "right")}
    for a in ("left", "right"):
        t = q[a].copy()
        t[1] += 0.05
        assert runner.command_arm(a, arm_joint_names(a), t, runner.sim_time())
    runner.estop.trigger("test")
    runner.step(0.5)
    for a in ("left", "right"):
        assert np.max(np.abs(runner.read().arms[a].q_rad - q[a])) < 0.05  # stopped short of the target
        assert not runner.command_arm(a, arm_joint_names(a), q[a], runner.sim_time())
    runner.estop.reset()
    assert runner.command_arm("left", NAMES, runner.read().arms["left"].q_rad, runner.sim_time())


def test_reset_re_randomises_the_scene_but_time_never_runs_backwards(runner):
    runner.step(0.5)
    t = runner.sim_time()
    frame_before = runner.render()["cam_high"].image
    bun = runner.cell.data.body("bun").xpos.copy()
    runner.reset(seed=7)
    assert runner.sim_time() >= t - 1e-9
    assert np.linalg.norm(runner.cell.data.body("bun").xpos - bun) > 1e-4
    assert runner.render()["cam_high"].image.shape == frame_before.shape == (24, 32, 3)
    assert runner.success() is False


def test_realtime_catch_up_is_bounded_after_a_stall(runner):
    t0 = runner.advance_to_wall(100.0)
    t1 = runner.advance_to_wall(100.02)
    assert t1 - t0 == pytest.approx(0.02, abs=0.003)
    t2 = runner.advance_to_wall(110.0)  # the process stalled for 10 s: the arms must not leap
    assert t2 - t1 <= 0.1 + 1e-6


def test_lockstep_without_consumers_is_a_clear_error():
    with pytest.raises(UserError, match="consumers"):
        SimSettings(clock="lockstep").validate()
    with pytest.raises(UserError, match="realtime or lockstep"):
        SimSettings(clock="fast").validate()
    assert PERIOD_S == 0.05
