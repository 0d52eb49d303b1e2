"""rosbag2 -> LeRobot conversion: real bags written with `rosbags` (MCAP and sqlite3, real message types)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ate_data_testkit import H, TASK, W, bag_image_at, state_at, write_bag

from ate_description import contract
from ate_policy import cli
from ate_policy.data import convert
from ate_policy.data.convert import convert_bags, load_config
from ate_description.errors import UserError
from ate_policy.recording import durable

P = contract.PERIOD_S


def cfg(**over):
    return load_config({"task": TASK, "image_height": H, "image_width": W, **over})


def load(root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("local/ate_dual_bags", root=root)


def expected_ticks(cap: dict) -> np.ndarray:
    """Independent statement of the tick rule: start at the first state sample once every topic delivered."""
    start = max(v[0] for v in cap.values())
    state_topics = [f"/{a}/joint_states" for a in contract.ARMS] + [f"/{a}/gripper/state" for a in contract.ARMS]
    ref = np.sort(np.concatenate([cap[t] for t in state_topics]))
    t0 = ref[ref >= start][0]
    end = max(v[-1] for v in cap.values())  # one bag = one episode, up to its last message
    return t0 + np.arange(int(np.floor((end - t0) / P + 1e-9)) + 1) * P


def newest(times: np.ndarray, t: float) -> int:
    return int(np.flatnonzero(times <= t + 1e-9)[-1])


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_converts_to_a_loadable_dataset_with_each_tick_taking_the_newest_sample(tmp_path, storage):
    bag = tmp_path / f"ep_{storage}"
    # cam_high compressed (PNG), cam_right_wrist bgr8, images at 2x the dataset size (resized on the way)
    cap = write_bag(bag, storage, seconds=2.0, compressed=("cam_high",), image_hw=(2 * H, 2 * W), seed=1)
    out = convert_bags([bag], tmp_path / "ds", cfg())
    ds = load(out)
    ticks = expected_ticks(cap)
    assert ds.num_episodes == 1 and len(ds) == len(ticks) and ds.fps == contract.FPS
    t0 = ticks[0]  # stored capture times are relative to the first tick
    jl = cap["/left/joint_states"]
    cams = {c: cap[f"/cameras/{c}/image_raw"] for c in contract.CAMERA_NAMES}
    for k in (0, 7, len(ticks) - 1):
        item = ds[k]
        tick = ticks[k]
        i = newest(jl, tick)
        np.testing.assert_allclose(item[contract.STATE_KEY].numpy()[:7], state_at(jl[i])[:7], atol=1e-6)
        # real capture time of the chosen camera frame, relative to the first tick
        for ci, c in enumerate(contract.CAMERA_NAMES):
            j = newest(cams[c], tick)
            assert item[contract.CAPTURE_TIME_KEY].numpy()[1 + ci] == pytest.approx(cams[c][j] - t0, abs=2e-5)
            img = item[f"observation.images.{c}"].numpy().transpose(1, 2, 0) * 255
            want = bag_image_at(j, ci).astype(float)
            assert np.abs(img.mean(axis=(0, 1)) - want.mean(axis=(0, 1))).max() < 8, (c, k)
        assert item["task"] == TASK
    # the action is the command topic (commanded target 50 ms ahead), not the state
    cmd = cap["/right/joint_command"]
    i = newest(cmd, ticks[5])
    np.testing.assert_allclose(ds[5][contract.ACTION_KEY].numpy()[8:15], state_at(cmd[i] + 0.05)[8:15], atol=1e-6)
    side = durable.read_sidecar(out)[0]
    assert side["stale_ticks"] == 0 and not side["flagged"] and side["source"] == "bag"


def test_mcap_and_sqlite3_bags_of_the_same_recording_give_the_same_frames(tmp_path):
    for storage in ("mcap", "sqlite3"):
        write_bag(tmp_path / storage, storage, seconds=1.5, seed=4)
    a = load(convert_bags([tmp_path / "mcap"], tmp_path / "a", cfg()))
    b = load(convert_bags([tmp_path / "sqlite3"], tmp_path / "b", cfg()))
    assert len(a) == len(b)
    cols = [contract.STATE_KEY, contract.ACTION_KEY, contract.EFFORT_KEY, contract.CAPTURE_TIME_KEY]
    for k in range(0, len(a), 5):
        for c in cols:
            np.testing.assert_array_equal(a[k][c].numpy(), b[k][c].numpy())


def test_a_dropped_camera_stretch_is_counted_as_stale_ticks_and_flags_the_episode(tmp_path):
    bag = tmp_path / "bag"
    cap = write_bag(bag, "mcap", seconds=3.0, drop=("cam_left_wrist", 1.0, 1.6), jitter_ms=4.0, seed=2)
    out = convert_bags([bag], tmp_path / "ds", cfg())
    rec = durable.read_sidecar(out)[0]
    ticks = expected_ticks(cap)
    left = cap["/cameras/cam_left_wrist/image_raw"]
    ages = np.array([t - left[newest(left, t)] for t in ticks])
    want_stale = int(np.sum(ages > 0.05 + 1e-9))
    assert want_stale >= 8  # a 0.6 s hole at 20 Hz
    assert rec["streams"]["cam_left_wrist"]["stale_ticks"] == want_stale
    assert rec["stale_ticks"] == want_stale and rec["flagged"]
    assert rec["streams"]["cam_left_wrist"]["max_ms"] == pytest.approx(ages.max() * 1e3, abs=0.05)
    for other in ("state", "cam_high", "cam_right_wrist"):
        assert rec["streams"][other]["stale_ticks"] == 0
    # dropped-by-policy variant: nothing converted -> clear error
    with pytest.raises(UserError, match="no episode could be converted"):
        convert_bags([bag], tmp_path / "ds2", cfg(flagged_policy="drop"))


def test_episode_boundaries_from_a_bool_topic_and_from_time_ranges(tmp_path):
    bag = tmp_path / "bag"
    write_bag(bag, "mcap", seconds=3.0, markers=[(0.5, True), (1.2, False), (1.6, True), (2.7, False)])
    out = convert_bags([bag], tmp_path / "by_topic", cfg(episodes={"mode": "topic", "topic": "/recording"}))
    ds = load(out)
    lengths = [int(ds.meta.episodes[i]["length"]) for i in range(ds.num_episodes)]
    assert ds.num_episodes == 2 and abs(lengths[0] - 14) <= 1 and abs(lengths[1] - 22) <= 1
    out = convert_bags([bag], tmp_path / "by_range",
                       cfg(episodes={"mode": "ranges", "ranges": [[0.2, 1.0], [1.5, 2.5]]}))
    ds = load(out)
    assert ds.num_episodes == 2
    assert all(abs(int(e["length"]) - n) <= 1 for e, n in zip(ds.meta.episodes, (16, 20)))


def test_several_bags_become_several_episodes_and_the_conversion_is_cached(tmp_path, monkeypatch):
    bags = [tmp_path / "b0", tmp_path / "b1"]
    write_bag(bags[0], "mcap", seconds=1.0, seed=0)
    write_bag(bags[1], "sqlite3", seconds=1.5, seed=1)
    out = convert_bags(bags, tmp_path / "ds", cfg())
    assert load(out).num_episodes == 2
    record = json.loads((out / convert.CONVERSION_RECORD).read_text())
    assert record["episodes"] == 2 and len(record["cache_key"]) == 64

    def must_not_run(*a, **k):
        raise AssertionError("cached conversion was redone")

    monkeypatch.setattr(convert, "_write_dataset", must_not_run)
    assert convert_bags(bags, out, cfg()) == out                      # same bags + config: cache hit
    with pytest.raises(AssertionError, match="redone"):
        convert_bags(bags, out, cfg(max_age_ms=60.0))               # config changed: converts again
    monkeypatch.undo()
    with pytest.raises(UserError, match="--overwrite"):
        convert_bags(bags[:1], out, cfg(), overwrite=False)         # other bags, not allowed to replace
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(UserError, match="not a bag conversion"):
        convert_bags(bags, tmp_path / "mine", cfg())


def test_unsynchronised_publisher_clock_is_refused_unless_receive_times_are_used(tmp_path):
    bag = tmp_path / "bag"
    write_bag(bag, "mcap", seconds=1.5, clock_offset_s=0.8)
    with pytest.raises(UserError, match="not synchronised"):
        convert_bags([bag], tmp_path / "ds", cfg())
    out = convert_bags([bag], tmp_path / "ds", cfg(time_source="receive"))
    rec = json.loads((out / convert.CONVERSION_RECORD).read_text())
    assert rec["skew_ms"][str(bag)]["/left/joint_states"] == pytest.approx(-800, abs=10)


def truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_truncated_bag_gives_one_clear_error_line(tmp_path, storage, capsys):
    bag = tmp_path / "bag"
    write_bag(bag, storage, seconds=1.0)
    f = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    truncate(f, 0.5)
    rc = cli.main(["convert", str(bag), "--output", str(tmp_path / "ds"), "--task", TASK])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"bag {bag}" in err and ("truncated" in err or "corrupt" in err)
    assert "Traceback" not in err
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()


def test_missing_topics_and_bad_configs_are_named(tmp_path):
    bag = tmp_path / "bag"
    write_bag(bag, "mcap", seconds=0.5)
    with pytest.raises(UserError, match="/left/js.*not found"):
        convert_bags([bag], tmp_path / "ds", cfg(topics={"joint_states": {"left": "/left/js", "right": "/r"}}))
    with pytest.raises(UserError, match="task must be set"):
        convert_bags([bag], tmp_path / "ds", load_config({}))
    with pytest.raises(UserError, match="time_source"):
        convert_bags([bag], tmp_path / "ds", cfg(time_source="gps"))
    with pytest.raises(UserError, match="does not exist"):
        convert_bags([tmp_path / "nope"], tmp_path / "ds", cfg())


@pytest.mark.slow
def test_train_accepts_bags_and_converts_them_once(tmp_path):
    """`ate_policy train` on rosbag2 bags: converted (cached on content + mapping) into the run, then trained on;
    a second run reuses the conversion instead of converting again."""
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy

    from ate_policy.config import load_yaml
    from ate_policy.policies.tiny import tiny_pi0_patches
    from ate_policy.train import ATETrainConfig, run

    bags = [tmp_path / "ep_0", tmp_path / "ep_1"]
    write_bag(bags[0], "mcap", seconds=1.5, seed=3)
    write_bag(bags[1], "sqlite3", seconds=1.5, seed=4)
    over = {"output_dir": str(tmp_path / "run"), "guidance": {"enable": False},
            "bags": {"paths": [str(b) for b in bags],
                     "convert": {"task": TASK, "image_height": H, "image_width": W}},
            "policy": {"chunk_size": 4}, "steps": 2, "save_every": 2, "batch_size": 4, "num_workers": 0}
    cfg = load_yaml(ATETrainConfig, "train_tiny", over)
    folders = run(cfg, progress=False)
    converted = tmp_path / "run" / "bags_dataset"
    assert load(converted).num_episodes == 2
    record = converted / convert.CONVERSION_RECORD
    stamp = record.stat().st_mtime_ns
    summary = json.loads((folders["policy"] / "summary.json").read_text())
    with tiny_pi0_patches():
        assert PI0Policy.from_pretrained(summary["final_checkpoint"]).config.chunk_size == 4
    # a fresh policy run on the same bags: the conversion is reused, not redone
    shutil.rmtree(folders["policy"])
    run(load_yaml(ATETrainConfig, "train_tiny", over), progress=False)
    assert record.stat().st_mtime_ns == stamp
    assert (folders["policy"] / "summary.json").exists()


def test_train_with_bags_but_no_task_is_a_clear_error(tmp_path):
    from ate_policy.config import load_yaml
    from ate_policy.train import ATETrainConfig, with_converted_bags

    bag = tmp_path / "ep"
    write_bag(bag, "mcap", seconds=0.5)
    cfg = load_yaml(ATETrainConfig, "train_tiny", {"output_dir": str(tmp_path / "run"),
                                                   "bags": {"paths": [str(bag)]}})
    with pytest.raises(UserError, match="task must be set"):
        with_converted_bags(cfg)


def _segment_frames(root) -> list[dict[str, int]]:
    """Frames per camera in each episode's [from_timestamp, to_timestamp) span of its (multi-episode) MP4,
    counted by demuxing with PyAV here, independently of the converter's own check."""
    import av

    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata("local/ate_dual_bags", root=root)
    out = []
    for ep in meta.episodes:
        counts = {}
        for key in contract.IMAGE_KEYS:
            path = Path(root) / meta.video_path.format(video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                                                       file_index=ep[f"videos/{key}/file_index"])
            lo, hi = ep[f"videos/{key}/from_timestamp"], ep[f"videos/{key}/to_timestamp"]
            with av.open(str(path)) as c:
                s = c.streams.video[0]
                half = 0.5 / contract.FPS
                counts[key] = sum(1 for p in c.demux(s)
                                  if p.pts is not None and lo - half <= float(p.pts * s.time_base) < hi - half)
        out.append(counts)
    return out


def test_an_encoder_that_cannot_keep_up_never_gives_a_short_video(tmp_path, monkeypatch):
    """LeRobot's streaming encoder drops a frame (a log line only) when its queue stays full for 0.1 s. Throttled
    deterministically below the converter's pace, the conversion must still hold every frame in every video."""
    import threading
    import types

    import lerobot.datasets.video_utils as vu

    real_image = vu.Image

    def slow_fromarray(a):  # in LeRobot's encoder threads: slower than its 0.1 s put timeout
        threading.Event().wait(0.12)
        return real_image.fromarray(a)

    monkeypatch.setattr(vu, "Image", types.SimpleNamespace(fromarray=slow_fromarray))
    bags = [tmp_path / "b0", tmp_path / "b1"]
    write_bag(bags[0], "mcap", seconds=2.4, seed=8)
    write_bag(bags[1], "mcap", seconds=1.0, seed=9)
    out = convert_bags(bags, tmp_path / "ds", cfg())
    ds = load(out)
    rows = [int(e["length"]) for e in ds.meta.episodes]
    assert rows[0] > 40  # more frames than LeRobot's 30-frame encoder queue
    assert _segment_frames(out) == [{k: n for k in contract.IMAGE_KEYS} for n in rows]
    assert ds[len(ds) - 1]["episode_index"] == 1  # the last frame of the second episode loads
    assert all(r["dropped_frames"] == 0 for r in durable.read_sidecar(out).values())


def test_a_video_that_lost_frames_fails_the_conversion_with_no_output(tmp_path, monkeypatch, capsys):
    """Without the writer's back-pressure LeRobot drops frames; the check after each save must catch it."""
    import threading
    import types

    import lerobot.datasets.video_utils as vu

    from ate_policy.recording.writer import EpisodeWriter

    real_image = vu.Image
    monkeypatch.setattr(vu, "Image", types.SimpleNamespace(
        fromarray=lambda a: (threading.Event().wait(0.12), real_image.fromarray(a))[1]))
    monkeypatch.setattr(EpisodeWriter, "_wait_for_encoders", lambda self: None)
    bag = tmp_path / "bag"
    write_bag(bag, "mcap", seconds=2.4, seed=8)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(f"image_height: {H}\nimage_width: {W}\n")
    rc = cli.main(["convert", str(bag), "--output", str(tmp_path / "ds"), "--task", TASK,
                   "--config", str(mapping)])
    err = capsys.readouterr().err
    assert rc == 2 and "does not hold the episode" in err and "frames in the video for" in err
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()
