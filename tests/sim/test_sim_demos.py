"""``ate_policy demo-data --sim``: scripted sim episodes land in a LeRobot v3.0 dataset with the data contract."""

import numpy as np
import pytest

from ate_description import contract


@pytest.mark.slow
def test_sim_demo_dataset_follows_the_data_contract(tmp_path):
    pytest.importorskip("lerobot")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from ate_policy.data.sim_demos import record_sim_demos

    summary = record_sim_demos("cook_bun", tmp_path, episodes=1, image_hw=(48, 64), seed=0)
    assert len(summary["episodes"]) == 1 and summary["failed_seeds"] == []
    ds = LeRobotDataset("local/sim_cook_bun", root=summary["root"])
    assert ds.meta.total_episodes == 1 and ds.fps == contract.FPS
    assert ds.meta.robot_type == contract.ROBOT_TYPE
    for key, feat in contract.features(image_shape=(48, 64, 3)).items():
        assert tuple(ds.meta.features[key]["shape"]) == tuple(feat["shape"]), key
    n = ds.meta.total_frames
    assert n == summary["episodes"][0]["frames"] > 200
    state = np.stack([ds.hf_dataset[i][contract.STATE_KEY].numpy() for i in range(0, n, 10)])
    action = np.stack([ds.hf_dataset[i][contract.ACTION_KEY].numpy() for i in range(0, n, 10)])
    lim = np.asarray(contract.JOINT_LIMITS_RAD)
    for arm in contract.ARMS:
        s = contract.arm_slice(arm)
        assert np.all(np.abs(state[:, s][:, :7]) <= lim + 1e-4)
        assert np.all((state[:, s.stop - 1] >= 0) & (state[:, s.stop - 1] <= 1))  # gripper opening fraction
        assert np.all((action[:, s.stop - 1] >= 0) & (action[:, s.stop - 1] <= 1))
    # Both grippers closed at some point (the right one on the bun, the left one on the lid and bun).
    assert action[:, 7].min() == 0.0 and action[:, 15].min() == 0.0
    capture = np.stack([ds.hf_dataset[i][contract.CAPTURE_TIME_KEY].numpy() for i in range(n)])
    assert np.all(np.diff(capture[:, 0]) > 0)  # sim-time stamps, one tick apart
    np.testing.assert_allclose(np.diff(capture[:, 0]), contract.PERIOD_S, atol=1e-3)
    item = ds[n // 2]
    for key in contract.IMAGE_KEYS:
        assert tuple(item[key].shape) == (3, 48, 64)
        assert float(item[key].std()) > 0.02  # decoded video shows a scene, not a blank frame
    assert ds.meta.tasks.index[0].startswith("cook the bun")
    # the stored frames are the renderer's (near-lossless video): the first frame of each view as LeRobot decodes
    # it is within 1/255 per pixel of the scene rendered afresh for the same seed (crf 30 would be ~4.6/255 off)
    from ate_sim import scenes
    from ate_sim.cell import SimCell

    cell = SimCell("cook_bun", seed=0)
    try:
        cell.reset(0)
        cell.step(scenes.SETTLE_S)
        first = ds[0]
        for cam in contract.CAMERA_NAMES:
            stored = first[f"observation.images.{cam}"].numpy().transpose(1, 2, 0) * 255
            assert np.abs(stored - cell.render(cam, (48, 64))).mean() < 1.0, cam
    finally:
        cell.close()


def test_unknown_sim_task_is_a_clear_error(tmp_path):
    from ate_policy.data.sim_demos import record_sim_demos
    from ate_description.errors import UserError

    with pytest.raises(UserError, match="no scripted sim task 'make_tea'"):
        record_sim_demos("make_tea", tmp_path, episodes=1)


@pytest.mark.parametrize("hw", [(8, 24), (600, 1000)])
def test_image_sizes_the_video_encoder_or_the_cameras_cannot_take_are_refused(tmp_path, hw):
    from ate_policy.data.sim_demos import record_sim_demos
    from ate_description.errors import UserError

    with pytest.raises(UserError, match="image size"):
        record_sim_demos("cook_bun", tmp_path, episodes=1, image_hw=hw)


@pytest.mark.parametrize("task, cm, match", [("lift_lid", 2.0, "no handover"), ("cook_bun", 5.0, "must lie in")])
def test_a_handover_jitter_a_task_cannot_take_is_refused_before_recording(tmp_path, task, cm, match):
    from ate_description.errors import UserError
    from ate_policy.data.demo import main

    with pytest.raises(UserError, match=match):
        main(["--sim", task, "--episodes", "1", "--output", str(tmp_path), "--handover-jitter-cm", str(cm)])
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_handover_jitter_is_kept_per_episode_and_a_dataset_resumes_only_with_its_own(tmp_path):
    from ate_description.errors import UserError
    from ate_policy.data.sim_demos import durable_sidecar, record_sim_demos

    summary = record_sim_demos("cook_bun", tmp_path, episodes=1, image_hw=(48, 64), seed=0, handover_jitter_m=0.02)
    assert [r["handover_jitter_m"] for r in durable_sidecar(summary["root"]).values()] == [0.02]
    with pytest.raises(UserError, match="handover jitter of 2 cm, not 0 cm"):
        record_sim_demos("cook_bun", tmp_path, episodes=2, image_hw=(48, 64), seed=0)
    assert len(durable_sidecar(summary["root"])) == 1      # nothing was added or lost


@pytest.mark.slow
def test_sim_video_writes_the_three_views_as_mp4_and_frames(tmp_path):
    import av

    from ate_policy.data.sim_demos import write_episode_video

    res = write_episode_video("pick_bun", tmp_path / "ep.mp4", seed=0, image_hw=(48, 64),
                              frames_dir=tmp_path / "frames", every=20)
    assert res["success"] and res["frames"] > 10
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == res["frames"]
    with av.open(str(tmp_path / "ep.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == res["frames"]
    assert frames[0].shape == (48, 3 * 64, 3)  # cam_high | left wrist | right wrist
