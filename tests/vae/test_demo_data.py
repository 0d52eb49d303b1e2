"""`ate_policy demo-data`: real LeRobot v3.0 datasets with the data contract, deterministic in the seed."""

import numpy as np
import pytest

from ate_description import contract
from ate_policy.data.demo import DemoSpec, write_demo_data
from ate_description.errors import UserError


def _actions(root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/x", root=root)
    return np.asarray(ds.hf_dataset.with_format("numpy")["action"])


def test_dual_arm_dataset_follows_the_data_contract(demo_data):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/demo_dual", root=demo_data["adaptation"])
    assert ds.meta.fps == contract.FPS and ds.meta.robot_type == contract.ROBOT_TYPE
    assert ds.num_episodes == 4 and ds.num_frames == 4 * 40
    f = ds.meta.features
    assert f["observation.state"]["names"] == contract.STATE_NAMES == f["action"]["names"]
    assert f["observation.effort"]["shape"] == (12,)
    assert f["observation.capture_time"]["names"] == list(contract.CAPTURE_STREAMS)
    assert set(ds.meta.video_keys) == set(contract.IMAGE_KEYS)
    item = ds[5]
    assert item["observation.state"].shape == (16,) and item["action"].shape == (16,)
    for key in contract.IMAGE_KEYS:
        assert item[key].shape == (3, 24, 32)
    assert item["task"].startswith("cook the bun")


def test_trajectories_are_smooth_and_inside_the_limits(demo_data):
    a = _actions(demo_data["adaptation"])
    lim = np.array(contract.JOINT_LIMITS_RAD)
    speed = np.array(contract.JOINT_MAX_SPEED_RAD_S)
    for arm in contract.ARMS:
        sl = contract.arm_slice(arm)
        q = a[:, sl][:, :7]
        assert (np.abs(q) < lim).all()
        # within one episode, no step exceeds the joint speed limit
        steps = np.abs(np.diff(q[:40], axis=0))
        assert (steps < speed * contract.PERIOD_S).all()
        g = a[:, sl][:, 7]
        assert g.min() >= 0.0 and g.max() <= 1.0


def test_pretraining_dataset_is_another_embodiment(demo_data):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/demo_pretrain", root=demo_data["pretrain"])
    assert ds.meta.features["action"]["shape"] == (7,) and ds.meta.fps == 10 and ds.num_episodes == 8


def test_deterministic_in_the_seed(tmp_path):
    spec = DemoSpec(episodes=1, frames=10, pretrain_episodes=1, pretrain_frames=10, image_hw=(24, 32), seed=3)
    a = write_demo_data(tmp_path / "a", spec)
    b = write_demo_data(tmp_path / "b", spec)
    c = write_demo_data(tmp_path / "c", DemoSpec(**{**spec.__dict__, "seed": 4}))
    assert np.array_equal(_actions(a["adaptation"]), _actions(b["adaptation"]))
    assert np.array_equal(_actions(a["pretrain"]), _actions(b["pretrain"]))
    assert not np.array_equal(_actions(a["adaptation"]), _actions(c["adaptation"]))
    with pytest.raises(UserError, match="--overwrite"):
        write_demo_data(tmp_path / "a", spec)


def test_too_small_images_are_refused_before_the_encoder_crashes(tmp_path):
    spec = DemoSpec(episodes=1, frames=4, pretrain_episodes=1, pretrain_frames=4, image_hw=(24, 24))
    with pytest.raises(UserError, match="too small"):
        write_demo_data(tmp_path / "x", spec)
    assert not (tmp_path / "x").exists()
