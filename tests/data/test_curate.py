"""The LeRobot toolbox on our recorded datasets: delete flagged episodes, merge days (across codecs), train.

Sidecar records must follow their episodes: each test episode has its own length and its own image brightness,
so the records can be matched to the data independently of the code that renumbers them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ate_data_testkit import TASK, effort_at, state_at

from ate_description import contract
from ate_policy import cli
from ate_policy.recording import durable
from ate_policy.recording.recorder import EpisodeRecorder, RecorderConfig

P = contract.PERIOD_S
IMG_H, IMG_W = 48, 64  # wide enough for every codec, SVT-AV1 included


def record_day(root: Path, lengths: list[int], stalled: set[int], vcodec: str, base_level: int) -> None:
    """Episodes of the given lengths; episode i's images have brightness base_level + 10 i; the episodes in
    ``stalled`` lose cam_high for 6 ticks (flagged by the recorder)."""
    cfg = RecorderConfig(root=str(root), task=TASK, image_height=IMG_H, image_width=IMG_W, vcodec=vcodec)
    with EpisodeRecorder(cfg) as rec:
        for i, n in enumerate(lengths):
            base = 1000.0 + 100.0 * i
            rec.start_episode()
            for k in range(n):
                t = base + k * P
                rec.put_state(state_at(t), effort_at(t), t - 0.002)
                for cam in contract.CAMERA_NAMES:
                    if not (i in stalled and cam == "cam_high" and 3 <= k < 9):
                        rec.put_image(cam, np.full((IMG_H, IMG_W, 3), base_level + 10 * i, np.uint8), t - 0.005)
                rec.tick(state_at(t + 0.05), t)
            rep = rec.stop_and_save()
            assert rep.flagged == (i in stalled)


def episodes_of(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(f"local/{Path(root).name}", root=root)
    out = []
    for e in range(ds.num_episodes):
        frm = int(ds.meta.episodes[e]["dataset_from_index"])
        to = int(ds.meta.episodes[e]["dataset_to_index"])
        level = float(ds[to - 1][contract.IMAGE_KEYS[1]].numpy().mean() * 255)   # decodes the last frame
        out.append((to - frm, round(level)))
    return out


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("days")
    record_day(tmp / "day1", [8, 11, 14], stalled={1}, vcodec="h264", base_level=40)
    record_day(tmp / "day2", [9, 12], stalled={0}, vcodec="libsvtav1", base_level=140)
    return tmp


def test_deleting_the_flagged_episodes_keeps_every_record_on_its_episode(days, capsys):
    out = days / "day1_clean"
    assert cli.main(["dataset", "delete", str(days / "day1"), "--flagged", "--output", str(out)]) == 0
    eps = episodes_of(out)
    assert [n for n, _ in eps] == [8, 14]
    assert [lvl for _, lvl in eps] == pytest.approx([40, 60], abs=3)        # episodes 0 and 2 of day 1
    side = durable.read_sidecar(out)
    assert sorted(side) == [0, 1]
    assert [side[i]["frames"] for i in (0, 1)] == [8, 14] and not any(side[i]["flagged"] for i in (0, 1))
    assert side[1]["origin"] == {"dataset": str(days / "day1"), "episode_index": 2}
    assert cli.main(["inspect", str(out), "--strict", "--no-plots"]) == 0


def test_merging_days_recorded_with_different_codecs_keeps_records_and_frames(days):
    out = days / "all"
    assert cli.main(["dataset", "merge", str(days / "day1"), str(days / "day2"), "--output", str(out)]) == 0
    eps = episodes_of(out)                                                   # every last frame decodes
    assert [n for n, _ in eps] == [8, 11, 14, 9, 12]
    assert [lvl for _, lvl in eps] == pytest.approx([40, 50, 60, 140, 150], abs=3)
    side = durable.read_sidecar(out)
    assert [side[i]["frames"] for i in range(5)] == [8, 11, 14, 9, 12]
    assert [side[i]["flagged"] for i in range(5)] == [False, True, False, True, False]
    assert side[3]["origin"] == {"dataset": str(days / "day2"), "episode_index": 0}
    from ate_policy.data.inspect import audit

    # LeRobot merges one codec only: day 2 (AV1) was re-encoded to day 1's H.264 in a copy; the source is untouched
    assert {e["videos"]["cam_high"]["codec"] for e in audit(out)["episodes"]} == {"h264"}
    from ate_policy.data.curate import _video_codecs

    assert _video_codecs(days / "day2") == {"av1"} and not list(days.glob("all.reencode_*"))


def test_bad_edits_are_clear_errors(days):
    from ate_description.errors import UserError

    from ate_policy.data import curate

    with pytest.raises(UserError, match="do not exist"):
        curate.delete_episodes(days / "day1", [7], days / "x")
    with pytest.raises(UserError, match="every episode"):
        curate.delete_episodes(days / "day1", [0, 1, 2], days / "x")
    with pytest.raises(UserError, match="exists"):
        curate.merge([days / "day1", days / "day2"], days / "day1")
    assert not (days / "x").exists()


@pytest.mark.slow
def test_plain_lerobot_train_runs_act_on_a_recorded_dataset(days, tmp_path):
    """`lerobot-train` of a small LeRobot policy (ACT, no pretrained backbone: nothing downloaded) for a few steps
    on a dataset our recorder wrote."""
    exe = Path(sys.executable).with_name("lerobot-train")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "act"
    cmd = [str(exe), "--dataset.repo_id=local/day1", f"--dataset.root={days / 'day1'}", "--policy.type=act",
           "--policy.pretrained_backbone_weights=null", "--policy.device=cpu", "--policy.push_to_hub=false",
           "--policy.chunk_size=4", "--policy.n_action_steps=4", "--policy.dim_model=64",
           "--policy.n_encoder_layers=1", "--policy.n_decoder_layers=1", "--policy.dim_feedforward=128",
           "--steps=3", "--batch_size=2", "--num_workers=0", "--log_freq=1", "--save_freq=3",
           f"--output_dir={out}", "--wandb.enable=false"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert list(out.rglob("model.safetensors")), "no checkpoint written"
