"""The action plan: targets per tick, overtaken actions, and the merging strategies, against hand values."""

from __future__ import annotations

import numpy as np
import pytest

from ate_policy.runtime import BlendConfig
from ate_policy.runtime.plan import ActionPlan, fade_weights


def chunk(values) -> np.ndarray:
    return np.repeat(np.asarray(values, float)[:, None], 16, axis=1)


def test_fade_weights_rise_to_exactly_one_and_exp_takes_over_sooner():
    lin, exp = fade_weights(5, "linear"), fade_weights(5, "exp", 3.0)
    np.testing.assert_allclose(lin, [0.2, 0.4, 0.6, 0.8, 1.0])
    for w in (lin, exp):
        assert np.all(np.diff(w) > 0) and w[0] > 0 and w[-1] == pytest.approx(1.0)
    assert np.all(exp[:-1] > lin[:-1])
    assert len(fade_weights(0)) == 0


def test_a_chunk_arriving_late_skips_its_overtaken_actions_and_pop_drops_missed_ticks():
    plan = ActionPlan(16)
    overtaken = plan.merge(10, chunk(range(100, 108)), now_k=13, blending=BlendConfig("latest"))
    assert overtaken == 3 and plan.start == 13 and len(plan) == 5
    assert plan.remaining_after(13) == 4 and plan.remaining_after(20) == 0
    a, src, dropped = plan.pop(13)
    assert a[0] == 103 and src == 10 and dropped == 0
    a, src, dropped = plan.pop(16)       # ticks 14 and 15 were never asked for: dropped unused
    assert a[0] == 106 and dropped == 2
    assert plan.pop(18) == (None, None, 1)
    # a chunk wholly overtaken leaves nothing
    assert plan.merge(0, chunk(range(4)), now_k=9, blending=BlendConfig("latest")) == 4 and len(plan) == 0


def test_latest_replaces_the_plan_from_the_arrival_tick():
    plan = ActionPlan(16)
    plan.merge(0, chunk(np.zeros(10)), 0, BlendConfig("latest"))
    plan.merge(4, chunk(np.ones(10)), 6, BlendConfig("latest"))
    assert plan.start == 6 and plan.end == 14
    np.testing.assert_array_equal(plan.actions[:, 0], np.ones(8))
    assert set(plan.source) == {4}


@pytest.mark.parametrize("fade_ticks", [None, 2])
def test_blend_cross_fades_over_the_overlap_by_hand(fade_ticks):
    plan = ActionPlan(16)
    plan.merge(0, chunk(np.zeros(10)), 0, BlendConfig("latest"))          # old plan: 0 for ticks 0..9
    # new: 10, ticks 5..14
    plan.merge(5, chunk(np.full(10, 10.0)), 7, BlendConfig("blend", fade_ticks=fade_ticks))
    assert plan.start == 7 and plan.end == 15
    # overlap = ticks 7, 8, 9 (3 ticks); new-chunk weights 1/3, 2/3, 1 (or 1/2, 1 then 1 with a 2-tick fade)
    w = [1 / 3, 2 / 3, 1.0] if fade_ticks is None else [0.5, 1.0, 1.0]
    expected = [10 * x for x in w] + [10.0] * 5
    np.testing.assert_allclose(plan.actions[:, 5], expected)


def test_exp_blend_uses_the_exponential_weights():
    plan = ActionPlan(16)
    plan.merge(0, chunk(np.zeros(8)), 0, BlendConfig("latest"))
    plan.merge(2, chunk(np.ones(8)), 2, BlendConfig("blend", shape="exp", exp_rate=2.0))
    np.testing.assert_allclose(plan.actions[:6, 0], fade_weights(6, "exp", 2.0))


def test_window_gives_the_plan_from_a_tick_for_real_time_chunking():
    plan = ActionPlan(16)
    plan.merge(3, chunk(range(8)), 3, BlendConfig("latest"))
    np.testing.assert_array_equal(plan.window(5, 3)[:, 0], [2, 3, 4])
    assert len(plan.window(5, 100)) == 6
    assert plan.window(2, 3) is None and plan.window(11, 3) is None


def test_bad_blend_config_is_refused():
    with pytest.raises(ValueError, match="strategy"):
        BlendConfig("average")
    with pytest.raises(ValueError, match="fade_ticks"):
        BlendConfig("blend", fade_ticks=0)
