"""Action chunks: LeRobot's normalisation, padding to pi0's 32 dims, sliding windows, clear errors."""

import numpy as np
import pytest
import torch

from ate_policy.data.chunks import ChunkDataset, Normalizer, load_action_source, split_episodes
from ate_description.errors import UserError


def test_normaliser_matches_lerobots_normalizer_step():
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.processor.normalize_processor import NormalizerProcessorStep

    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 7)).astype(np.float32)
    stats = {"mean": rng.normal(size=7), "std": rng.uniform(0.1, 2, size=7),
             "min": -3 * np.ones(7), "max": rng.uniform(1, 3, size=7)}
    feats = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(7,))}
    for ours, theirs in (("mean_std", NormalizationMode.MEAN_STD), ("min_max", NormalizationMode.MIN_MAX)):
        step = NormalizerProcessorStep(features=feats, norm_map={FeatureType.ACTION: theirs},
                                       stats={"action": {k: np.asarray(v, np.float32) for k, v in stats.items()}})
        expected = step._normalize_action(torch.from_numpy(a), inverse=False).numpy()
        got = Normalizer(ours, {k: list(v) for k, v in stats.items()})(a)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_an_idle_dim_is_scaled_by_the_std_floor_exactly_as_the_policys_normaliser_built_from_floored_stats():
    """An arm that never moves: std 0 and a mean that differs from the constant by float rounding. Unfloored,
    LeRobot's (a - mean) / (std + 1e-8) blows that dim up to ~100; the policy's normaliser (LeRobot's step, built
    from ``floored_stats`` as ``ate_policy train`` builds it) and the VAE's Normalizer agree and stay near 0."""
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.processor.normalize_processor import NormalizerProcessorStep

    from ate_policy.data.chunks import STD_FLOOR, floored_stats

    rng = np.random.default_rng(1)
    a = rng.normal(size=(20, 3)).astype(np.float32)
    a[:, 1] = 0.7                                     # the idle dim
    stats = {"action": {"mean": np.array([0.0, 0.7 + 7e-7, 0.1]), "std": np.array([1.0, 0.0, 2e-4]),
                        "min": a.min(0), "max": a.max(0)}}
    feats = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(3,))}

    def lerobot_norm(st):
        step = NormalizerProcessorStep(features=feats, norm_map={FeatureType.ACTION: NormalizationMode.MEAN_STD},
                                       stats={"action": {k: np.asarray(v, np.float32) for k, v in st.items()}})
        return step._normalize_action(torch.from_numpy(a), inverse=False).numpy()

    assert np.abs(lerobot_norm(stats["action"])[:, 1]).max() > 50           # the bug the floor removes
    floored = floored_stats(stats)
    assert floored["action"]["std"].tolist() == [1.0, STD_FLOOR, STD_FLOOR]  # only stds below the floor change
    assert stats["action"]["std"][1] == 0.0                                   # the input is left alone
    expected = lerobot_norm(floored["action"])
    got = Normalizer("mean_std", {k: list(v) for k, v in stats["action"].items()})(a)   # stored stats, raw
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(got[:, 1]).max() < 1e-2


def test_windows_padding_and_masks(demo_data):
    src = load_action_source("local/demo_pretrain", str(demo_data["pretrain"]))
    assert src.action_dim == 7 and len(src.episodes) == 8 and src.fps == 10
    ds = ChunkDataset([src], chunk_len=16, pad_dim=32, stride=2)
    assert len(ds) == 8 * ((60 - 16) // 2 + 1)
    item = ds[0]
    assert item["actions"].shape == (16, 32)
    assert torch.all(item["actions"][:, 7:] == 0)
    assert item["dim_mask"].tolist() == [True] * 7 + [False] * 25
    assert not item["pad_mask"].any()
    # normalised with the dataset's own stats: roughly zero-mean, unit-std over the whole dataset
    allv = np.concatenate([ep.actions for ep in src.episodes])
    assert np.abs(allv.mean(0)).max() < 1e-3 and np.allclose(allv.std(0), 1.0, atol=0.05)


def test_short_episodes_are_skipped_and_counted(demo_data):
    src = load_action_source("local/demo_dual", str(demo_data["adaptation"]))
    src.episodes[0].actions = src.episodes[0].actions[:5]
    ds = ChunkDataset([src], chunk_len=10, pad_dim=32)
    assert ds.skipped_episodes == 1
    assert len(ds) == 3 * (40 - 10 + 1)


def test_clear_errors(demo_data, tmp_path):
    src = load_action_source("local/demo_dual", str(demo_data["adaptation"]))
    with pytest.raises(UserError, match="longest episode: 40"):
        ChunkDataset([src], chunk_len=41, pad_dim=32)
    with pytest.raises(UserError, match="padding size 8"):
        ChunkDataset([src], chunk_len=10, pad_dim=8)
    with pytest.raises(UserError, match="no 'actions' feature"):
        load_action_source("local/demo_dual", str(demo_data["adaptation"]), action_key="actions")
    with pytest.raises(UserError, match="does not exist"):
        load_action_source("local/missing", str(tmp_path / "missing"))


def test_held_out_split_is_by_whole_episode(demo_data):
    src = load_action_source("local/demo_pretrain", str(demo_data["pretrain"]))
    train, val = split_episodes([src], 0.25, seed=0)
    assert len(val) == 2 and len(train) == 6 and not (train & val)
    assert split_episodes([src], 0.25, seed=0) == (train, val)
