"""Crash safety: kill -9 a real recording process; every finished episode must survive intact and loadable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ate_data_testkit import H, TASK, W, feed_tick, image_at, state_at

from ate_description import contract
from ate_policy.recording import durable
from ate_policy.recording.recorder import EpisodeRecorder, RecorderConfig

CHILD = Path(__file__).parent / "crash_child.py"
T0 = 1000.0


def run_child(root: Path, mode: str) -> list[str]:
    proc = subprocess.Popen([sys.executable, str(CHILD), str(root), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("MID_EPISODE"):
                os.kill(proc.pid, signal.SIGKILL)
                break
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == -signal.SIGKILL, f"child ended with {rc}, output {lines}"
    return lines


def assert_two_finished_episodes_intact(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/ate_dual", root=root)
    assert ds.num_episodes == 2 and len(ds) == 6 + 9
    for ep, n in enumerate((6, 9)):
        start = 0 if ep == 0 else 6
        for k in (0, n - 1):  # first and last frame of each episode, videos decoded
            item = ds[start + k]
            assert int(item["episode_index"]) == ep and int(item["frame_index"]) == k
            assert item["task"] == TASK
            np.testing.assert_allclose(item[contract.STATE_KEY].numpy(),
                                       state_at(T0 + 10.0 * ep + k * contract.PERIOD_S - 0.002), atol=1e-6)
            for ci, key in enumerate(contract.IMAGE_KEYS):
                assert abs(item[key].numpy().mean() * 255 - image_at(k, ci).mean()) < 6
    return ds


@pytest.mark.slow
def test_kill_9_mid_episode_keeps_every_finished_episode(tmp_path):
    root = tmp_path / "ds"
    lines = run_child(root, "mid-episode")
    assert lines[:2] == ["SAVED 0 6", "SAVED 1 9"]
    # Opened as is, with nothing repaired: the unfinished episode is simply absent.
    assert_two_finished_episodes_intact(root)
    # Re-opening for recording cleans the unfinished episode's staging and appends after the finished ones.
    with EpisodeRecorder(RecorderConfig(root=str(root), task=TASK, image_height=H, image_width=W)) as rec:
        rec.start_episode()
        for k in range(4):
            feed_tick(rec, T0 + 100.0 + k * contract.PERIOD_S, k)
        assert rec.stop_and_save().episode_index == 2
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    assert LeRobotDataset("local/ate_dual", root=root).num_episodes == 3
    assert sorted(durable.read_sidecar(root)) == [0, 1, 2]
    assert not list(root.glob("tmp*"))


@pytest.mark.slow
def test_kill_9_inside_a_save_rolls_back_to_the_last_finished_episode(tmp_path):
    root = tmp_path / "ds"
    lines = run_child(root, "mid-save")
    assert lines == ["SAVED 0 6", "SAVED 1 9"]
    # The interrupted save left its journal: info.json already counts a third episode LeRobot cannot read.
    assert (root / durable.JOURNAL).exists()
    assert json.loads((root / "meta" / "info.json").read_text())["total_episodes"] == 3
    report = durable.recover(root)
    assert report["rolled_back"] and report["removed_files"]
    assert_two_finished_episodes_intact(root)
    assert sorted(durable.read_sidecar(root)) == [0, 1]


@pytest.mark.parametrize("files", [["meta/info.json"], []])
def test_recover_without_a_journal_changes_nothing_finished(tmp_path, files):
    root = tmp_path / "ds"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text("{}")
    (root / "images" / "x").mkdir(parents=True)
    rep = durable.recover(root)
    assert not rep["rolled_back"] and rep["removed_staging"] == ["images"]
    assert (root / "meta" / "info.json").read_text() == "{}"
