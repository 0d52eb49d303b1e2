"""``ate_policy eval``: a tiny random PI0 in the simulated cell through the runtime and the drivers' safety
layer.

A random policy does not cook a bun; these tests check the mechanics: episodes run in lockstep to their time
limit, every tick is accounted for, the safety layer sees the commands, and the JSON / report / plots are
written."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mujoco")

from ate_description import contract  # noqa: E402
from ate_policy.cli import main  # noqa: E402
from ate_description.errors import UserError  # noqa: E402
from ate_policy.evaluation import EpisodeLog, evaluate, jerk, motion_quality  # noqa: E402
from ate_policy.runtime import load_task  # noqa: E402
from ate_policy.runtime.tiny_checkpoint import write_tiny_checkpoint  # noqa: E402

HW = (24, 32)


@pytest.fixture(scope="module")
def home_ckpt(tmp_path_factory):
    """A tiny random PI0 whose targets scatter a few mrad around the sim's home posture, grippers mostly open:
    within the safety layer's step limit, so the cell supervisor does not hold (a refusal would end the
    episode, see test_a_cell_hold_ends_the_episode_as_a_failure_and_is_never_resumed)."""
    from ate_sim.cell import HOME_Q

    mean = np.r_[HOME_Q, 0.9, HOME_Q, 0.9]
    return write_tiny_checkpoint(tmp_path_factory.mktemp("eval") / "run", chunk_size=10, image_hw=HW,
                                 action_mean=mean, action_std=0.005)


def test_eval_command_runs_an_episode_and_writes_json_report_and_plots(home_ckpt, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["eval", "--task", "cook_bun", "--checkpoint", str(home_ckpt), "--episodes", "1", "--seed", "3",
               "--time-limit", "1.0", "--output", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "cook_bun: success 0/1" in printed and str(out) in printed
    s = json.loads((out / "eval.json").read_text())
    assert s["episodes"] == 1 and s["success_rate"] == 0.0 and s["time_limit_s"] == 1.0
    assert s["policy"]["policy_type"] == "pi0" and s["render_hw"] == list(HW)
    ep = s["per_episode"][0]
    assert ep["seed"] == 3 and ep["ticks"] == 20 and ep["episode_time_s"] == 1.0
    # the task's lockstep delay: 3 ticks
    assert ep["missed_ticks"] == 0 and ep["holds"] == {"warming_up": 3}
    assert ep["held"] is None and s["held_episodes"] == 0
    # no stage of cook_bun reached and no gripper closed (the policy's grippers stay ~0.9 open)
    assert list(s["stages_reached"])[0] == "bun grasped (right)" and set(s["stages_reached"].values()) == {0}
    assert ep["stages"] == [] and ep["first_close"] == {} and s["grasp_tracking"] == {}
    assert "stages reached: bun grasped (right) 0/1" in printed
    for arm in contract.ARMS:
        m = ep["motion"][arm]
        assert m["jerk_rms_rad_s3"] > 0 and np.isfinite(m["jerk_max_rad_s3"]) and m["force_peak_n"] >= 0
    traj = np.load(out / "episode_000.npz")
    assert traj["q"].shape == (20, 16) and traj["wrench"].shape == (20, 12)
    assert list(traj["reasons"][:3]) == ["warming_up"] * 3 and np.all(np.isfinite(traj["action"][3:]))
    # the arms followed what the safety layer let through: the measured joints moved off home
    assert np.abs(traj["q"][-1] - traj["q"][0]).max() > 1e-4
    report = (out / "report.md").read_text()
    assert "Success rate: 0/1" in report and "Motion quality" in report
    assert "![summary.png](summary.png)" in report
    for name in ("episode_000.png", "summary.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_cell_hold_ends_the_episode_as_a_failure_and_is_never_resumed(tmp_path):
    from ate_sim.cell import HOME_Q

    class LeftJumps:
        """Steady targets at home, then the left arm's joint 2 jumps 0.3 rad at tick 10 (refused: too fast)."""
        image_hw = HW

        def __call__(self, obs, rtc=None):
            k0 = int(round(obs.stamps_s["state"] / contract.PERIOD_S))
            chunk = np.tile(np.r_[HOME_Q, 0.9, HOME_Q, 0.9], (10, 1))
            for i in range(10):
                if k0 + i >= 10:
                    chunk[i, 1] += 0.3
            return chunk

    # the runtime's step limiter off: the jump reaches the drivers as predicted (the limiter would slow it down)
    task = load_task("cook_bun", {"runtime": {"lockstep_delay_ticks": 1, "queue_threshold_ticks": 2,
                                              "step_limit_fraction": None, "lead_limit_fraction": None}})
    s = evaluate(task, episodes=2, seed=1, output=tmp_path / "held", time_limit_s=2.0, policy=LeftJumps(),
                 progress=False)
    assert s["held_episodes"] == 2 and s["successes"] == 0
    for ep in s["per_episode"]:
        held = ep["held"]
        assert held["arms"] == ["left", "right"] and "too_fast" in held["reason"] and "arm/left" in held["reason"]
        assert ep["ticks"] < 40                                      # ended at the hold, not at the time limit
        # the one refusal, and the rest of that tick's commands (left gripper, right arm and gripper) refused as
        # held: the other arm stopped in the same tick; nothing was sent after it
        assert ep["safety_refusals"] == {"arm:too_fast": 1} and ep["refused_while_held"] == 3
    traj = np.load(tmp_path / "held" / "episode_000.npz")
    assert list(traj["reasons"][-1:]) == ["ok"] and len(traj["reasons"]) == s["per_episode"][0]["ticks"]
    assert "episodes ended by a cell hold (failures): 2" in (tmp_path / "held" / "report.md").read_text()


def test_lockstep_evaluation_is_reproducible(home_ckpt, tmp_path):
    task = load_task("pick_bun", {"checkpoint": str(home_ckpt), "runtime": {"lockstep_delay_ticks": 1,
                                                                            "queue_threshold_ticks": 2}})
    runs = []
    for name in ("a", "b"):
        evaluate(task, episodes=1, seed=5, output=tmp_path / name, time_limit_s=0.5, progress=False)
        runs.append(np.load(tmp_path / name / "episode_000.npz"))
    np.testing.assert_array_equal(runs[0]["action"], runs[1]["action"])
    np.testing.assert_array_equal(runs[0]["q"], runs[1]["q"])


def test_jerk_and_wrench_figures_against_hand_values():
    dt = contract.PERIOD_S
    t = np.arange(10) * dt
    np.testing.assert_allclose(jerk(np.c_[t ** 3, 2 * t], dt), np.tile([6.0, 0.0], (7, 1)), atol=1e-6)
    log = EpisodeLog()
    for k in range(6):
        q = np.zeros(16)
        q[contract.arm_slice("right").start] = (k * dt) ** 3
        w = np.zeros(12)
        w[0] = 2.0 + (3.0 if k == 4 else 0.0)              # left Fx: 2 N offset, a 3 N spike
        w[6 + 2] = -4.0 if k == 2 else 0.0                 # right Fz
        w[9] = 0.5                                          # right torque x
        log.t_s.append(k * dt), log.q.append(q), log.action.append(q), log.wrench.append(w)
    m = motion_quality(log)
    assert m["left"]["jerk_rms_rad_s3"] == 0.0
    assert m["right"]["jerk_max_rad_s3"] == pytest.approx(6.0) and m["right"]["command_jerk_max_rad_s3"] == \
        pytest.approx(6.0)
    assert m["left"]["force_peak_n"] == pytest.approx(5.0)
    assert m["left"]["fx_rel_peak_n"] == pytest.approx(3.0)
    assert m["right"]["force_peak_n"] == pytest.approx(4.0)
    assert m["right"]["torque_peak_nm"] == pytest.approx(0.5)


def test_grasp_tracking_against_hand_values():
    """Slope 1: the first grasp lands where the object is (offset included); slope 0: one place whatever the
    scene; fewer than 3 episodes or no spread: no slope."""
    from ate_policy.evaluation import grasp_lines, grasp_tracking

    objs = [(0.30, 0.25), (0.33, 0.22), (0.35, 0.27), (0.31, 0.29)]

    def ep(obj, tcp):
        return {"first_close": {"left": {"object": "lid", "tcp_m": [*tcp, 0.1], "object_m": [*obj, 0.07]}}}

    seeing = grasp_tracking([ep(o, (o[0] + 0.01, o[1])) for o in objs])["left"]
    assert seeing["slope_xy"] == [pytest.approx(1.0), pytest.approx(1.0)] and seeing["object"] == "lid"
    assert seeing["miss_rms_m"] == pytest.approx(0.01) and seeing["episodes"] == 4
    blind = grasp_tracking([ep(o, (0.33, 0.25)) for o in objs] + [{"first_close": {}}])["left"]
    assert blind["slope_xy"] == [0.0, 0.0] and blind["episodes"] == 4
    half = grasp_tracking([ep(o, (0.33 + 0.5 * (o[0] - 0.33), o[1])) for o in objs])["left"]
    assert half["slope_xy"][0] == pytest.approx(0.5)
    assert grasp_tracking([ep(o, o) for o in objs[:2]])["left"]["slope_xy"] == [None, None]
    assert grasp_tracking([{"first_close": {}}]) == {}
    # what eval prints: the slope where there is one, else why not (a one-episode replay check)
    assert grasp_lines({"left": seeing}) == [
        "first grasp (left arm, lid) follows the object with slope x 1.00 y 1.00 (1 sees it, 0 blind), RMS miss 1.0 cm"]
    one = grasp_lines(grasp_tracking([ep(objs[0], objs[0])]))
    assert one == ["first grasp (left arm, lid): RMS miss 0.0 cm over 1 episode(s) (the tracking slope needs >= 3 "
                   "episodes with the object in different places)"]


def test_eval_input_errors_are_clear(home_ckpt, tmp_path):
    task = load_task("cook_bun", {"checkpoint": str(tmp_path / "missing")})
    with pytest.raises(UserError, match="not found"):
        evaluate(task, episodes=1, output=tmp_path / "o", progress=False)
    with pytest.raises(UserError, match="episodes"):
        evaluate(task, episodes=0, output=tmp_path / "o", progress=False)
    with pytest.raises(UserError, match="task 'toaster' not found"):
        load_task("toaster")
    assert main(["eval", "--task", "toaster", "--checkpoint", str(home_ckpt)]) == 2
