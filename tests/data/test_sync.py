"""Frame assembly from asynchronous streams (ate_policy.recording.sync): the rule shared by recorder and converter."""

from __future__ import annotations

import numpy as np
import pytest

from ate_policy.recording.sync import EpisodeSyncStats, FrameAssembler, align


def test_tick_takes_the_newest_sample_and_keeps_its_real_capture_time():
    fa = FrameAssembler(["state", "cam"], max_age_s=0.05)
    fa.put("state", "s1", 0.98)
    fa.put("state", "s2", 0.995)
    fa.put("cam", "c1", 0.97)
    res = fa.assemble(1.0)
    assert res.values == {"state": "s2", "cam": "c1"}
    assert res.capture_times_s == {"state": 0.995, "cam": 0.97}
    assert not res.stale and not res.missing


def test_sample_older_than_the_freshness_limit_is_stale_but_still_used():
    fa = FrameAssembler(["state", "cam"], max_age_s=0.05)
    fa.put("state", "s", 1.0)
    fa.put("cam", "old", 0.90)
    res = fa.assemble(1.0)
    assert res.stale == {"cam"}
    assert res.values["cam"] == "old" and res.capture_times_s["cam"] == 0.90


def test_a_stream_that_never_delivered_is_missing():
    fa = FrameAssembler(["state", "cam"], max_age_s=0.05)
    fa.put("state", "s", 1.0)
    res = fa.assemble(1.0)
    assert res.missing == {"cam"} and not res.complete(["cam"]) and res.complete(["state"])


def test_a_late_arriving_older_sample_does_not_replace_a_newer_one():
    fa = FrameAssembler(["cam"], max_age_s=0.05)
    fa.put("cam", "new", 1.00)
    fa.put("cam", "older", 0.99)  # e.g. reordered by the network
    assert fa.assemble(1.01).values["cam"] == "new"


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        FrameAssembler(["cam"], max_age_s=0.0)
    fa = FrameAssembler(["cam"], max_age_s=0.05)
    with pytest.raises(KeyError, match="unknown stream"):
        fa.put("nope", 1, 0.0)
    with pytest.raises(ValueError, match="finite"):
        fa.put("cam", 1, float("nan"))
    with pytest.raises(ValueError, match="sorted"):
        align(np.array([0.0]), np.array([0.2, 0.1]), 0.05)


def test_offline_align_matches_online_assembly_on_jittered_streams():
    rng = np.random.default_rng(3)
    ticks = np.arange(200) * 0.05
    samples = np.sort(rng.uniform(-0.1, 10.0, size=180))  # irregular, with gaps
    idx, stale = align(ticks, samples, max_age_s=0.05)
    fa = FrameAssembler(["s"], max_age_s=0.05)
    j = 0
    for k, t in enumerate(ticks):
        while j < len(samples) and samples[j] <= t:
            fa.put("s", j, samples[j])
            j += 1
        res = fa.assemble(t)
        if "s" in res.missing:
            assert idx[k] == -1 and stale[k]
        else:
            assert idx[k] == res.values["s"]
            assert stale[k] == ("s" in res.stale)


def test_episode_is_flagged_past_the_stale_share_and_counts_repeated_frames():
    fa = FrameAssembler(["state", "cam"], max_age_s=0.05)
    stats = EpisodeSyncStats(["state", "cam"], required=["cam"], max_stale_share=0.3)
    for k in range(10):
        t = k * 0.05
        fa.put("state", k, t)
        if k < 7:  # the camera stops delivering after tick 6
            fa.put("cam", k, t - 0.01)
        stats.add(fa.assemble(t))
    s = stats.summary()
    assert s["ticks"] == 10
    assert s["streams"]["cam"]["stale_ticks"] == 3       # ticks 7, 8, 9: 60, 110, 160 ms old
    assert s["streams"]["cam"]["repeated"] == 3           # ticks 7, 8, 9 reuse frame 6
    assert s["streams"]["state"]["stale_ticks"] == 0
    assert stats.stale_share == pytest.approx(0.3) and not stats.flagged  # at the limit, not past it
    stats.add(fa.assemble(0.5))
    assert stats.flagged
    assert s["streams"]["cam"]["max_ms"] == pytest.approx(160.0)
