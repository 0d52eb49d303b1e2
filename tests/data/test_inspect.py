"""Dataset audit (`ate_policy inspect`): numbers checked against episodes built with known defects."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ate_data_testkit import effort_at, image_at

from ate_description import contract
from ate_policy import cli
from ate_policy.data.inspect import audit
from ate_policy.recording.recorder import EpisodeRecorder

P = contract.PERIOD_S
T0 = 500.0


def defective_episode(rec, n=30):
    """A camera stall on ticks 10..14, a joint beyond its limit on ticks 20-21, one joint jump, two grasps."""
    rec.start_episode()
    lim_j2 = contract.JOINT_LIMITS_RAD[1]
    for k in range(n):
        t = T0 + k * P
        q = np.zeros(16, np.float32)
        q[1] = lim_j2 + 0.1 if k in (20, 21) else 0.2            # left_joint2 beyond +130 deg
        q[10] = 0.6 if k >= 25 else 0.0                          # right_joint3: 0.6 rad in one tick = 12 rad/s
        g = 0.0 if (5 <= k < 10 or 15 <= k < 18) else 1.0        # left gripper closes twice
        q[7], q[15] = g, 1.0
        rec.put_state(q, effort_at(t), t - 0.002)
        for ci, cam in enumerate(contract.CAMERA_NAMES):
            if not (cam == "cam_high" and 10 <= k <= 14):
                rec.put_image(cam, image_at(k, ci), t - 0.004)
        rec.tick(q, t)
    return rec.stop_and_save()


@pytest.fixture
def audited(small_recorder_cfg):
    with EpisodeRecorder(small_recorder_cfg) as rec:
        defective_episode(rec)
    return small_recorder_cfg.root


def test_audit_finds_stale_ticks_outliers_and_gripper_use(audited):
    rep = audit(audited)
    assert rep["total_episodes"] == 1 and rep["fps"] == contract.FPS
    ep = rep["episodes"][0]
    assert ep["frames"] == 30 and ep["duration_s"] == pytest.approx(1.5)
    cam = ep["streams"]["cam_high"]
    # stall: frame 9 (captured at 9P - 4 ms) is reused on ticks 10..14 -> ages 54, 104, 154, 204, 254 ms
    assert cam["stale_ticks"] == 5 and cam["repeated"] == 5
    assert cam["max_ms"] == pytest.approx(254.0, abs=0.01)
    assert cam["p50_ms"] == pytest.approx(4.0, abs=0.01)
    assert ep["streams"]["state"]["max_ms"] == pytest.approx(2.0, abs=0.01)
    assert ep["stale_ticks"] == 5
    assert ep["state_limit_outliers"] == 2 and ep["action_limit_outliers"] == 2
    assert ep["velocity_outliers"] == 3  # into and out of the limit excursion (1.98 rad/tick) and the jump
    assert ep["gripper"]["left"]["closes"] == 2 and ep["gripper"]["right"]["closes"] == 0
    assert ep["gripper"]["left"]["closed_share"] == pytest.approx(8 / 30)
    assert ep["dropped_frames"] == 0 and ep["flagged"] is True


def test_inspect_command_prints_a_table_and_writes_plots_beside_the_dataset(audited, capsys, tmp_path):
    assert cli.main(["inspect", str(audited)]) == 0
    out = capsys.readouterr().out
    assert "cam_high p50/p95/max ms" in out and "FLAGGED" in out
    folder = tmp_path / "ds_inspect"
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == ["joints_episode_000.png", "sync_error_hist.png"]
    for p in folder.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    saved = json.loads((folder / "audit.json").read_text())
    assert saved["episodes"][0]["streams"]["cam_high"]["stale_ticks"] == 5
    assert cli.main(["inspect", str(audited), "--strict", "--no-plots"]) == 1


def test_inspect_of_something_that_is_not_a_dataset_is_one_clear_line(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path)]) == 2
    assert "not a LeRobot dataset" in capsys.readouterr().err


def _lerobot_dataset_two_episodes_in_one_mp4(root, n=12):
    """Written with LeRobot's own API (no project code): both episodes share each camera's MP4."""
    from lerobot.configs import RGBEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from ate_data_testkit import H, TASK, W

    ds = LeRobotDataset.create(repo_id="local/two", fps=contract.FPS, root=root, robot_type=contract.ROBOT_TYPE,
                               features=contract.features(image_shape=(H, W, 3)), use_videos=True,
                               rgb_encoder=RGBEncoderConfig(vcodec="h264", preset="ultrafast"),
                               streaming_encoding=True)
    for ep in range(2):
        for k in range(n):
            frame = {contract.STATE_KEY: np.zeros(16, np.float32), contract.ACTION_KEY: np.zeros(16, np.float32),
                     contract.EFFORT_KEY: np.zeros(12, np.float32),
                     contract.CAPTURE_TIME_KEY: np.full(4, k * P, np.float32), "task": TASK}
            for ci, key in enumerate(contract.IMAGE_KEYS):
                frame[key] = image_at(k + 20 * ep, ci)
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    return LeRobotDatasetMetadata("local/two", root=root)


def _drop_packet(path, t_drop_s: float) -> None:
    """Remux an MP4 without the packet presented at t_drop_s (a frame deleted from the video)."""
    import av

    tmp = path.with_name("tmp_" + path.name)
    with av.open(str(path)) as src, av.open(str(tmp), "w") as dst:
        s = src.streams.video[0]
        o = dst.add_stream_from_template(s)
        dropped = 0
        for p in src.demux(s):
            if p.dts is None:
                continue
            if abs(float(p.pts * s.time_base) - t_drop_s) < 1e-3:
                dropped += 1
                continue
            p.stream = o
            dst.mux(p)
    assert dropped == 1
    tmp.replace(path)


def test_inspect_flags_a_video_that_lost_a_frame_inside_a_multi_episode_mp4(tmp_path, capsys):
    root = tmp_path / "two"
    meta = _lerobot_dataset_two_episodes_in_one_mp4(root)
    key = contract.IMAGE_KEYS[0]
    ep1 = meta.episodes[1]
    assert ep1[f"videos/{key}/file_index"] == meta.episodes[0][f"videos/{key}/file_index"]  # one shared MP4
    assert cli.main(["inspect", str(root), "--strict", "--no-plots"]) == 0   # intact: every check passes
    # delete episode 1's 6th frame (an inter frame) from the shared cam_high MP4
    path = root / meta.video_path.format(video_key=key, chunk_index=ep1[f"videos/{key}/chunk_index"],
                                         file_index=ep1[f"videos/{key}/file_index"])
    intact = path.read_bytes()
    _drop_packet(path, ep1[f"videos/{key}/from_timestamp"] + 5 * P)
    capsys.readouterr()
    assert cli.main(["inspect", str(root), "--strict", "--no-plots"]) == 1
    captured = capsys.readouterr()
    assert "episode 1 cam_high: video 11 frames in the video for 12 rows" in captured.err
    assert "BAD cam_high:11/12" in captured.out
    rep = audit(root)
    assert rep["episodes"][0]["video_problems"] == {}                     # the other episode in that file is fine
    assert rep["episodes"][1]["videos"]["cam_high"]["frames"] == 11
    assert rep["episodes"][1]["videos"]["cam_left_wrist"]["ok"]
    path.write_bytes(intact)
    rep = audit(root)
    assert all(v["ok"] and v["frames"] == 12 and v["codec"] == "h264" and v["pix_fmt"] == "yuv420p"
               and v["first_ok"] and v["last_ok"] for e in rep["episodes"] for v in e["videos"].values())
