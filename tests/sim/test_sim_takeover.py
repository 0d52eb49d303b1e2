"""DAgger-style takeover demonstrations (``ate_policy demo-data --sim cook_bun --takeover-from CHECKPOINT``): a policy
runs through the eval path until the task's takeover point, then the scripted demonstrator finishes the task from
the state the policy left, and only that part is recorded."""

from __future__ import annotations

import numpy as np
import pytest

from ate_description import contract

pytest.importorskip("lerobot")

HW = (48, 64)


class _Cell:
    def __init__(self):
        self.sim_time = 0.0


def _grips(left: float, right: float = 1.0) -> np.ndarray:
    a = np.zeros(contract.ACTION_DIM)
    for arm, g in (("left", left), ("right", right)):
        a[contract.arm_slice(arm).start + contract.N_ARM_JOINTS] = g
    return a


def test_the_hand_over_rule_waits_for_the_stages_then_for_its_delay_or_a_closing_gripper():
    from ate_policy.data.sim_takeover import HandOver, takeover_delay_s

    cell, stages = _Cell(), ("bun on the left plate", "lid set down")
    rule = HandOver(stages, delay_s=2.0)
    # a gripper closing before the stages were reached does not count
    assert not rule(cell, {stages[0]: True, stages[1]: False}, _grips(1.0))
    assert not rule(cell, {stages[0]: True, stages[1]: False}, _grips(0.0))
    cell.sim_time = 5.0
    assert not rule(cell, dict.fromkeys(stages, True), _grips(1.0))     # reached at 5 s: the delay starts
    cell.sim_time = 6.9
    assert not rule(cell, dict.fromkeys(stages, True), None)            # no target this tick
    cell.sim_time = 7.0
    assert rule(cell, dict.fromkeys(stages, True), _grips(1.0))         # 2 s later
    # the policy closing a gripper (either arm) after the stages hands over at once
    for closing in (_grips(0.0), _grips(1.0, 0.2)):
        rule, cell.sim_time = HandOver(stages, delay_s=10.0), 5.0
        assert not rule(cell, dict.fromkeys(stages, True), _grips(1.0))
        cell.sim_time = 5.05
        assert rule(cell, dict.fromkeys(stages, True), closing)
    # per-seed delays: reproducible, spread over [0, max]
    delays = [takeover_delay_s(s, 4.0) for s in range(200)]
    assert delays == [takeover_delay_s(s, 4.0) for s in range(200)]
    assert 0.0 <= min(delays) < 0.5 and 3.5 < max(delays) <= 4.0 and takeover_delay_s(3, 0.0) == 0.0


def test_a_task_without_a_takeover_script_and_a_missing_checkpoint_are_refused(tmp_path):
    from ate_description.errors import UserError
    from ate_policy.data.sim_takeover import record_takeover_demos
    from ate_sim.cell import SimCell
    from ate_sim.demonstrator import take_over

    with pytest.raises(UserError, match="no takeover script for sim task 'lift_lid'"):
        record_takeover_demos("lift_lid", tmp_path / "ckpt", tmp_path, episodes=1)
    with pytest.raises(UserError, match="no checkpoint at"):
        record_takeover_demos("cook_bun", tmp_path / "nowhere", tmp_path, episodes=1)
    cell = SimCell(task="lift_lid", seed=0, clock="lockstep")
    try:
        with pytest.raises(ValueError, match="no takeover script for 'lift_lid'"):
            take_over(cell)
    finally:
        cell.close()
    from ate_policy.data.demo import main

    with pytest.raises(UserError, match="--takeover-from needs --sim"):
        main(["--takeover-from", str(tmp_path), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


class _HoldsHome:
    """Targets at home for every tick: never reaches a takeover stage."""
    image_hw = HW

    def __call__(self, obs, rtc=None):
        from ate_sim.cell import HOME_Q

        return np.tile(np.r_[HOME_Q, 0.9, HOME_Q, 0.9], (10, 1))


def test_skipped_seeds_are_kept_beside_the_dataset_and_a_resume_goes_on_after_them(tmp_path):
    from ate_description.errors import UserError
    from ate_policy.data.sim_takeover import read_skips, record_takeover_demos, skip_log

    run = dict(policy=_HoldsHome(), progress=False, policy_time_limit_s=0.5)
    with pytest.raises(UserError, match="only 0 of 1 takeover episodes in 2 attempts"):
        record_takeover_demos("cook_bun", None, tmp_path, episodes=1, seed=5, max_attempts=2, **run)
    root = tmp_path / "takeover_cook_bun"
    skips = read_skips(root)
    assert sorted(skips) == [5, 6] and all(why.startswith("not reached (time limit reached") for why in skips.values())
    # a second call goes on from the seed after the last one tried, and its refusal lists the earlier skips too
    with pytest.raises(UserError, match=r"in 1 attempts \(skipped: \{5: .*6: .*7: "):
        record_takeover_demos("cook_bun", None, tmp_path, episodes=1, seed=5, max_attempts=1, **run)
    assert sorted(read_skips(root)) == [5, 6, 7]
    # --overwrite starts afresh: the log goes with the dataset
    with pytest.raises(UserError, match="in 1 attempts"):
        record_takeover_demos("cook_bun", None, tmp_path, episodes=1, seed=5, max_attempts=1, overwrite=True, **run)
    assert sorted(read_skips(root)) == [5]
    # a damaged log is refused with its line, not silently ignored
    skip_log(root).write_text('{"seed": 5, "why": "x"}\nnot json\n')
    with pytest.raises(UserError, match=r"skipped.jsonl:2: not a skipped-seed record"):
        read_skips(root)


@pytest.mark.slow
def test_the_demonstrator_takes_over_from_where_the_policy_left_the_cell_and_only_that_part_is_recorded(tmp_path):
    """The policy: the seed's own demonstration replayed through the eval path (runtime, safety layer). The
    takeover episode must start where that replay stood when it handed over (the arms mid-task, not at home),
    end with the task done, and be shorter than the whole demonstration."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from ate_policy.data.sim_demos import record_sim_demos
    from ate_policy.data.sim_takeover import record_takeover_demos
    from ate_policy.runtime.replay import ReplayPolicy
    from ate_sim.cell import HOME_Q

    demos = record_sim_demos("cook_bun", tmp_path / "demos", 1, HW, seed=0)
    demo = LeRobotDataset("local/sim_cook_bun", root=demos["root"])
    demo_states = np.stack([demo.hf_dataset[i][contract.STATE_KEY].numpy() for i in range(demo.num_frames)])

    policy = ReplayPolicy.from_dataset(demos["root"], mode="matched")
    s = record_takeover_demos("cook_bun", None, tmp_path / "tk", episodes=1, seed=0, max_delay_s=1.0,
                              policy=policy, progress=False)
    assert s["skipped"] == {} and s["attempts"] == 1
    [ep] = s["episodes"]
    assert ep["seed"] == 0
    # the replay reached the bun on the plate and the lid set down a few seconds in (the demonstrator's first
    # phase), then handed over within the delay
    assert 4.0 < ep["takeover_s"] < 0.8 * demos["episodes"][0]["frames"] * contract.PERIOD_S
    ds = LeRobotDataset("local/sim_cook_bun", root=s["root"])   # LeRobot's own loader
    assert ds.num_episodes == 1 and 100 < ds.num_frames < demo.num_frames
    first = ds.hf_dataset[0][contract.STATE_KEY].numpy()
    left = contract.arm_slice("left")
    # the first frame is the replay's state at the handover: mid-task (left arm far from home) and on the
    # demonstration's path near the handover time (the replay follows it a few ticks behind)
    assert np.max(np.abs(first[left.start:left.start + 7] - HOME_Q)) > 0.2
    k = int(round(ep["takeover_s"] / contract.PERIOD_S))
    near = demo_states[max(0, k - 15):k + 5]
    assert np.min(np.max(np.abs(near[:, :contract.N_ARM_JOINTS] - first[:contract.N_ARM_JOINTS]), axis=1)) < 0.05
    # the recorded actions are the demonstrator's: within the safety layer's step cap of each other
    from ate_description.limits import load_safety

    actions = np.stack([ds.hf_dataset[i][contract.ACTION_KEY].numpy() for i in range(ds.num_frames)])
    joints = [i for a in contract.ARMS for i in range(contract.arm_slice(a).start,
                                                       contract.arm_slice(a).start + contract.N_ARM_JOINTS)]
    assert np.max(np.abs(np.diff(actions[:, joints], axis=0))) <= load_safety().max_step_rad + 1e-6
