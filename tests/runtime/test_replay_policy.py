"""The replay policy (``ate_policy.runtime.replay``): recorded actions chosen by the observation's capture time.

The sim end-to-end check (a demonstration replayed through ``ate_policy eval`` succeeds with no refusal) is in
tests/sim/test_sim_success.py; here the selection rules, with expected chunks written out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ate_description import contract
from ate_description.errors import UserError
from ate_policy.runtime.observation import Observation
from ate_policy.runtime.replay import RecordedEpisode, ReplayPolicy, load_recorded_episodes


def _episode(index: int, seed: int, n: int = 30) -> RecordedEpisode:
    # action value = 100 * seed + frame index in every dimension: any chunk names its frames
    a = (100.0 * seed + np.arange(n, dtype=float))[:, None] * np.ones(contract.ACTION_DIM)
    return RecordedEpisode(index, seed, a)


def _obs(t: float) -> Observation:
    return Observation.dummy((8, 8), stamp_s=t)


def test_the_chunk_starts_at_the_frame_of_the_observation_time_not_at_a_call_count():
    p = ReplayPolicy([_episode(0, 4)], chunk_len=5)
    p.begin_episode(t0_s=100.0, seed=4)
    # frame = round((t - t0) * 20): t0 + 0.35 s is frame 7, whatever was asked before
    np.testing.assert_array_equal(p(_obs(100.35))[:, 0], 400 + np.array([7, 8, 9, 10, 11]))
    np.testing.assert_array_equal(p(_obs(100.35))[:, 0], 400 + np.array([7, 8, 9, 10, 11]))  # asked again
    np.testing.assert_array_equal(p(_obs(100.10))[:, 0], 400 + np.array([2, 3, 4, 5, 6]))    # earlier time
    # past the recording's end the last action is held
    np.testing.assert_array_equal(p(_obs(100.0 + 28 / 20))[:, 0], [428, 429, 429, 429, 429])


def test_matched_replays_the_seed_s_own_demonstration_and_blind_another_one():
    eps = [_episode(0, 3), _episode(1, 5), _episode(2, 9)]
    matched = ReplayPolicy(eps, chunk_len=2)
    matched.begin_episode(0.0, seed=5)
    assert matched(_obs(0.0))[0, 0] == 500
    with pytest.raises(UserError, match="no demonstration recorded with seed 4"):
        matched.begin_episode(0.0, seed=4)
    blind = ReplayPolicy(eps, chunk_len=2, mode="blind")
    for seed in (3, 5, 9, 4):
        blind.begin_episode(0.0, seed=seed)
        assert blind(_obs(0.0))[0, 0] != 100 * seed
        assert blind.selected[-1]["recorded_seed"] != seed
    with pytest.raises(UserError, match="another seed"):
        ReplayPolicy([_episode(0, 3)], mode="blind").begin_episode(0.0, seed=3)


def test_episodes_and_seeds_are_read_from_the_dataset_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "ds"
    (root / "meta").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text("{}")
    rows = {"action": [], "episode_index": [], "frame_index": []}
    for e, n in ((0, 4), (1, 3)):
        for i in range(n):
            rows["action"].append([10.0 * e + i] * contract.ACTION_DIM)
            rows["episode_index"].append(e)
            rows["frame_index"].append(i)
    # rows out of order within the file: the loader orders by frame index
    order = [1, 0, 3, 2, 6, 5, 4]
    pq.write_table(pa.table({k: [v[i] for i in order] for k, v in rows.items()}),
                   root / "data" / "chunk-000" / "file-000.parquet")
    (root / "meta" / "ate_episodes.jsonl").write_text(
        json.dumps({"episode_index": 0, "seed": 7}) + "\n" + json.dumps({"episode_index": 1, "seed": 8}) + "\n")
    eps = load_recorded_episodes(root)
    assert [(e.episode_index, e.seed, len(e.actions)) for e in eps] == [(0, 7, 4), (1, 8, 3)]
    np.testing.assert_array_equal(eps[1].actions[:, 0], [10, 11, 12])
    with pytest.raises(UserError, match="not a LeRobot dataset"):
        load_recorded_episodes(tmp_path / "nothing")
