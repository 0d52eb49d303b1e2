"""Episode recorder: LeRobot's real writer, small images, time driven by the test (no sleeping)."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from ate_data_testkit import TASK, feed_tick, image_at, state_at

from ate_description import contract
from ate_description.errors import UserError
from ate_policy.recording import durable
from ate_policy.recording.recorder import EpisodeRecorder, RecorderConfig

T0 = 1000.0  # monotonic seconds of the first tick
P = contract.PERIOD_S


def load(root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("local/ate_dual", root=root)


_clock = itertools.count()


def record(rec, n, start_k=0, cams=contract.CAMERA_NAMES):
    """One episode of n ticks; each call starts 10 s after the previous one (the clock is monotonic)."""
    base = T0 + 10.0 * next(_clock)
    rec.start_episode()
    outcomes = [feed_tick(rec, base + k * P, start_k + k, cams=cams) for k in range(n)]
    return outcomes, rec.stop_and_save(), base


def test_episodes_are_written_in_the_data_contract_and_load_in_lerobot(small_recorder_cfg):
    with EpisodeRecorder(small_recorder_cfg) as rec:
        outcomes, rep0, base = record(rec, 12)
        _, rep1, _ = record(rec, 8)
    assert set(outcomes) == {"recorded"}
    assert (rep0.saved, rep0.episode_index, rep0.frames) == (True, 0, 12)
    assert (rep1.episode_index, rep1.frames) == (1, 8)

    ds = load(small_recorder_cfg.root)
    assert ds.num_episodes == 2 and len(ds) == 20 and ds.fps == contract.FPS
    assert ds.meta.robot_type == contract.ROBOT_TYPE
    assert ds.meta.features[contract.STATE_KEY]["names"] == contract.STATE_NAMES
    assert ds.meta.features[contract.CAPTURE_TIME_KEY]["names"] == list(contract.CAPTURE_STREAMS)
    item = ds[5]
    assert item["task"] == TASK
    np.testing.assert_allclose(item[contract.STATE_KEY].numpy(), state_at(base + 5 * P - 0.002), atol=1e-6)
    np.testing.assert_allclose(item[contract.ACTION_KEY].numpy(), state_at(base + 5 * P + 0.05), atol=1e-6)
    # Real capture times relative to the first tick, next to the nominal timestamp 5 / 20 s.
    np.testing.assert_allclose(item[contract.CAPTURE_TIME_KEY].numpy(),
                               [5 * P - 0.002] + [5 * P - 0.010] * 3, atol=1e-5)
    assert float(item["timestamp"]) == pytest.approx(5 * P)
    for ci, key in enumerate(contract.IMAGE_KEYS):  # video decoded back to the right frame (lossy codec)
        got = item[key].numpy().mean() * 255
        assert abs(got - image_at(5, ci).mean()) < 6
    side = durable.read_sidecar(small_recorder_cfg.root)
    assert side[0]["frames"] == 12 and side[0]["stale_ticks"] == 0 and not side[0]["flagged"]
    assert side[0]["streams"]["cam_high"]["p50_ms"] == pytest.approx(10.0, abs=1e-3)


def test_nothing_is_recorded_until_every_stream_has_delivered(small_recorder_cfg):
    with EpisodeRecorder(small_recorder_cfg) as rec:
        assert rec.tick(np.zeros(16), T0) == "idle"
        rec.start_episode()
        rec.put_state(state_at(T0), np.zeros(12), T0)
        assert rec.tick(np.zeros(16), T0) == "waiting"
        assert feed_tick(rec, T0 + P, 1) == "recorded"
        rep = rec.stop_and_save()
    assert rep.frames == 1 and rep.sync["waiting_ticks"] == 1


def test_a_stalled_camera_gives_stale_ticks_with_its_real_capture_time_and_flags_the_episode(small_recorder_cfg):
    small_recorder_cfg.max_stale_share = 0.1
    with EpisodeRecorder(small_recorder_cfg) as rec:
        rec.start_episode()
        out = []
        for k in range(20):
            # cam_left_wrist delivers nothing on ticks 8..13 (6 ticks): the recorder must hold its last frame
            cams = [c for c in contract.CAMERA_NAMES if not (c == "cam_left_wrist" and 8 <= k <= 13)]
            out.append(feed_tick(rec, T0 + k * P, k, cams=cams))
        rep = rec.stop_and_save()
    assert out[8:14] == ["stale"] * 6 and out.count("recorded") == 14
    assert rep.saved and rep.flagged and rep.sync["stale_ticks"] == 6
    assert rep.sync["streams"]["cam_left_wrist"]["repeated"] == 6
    ds = load(small_recorder_cfg.root)
    cap = np.stack([ds[k][contract.CAPTURE_TIME_KEY].numpy() for k in range(20)])
    left = cap[:, 1 + contract.CAMERA_NAMES.index("cam_left_wrist")]
    # During the stall the stored capture time stays at frame 7's: the late frame is not stamped as on time.
    np.testing.assert_allclose(left[8:14], 7 * P - 0.010, atol=1e-5)
    assert durable.read_sidecar(small_recorder_cfg.root)[0]["flagged"] is True


def test_flagged_episodes_are_dropped_when_the_policy_says_so(small_recorder_cfg):
    small_recorder_cfg.flagged_policy = "drop"
    small_recorder_cfg.max_stale_share = 0.0
    with EpisodeRecorder(small_recorder_cfg) as rec:
        _, rep, _ = record(rec, 6, cams=["cam_high", "cam_left_wrist"])
        assert rep.frames == 0 and not rep.saved  # the right wrist never delivered: no frame to assemble
        rec.start_episode()
        base = T0 + 10.0 * next(_clock)
        for k in range(6):
            feed_tick(rec, base + k * P, k, cam_lag_s=0.08)  # every camera frame 80 ms old
        rep = rec.stop_and_save()
        assert not rep.saved and rep.flagged and "drop" in rep.reason
        _, ok, _ = record(rec, 5, start_k=10)
    assert ok.saved and ok.episode_index == 0
    assert load(small_recorder_cfg.root).num_episodes == 1


def test_discard_and_rerecord_leave_no_trace(small_recorder_cfg):
    with EpisodeRecorder(small_recorder_cfg) as rec:
        rec.start_episode()
        for k in range(5):
            feed_tick(rec, T0 + k * P, k)
        rec.discard()
        rec.start_episode()
        for k in range(5):
            feed_tick(rec, T0 + 10 + k * P, 100 + k)
        rec.rerecord()
        assert rec.recording
        for k in range(7):
            feed_tick(rec, T0 + 20 + k * P, k)
        rep = rec.stop_and_save()
    assert rep.episode_index == 0 and rep.frames == 7
    ds = load(small_recorder_cfg.root)
    assert ds.num_episodes == 1 and len(ds) == 7
    assert not (Path(small_recorder_cfg.root) / "images").exists()


def test_resume_appends_episodes_and_refuses_a_mismatching_dataset(small_recorder_cfg):
    with EpisodeRecorder(small_recorder_cfg) as rec:
        record(rec, 6)
    with EpisodeRecorder(small_recorder_cfg) as rec:  # existing root -> resume
        assert rec.num_episodes == 1
        _, rep, _ = record(rec, 4)
    assert rep.episode_index == 1
    ds = load(small_recorder_cfg.root)
    assert ds.num_episodes == 2 and len(ds) == 10
    assert ds[6]["episode_index"] == 1 and ds[6]["frame_index"] == 0

    wrong_fps = RecorderConfig(**{**vars(small_recorder_cfg), "fps": 30})
    with pytest.raises(UserError, match="30 Hz"):
        EpisodeRecorder(wrong_fps)
    wrong_size = RecorderConfig(**{**vars(small_recorder_cfg), "image_height": 48})
    with pytest.raises(UserError, match="features do not match"):
        EpisodeRecorder(wrong_size)
    with pytest.raises(UserError, match="not empty"):
        EpisodeRecorder(small_recorder_cfg, resume=False)


def test_a_full_queue_drops_frames_counts_them_and_never_blocks_the_control_loop(small_recorder_cfg):
    small_recorder_cfg.queue_size = 3
    with EpisodeRecorder(small_recorder_cfg) as rec:
        gate, busy = threading.Event(), threading.Event()
        real_add = rec._ds.add_frame

        def slow_add(frame):  # a disk or encoder that stalls
            busy.set()
            gate.wait(timeout=30)
            real_add(frame)

        rec._ds.add_frame = slow_add
        rec.start_episode()
        out = [feed_tick(rec, T0, 0)]
        assert busy.wait(timeout=10)
        out += [feed_tick(rec, T0 + k * P, k) for k in range(1, 10)]
        gate.set()
        rep = rec.stop_and_save()
    # one frame is held by the stalled writer, three wait in the queue, the other six are dropped and counted;
    # each dropped tick still takes its period (a repeat of the last frame that got through): 10 ticks, 10 rows
    assert out.count("dropped") == 6 and out[:4] == ["recorded"] * 4
    assert rep.saved and rep.frames == 10 and rep.dropped_frames == 6 and rep.flagged
    side = durable.read_sidecar(small_recorder_cfg.root)[0]
    assert side["dropped_frames"] == 6 and side["repeated_frames"] == 6
    ds = load(small_recorder_cfg.root)
    assert len(ds) == 10
    # the repeats carry the capture times of the frame they repeat (tick 3's), not new ones
    cap = np.stack([ds[k][contract.CAPTURE_TIME_KEY].numpy() for k in range(10)])
    np.testing.assert_allclose(cap[4:, 1:], 3 * P - 0.010, atol=1e-5)


def test_bad_inputs_give_clear_errors(small_recorder_cfg):
    with pytest.raises(UserError, match="flagged_policy"):
        EpisodeRecorder(RecorderConfig(**{**vars(small_recorder_cfg), "flagged_policy": "maybe"}))
    with pytest.raises(UserError, match="even image sizes"):
        EpisodeRecorder(RecorderConfig(**{**vars(small_recorder_cfg), "image_width": 33, "vcodec": "h264"}))
    with EpisodeRecorder(small_recorder_cfg) as rec:
        with pytest.raises(ValueError, match="resize in the camera node"):
            rec.put_image("cam_high", np.zeros((540, 960, 3), np.uint8), T0)
        with pytest.raises(ValueError, match="unknown camera"):
            rec.put_image("cam_low", np.zeros((24, 32, 3), np.uint8), T0)
        with pytest.raises(ValueError, match="16 values"):
            rec.put_state(np.zeros(14), np.zeros(12), T0)
        with pytest.raises(RuntimeError, match="no episode"):
            rec.stop_and_save()
        rec.start_episode()
        with pytest.raises(RuntimeError, match="already being recorded"):
            rec.start_episode()
    info = json.loads((Path(small_recorder_cfg.root) / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 0


def _video_frames(root, episode: int, key: str) -> int:
    import av

    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    path = Path(root) / LeRobotDatasetMetadata("local/ate_dual", root=root).get_video_file_path(episode, key)
    with av.open(str(path)) as c:
        return c.streams.video[0].frames  # the MP4 sample table: exact


def test_a_slow_video_encoder_backs_up_into_counted_drops_never_into_a_short_video(small_recorder_cfg,
                                                                                  monkeypatch):
    """LeRobot's streaming encoder drops frames when its own queue stays full (a log line, nothing else): the
    recorder must make a slow encoder show up as counted drops, with every recorded frame in every video."""
    import types

    import lerobot.datasets.video_utils as vu

    real_image = vu.Image

    def slow_fromarray(a):  # in LeRobot's encoder threads: stalls longer than its 0.1 s put timeout
        threading.Event().wait(0.12)
        return real_image.fromarray(a)

    monkeypatch.setattr(vu, "Image", types.SimpleNamespace(fromarray=slow_fromarray))
    small_recorder_cfg.queue_size = 5
    ticks = 100
    with EpisodeRecorder(small_recorder_cfg) as rec:
        rec.start_episode()
        out = []
        for k in range(ticks):  # a tick every 5 ms: LeRobot's 30-frame encoder queues fill within 0.3 s
            out.append(feed_tick(rec, T0 + k * P, k))
            threading.Event().wait(0.005)
        rep = rec.stop_and_save()
    assert rep.saved and rep.dropped_frames == out.count("dropped") > 0 and rep.flagged
    assert rep.frames == ticks  # every dropped tick became a repeated frame: time stays true
    for key in contract.IMAGE_KEYS:
        assert _video_frames(small_recorder_cfg.root, 0, key) == rep.frames
    assert load(small_recorder_cfg.root).num_frames == rep.frames


def test_auto_codec_uses_nvenc_only_where_it_really_encodes(monkeypatch):
    from ate_policy.recording import writer as r

    # LeRobot's own "auto" picks h264_nvenc wherever FFmpeg was built with it (always, with the PyAV wheel).
    from lerobot.configs import RGBEncoderConfig

    assert r._can_encode("h264", 64, 48)  # the probe itself works
    if not r._can_encode("h264_nvenc", 960, 540):
        assert RGBEncoderConfig(vcodec="auto").vcodec == "h264_nvenc"  # the trap being avoided
        assert r.resolve_encoder("auto", None, 960, 540) == (r.SOFTWARE_VCODEC, r.SOFTWARE_PRESET)
    monkeypatch.setattr(r, "_can_encode", lambda vcodec, w, h: vcodec == "hevc_nvenc")
    assert r.resolve_encoder("auto", None, 960, 540) == ("hevc_nvenc", None)
    assert r.resolve_encoder("libsvtav1", None, 960, 540) == ("libsvtav1", None)  # explicit codecs untouched


def test_a_loop_that_misses_ticks_keeps_dataset_time_true_with_counted_repeats_and_warns_live(
        small_recorder_cfg):
    """A 20 Hz loop that skips every third tick (a busy CPU): the dataset still spans the wall time, each missed
    tick is a repeated frame (counted, with the old capture times), and the rate warning fires while recording."""
    warnings = []
    n = 31  # ticks 0..30; the last one runs (30 % 3 == 0)
    with EpisodeRecorder(small_recorder_cfg) as rec:
        rec.add_rate_listener(warnings.append)
        rec.start_episode()
        live = []
        for k in range(n):
            if k % 3 == 2:
                continue  # the timer callback for this tick never ran
            feed_tick(rec, T0 + k * P, k)
            live.append(rec.live_status())
        assert warnings and "below its 20 Hz" in warnings[0]       # reported before the episode is saved
        assert not live[-1]["rate_ok"] and live[-1]["achieved_hz"] < 15
        rep = rec.stop_and_save()
    skipped = len([k for k in range(n) if k % 3 == 2])              # 10
    assert rep.frames == n and rep.sync["missed_ticks"] == skipped and rep.sync["repeated_frames"] == skipped
    ds = load(small_recorder_cfg.root)
    assert len(ds) == n
    # dataset duration (rows / fps) equals the loop's wall duration (last tick - first tick + one period)
    assert len(ds) / ds.fps == pytest.approx((n - 1) * P + P)
    # a repeated row holds the previous tick's frame: its capture time and image are tick k-1's
    for k in (2, 5, 29):
        item = ds[k]
        assert item[contract.CAPTURE_TIME_KEY].numpy()[0] == pytest.approx((k - 1) * P - 0.002, abs=1e-5)
        assert abs(item[contract.IMAGE_KEYS[0]].numpy().mean() * 255 - image_at(k - 1, 0).mean()) < 6
    # and it is counted as what it is: a stale, repeated frame
    assert rep.sync["streams"]["cam_high"]["stale_ticks"] == skipped and rep.flagged
    assert durable.read_sidecar(small_recorder_cfg.root)[0]["repeated_frames"] == skipped


def test_a_video_that_lost_frames_anyway_flags_the_episode_naming_the_camera(small_recorder_cfg, monkeypatch):
    """Should a frame still go missing inside LeRobot (here: the writer's back-pressure switched off under a
    slow encoder), the check after the save flags the episode and says which camera lost what."""
    import types

    import lerobot.datasets.video_utils as vu

    from ate_policy.recording.writer import EpisodeWriter

    real_image = vu.Image
    monkeypatch.setattr(vu, "Image", types.SimpleNamespace(
        fromarray=lambda a: (threading.Event().wait(0.12), real_image.fromarray(a))[1]))
    monkeypatch.setattr(EpisodeWriter, "_wait_for_encoders", lambda self: None)
    small_recorder_cfg.queue_size = 200
    with EpisodeRecorder(small_recorder_cfg) as rec:
        rec.start_episode()
        for k in range(40):
            feed_tick(rec, T0 + k * P, k)
        rep = rec.stop_and_save()
    assert rep.saved and rep.flagged
    problems = rep.sync["video_problems"]
    assert problems and all("frames in the video for 40 rows" in p for p in problems.values())
    side = durable.read_sidecar(small_recorder_cfg.root)[0]
    assert side["flagged"] and side["video_problems"] == problems
    assert all(side["video_frames"][cam] < 40 for cam in problems)


_THREE_X264_EPISODES = """
import sys
import numpy as np
from ate_policy.quiet import quiet_libraries
from ate_policy.recording.writer import EpisodeWriter, WriterConfig
quiet_libraries()
feats = {"observation.images.cam": {"dtype": "video", "shape": (24, 32, 3), "names": ["height", "width", "channels"]},
         "observation.state": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]},
         "action": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]}}
cfg = WriterConfig(root=sys.argv[1], repo_id="local/quiet", fps=20, features=feats, vcodec="h264", encoder_crf=0,
                   encoder_pix_fmt="yuv444p")
with EpisodeWriter(cfg) as w:
    for e in range(3):
        for i in range(6):
            w.put_frame({"observation.images.cam": np.full((24, 32, 3), 10 * i + e, np.uint8), "task": "t",
                         "observation.state": np.zeros(2, np.float32), "action": np.zeros(2, np.float32)})
        w.save({"source": "test", "task": "t", "flagged": False, "dropped_frames": 0})
    print("SAVED", w.num_episodes)
"""


def test_x264_episodes_after_the_first_print_no_encoder_statistics(tmp_path):
    """LeRobot's encoder hands libav's log back to FFmpeg's printer after each video, so from the second episode on
    libx264 printed a dozen statistics lines per camera (~950 lines for 40 sim demonstrations); ate_policy.quiet now
    sets FFmpeg's own threshold as well. FFmpeg prints from C to the process's stderr: a subprocess captures it."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _THREE_X264_EPISODES, str(tmp_path / "ds")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "SAVED 3" in r.stdout, r.stderr[-3000:]
    assert "libx264" not in r.stderr, r.stderr[-3000:]
