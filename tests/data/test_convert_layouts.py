"""Any lab's topic layout: joints picked by name from any JointState; several features on one topic."""

from __future__ import annotations

import numpy as np
import pytest
from ate_data_testkit import H, TASK, W, state_at, write_bag

from ate_description import contract
from ate_policy.data.convert import convert_bags, load_config

P = contract.PERIOD_S


def cfg(**over):
    return load_config({"task": TASK, "image_height": H, "image_width": W, **over})


def load(root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("local/ate_dual_bags", root=root)


def newest(times: np.ndarray, t: float) -> int:
    return int(np.flatnonzero(times <= t + 1e-9)[-1])


def ticks_of(cap: dict, state_topics: list[str]) -> np.ndarray:
    """The tick rule stated independently: first state sample once every topic delivered, then every period."""
    start = max(v[0] for v in cap.values())
    ref = np.sort(np.concatenate([cap[t] for t in state_topics]))
    t0 = ref[ref >= start][0]
    end = max(v[-1] for v in cap.values())
    return t0 + np.arange(int(np.floor((end - t0) / P + 1e-9)) + 1) * P


def check_values(ds, ticks, state_cap: dict[str, np.ndarray], cmd_cap: dict[str, np.ndarray]):
    """Each tick's 16 state / action values: the newest sample of the topic that carries that arm."""
    assert len(ds) == len(ticks)
    for k in (0, 9, len(ticks) - 1):
        item = ds[k]
        for arm in contract.ARMS:
            sl = contract.arm_slice(arm)
            ts = state_cap[arm][newest(state_cap[arm], ticks[k])]
            tc = cmd_cap[arm][newest(cmd_cap[arm], ticks[k])]
            np.testing.assert_allclose(item[contract.STATE_KEY].numpy()[sl], state_at(ts)[sl], atol=1e-6)
            np.testing.assert_allclose(item[contract.ACTION_KEY].numpy()[sl], state_at(tc + 0.05)[sl], atol=1e-6)


def test_gripper_carried_as_an_8th_joint_of_the_arm_message(tmp_path):
    """One controller node publishes arm and gripper together: gripper_* features point at the arm topics."""
    bag = tmp_path / "bag"
    cap = write_bag(bag, "mcap", seconds=1.5, layout="gripper_in_arm", seed=5)
    arms = {a: f"/{a}/joint_states" for a in contract.ARMS}
    cmds = {a: f"/{a}/joint_command" for a in contract.ARMS}
    out = convert_bags([bag], tmp_path / "ds", cfg(topics={"joint_states": arms, "gripper_states": arms,
                                                           "joint_commands": cmds, "gripper_commands": cmds}))
    ds = load(out)
    ticks = ticks_of(cap, list(arms.values()))
    check_values(ds, ticks, {a: cap[arms[a]] for a in arms}, {a: cap[cmds[a]] for a in cmds})
    # the gripper column is the 8th joint, not a copy of an arm joint
    g = ds[3][contract.STATE_KEY].numpy()[7]
    assert 0.0 <= g <= 1.0 and g != pytest.approx(ds[3][contract.STATE_KEY].numpy()[6])


def test_both_arms_in_one_message_with_another_labs_joint_names(tmp_path):
    """One /joint_states and one /joint_command for both arms and grippers, joints named l_j1.., r_grip."""
    rename = {n: n.replace("left_joint", "l_j").replace("right_joint", "r_j").replace("left_gripper", "l_grip")
              .replace("right_gripper", "r_grip") for n in contract.STATE_NAMES}
    bag = tmp_path / "bag"
    cap = write_bag(bag, "sqlite3", seconds=1.5, layout="combined", rename=rename, seed=6)
    both = {a: "/joint_states" for a in contract.ARMS}
    cmd = {a: "/joint_command" for a in contract.ARMS}
    out = convert_bags([bag], tmp_path / "ds", cfg(topics={"joint_states": both, "gripper_states": both,
                                                           "joint_commands": cmd, "gripper_commands": cmd},
                                                   joint_names=rename))
    ds = load(out)
    ticks = ticks_of(cap, ["/joint_states"])
    check_values(ds, ticks, {a: cap["/joint_states"] for a in contract.ARMS},
                 {a: cap["/joint_command"] for a in contract.ARMS})
    # right arm's values are the right arm's, not the left's (the same message feeds both features)
    item = ds[4][contract.STATE_KEY].numpy()
    assert not np.allclose(item[:8], item[8:])


def test_a_joint_missing_from_the_message_is_named_not_guessed_by_position(tmp_path):
    """Another lab's names without a name map: a clear error naming what is missing, never values taken by
    position (the old fallback put whatever came first into our columns)."""
    from ate_description.errors import UserError

    rename = {n: n.upper() for n in contract.STATE_NAMES}
    bag = tmp_path / "bag"
    write_bag(bag, "mcap", seconds=0.5, rename=rename)
    with pytest.raises(UserError, match=r"needs joints \['left_joint1'.*joint_names"):
        convert_bags([bag], tmp_path / "ds", cfg())
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()
