"""The in-memory video frame cache serves exactly what LeRobot's own reader decodes (the oracle), with and
without delta timestamps, and stays out of the way where it cannot (over budget, no videos)."""

from __future__ import annotations

import random

import pytest
import torch

from ate_policy.data.frame_cache import cache_video_frames, decoded_frames_bytes


def _open(root, **kw):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("local/demo_dual", root=root, **kw)


def _assert_same(a, b, indices):
    for i in indices:
        x, y = a[i], b[i]
        assert x.keys() == y.keys()
        for k, v in x.items():
            if isinstance(v, torch.Tensor):
                assert v.dtype == y[k].dtype and v.shape == y[k].shape and torch.equal(v, y[k]), (i, k)
            else:
                assert v == y[k], (i, k)


@pytest.mark.parametrize("deltas", [None, {"observation.images.cam_high": [-0.1, -0.05, 0.0]}],
                         ids=["current_frame", "frame_history"])
def test_cached_items_equal_lerobots_decoded_items(demo_data, deltas):
    root = demo_data["adaptation"]
    kw = {"delta_timestamps": deltas} if deltas else {}
    reference, cached = _open(root, **kw), _open(root, **kw)
    assert cache_video_frames(cached, budget_gib=1.0)
    n = len(reference)
    # every episode's first and last frame (where a history is padded by clamping) and a random spread
    starts = [int(e["dataset_from_index"]) for e in reference.meta.episodes]
    ends = [int(e["dataset_to_index"]) - 1 for e in reference.meta.episodes]
    _assert_same(reference, cached, sorted(set(starts + ends + random.Random(0).sample(range(n), 30))))
    assert cached[5]["observation.images.cam_high"].dtype == torch.float32


def test_the_cache_serves_without_decoding(demo_data, monkeypatch):
    import lerobot.datasets.dataset_reader as reader_module

    cached = _open(demo_data["adaptation"])
    assert cache_video_frames(cached, budget_gib=1.0)

    def no_decoding(*a, **k):
        raise AssertionError("decoded a video after caching")

    monkeypatch.setattr(reader_module, "decode_video_frames", no_decoding)
    cached[len(cached) - 1]


def test_a_dataset_over_the_budget_is_left_to_lerobots_reader(demo_data):
    ds = _open(demo_data["adaptation"])
    query = ds._ensure_reader()._query_videos
    assert decoded_frames_bytes(ds) > 1000
    assert not cache_video_frames(ds, budget_gib=1000 / 2**30)
    assert not cache_video_frames(ds, budget_gib=0)
    assert ds._ensure_reader()._query_videos == query
