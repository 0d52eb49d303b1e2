"""Action chunks from LeRobot datasets, normalised and padded exactly as the fine-tuned policy sees them.

Only the action column is read (parquet, no video decoding). Each dataset is normalised with its own stats by the
formula of LeRobot's ``NormalizerProcessorStep`` (MEAN_STD: (a - mean) / (std + 1e-8); MIN_MAX: to [-1, 1]), with
the policy's std floor (``STD_FLOOR``, see :func:`floored_stats`), and zero-padded to the policy's action dim (32 for
pi0), then cut into sliding windows that lie inside one episode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ate_description.errors import UserError

log = logging.getLogger(__name__)

NORM_EPS = 1e-8  # LeRobot's NormalizerProcessorStep default
# A dim whose std is below this is scaled by it instead: a dual-arm task where one arm never moves has std 0 on that
# arm, its stored mean differs from the constant by float rounding, and (a - mean) / (0 + 1e-8) reaches tens to
# hundreds (a tiny PI0 then starts at loss ~300 with that dim dominating the gradient). In radians and gripper
# fractions 1e-3 is far below any motion a policy is asked to learn.
STD_FLOOR = 1e-3


def floored_stats(stats: dict | None, floor: float = STD_FLOOR) -> dict | None:
    """LeRobot dataset stats (``{feature: {"mean", "std", ...}}``) with every ``std`` raised to at least ``floor``:
    what the policy's normaliser is built from (``ate_policy train``) and what :class:`Normalizer` applies, so the
    VAE reads chunks exactly as the policy does. Other stats and the input are left unchanged."""
    if stats is None:
        return None
    out = {}
    for key, feat in stats.items():
        if isinstance(feat, dict) and "std" in feat:
            feat = {**feat, "std": np.maximum(np.asarray(feat["std"]), floor)}
        out[key] = feat
    return out


@dataclass
class Normalizer:
    """Per-dataset action normalisation, stored with every VAE checkpoint so Stage 3 can check it matches."""

    mode: str
    stats: dict[str, list[float]]  # "mean"/"std" or "min"/"max", each of the dataset's own action dim (as stored)
    std_floor: float = STD_FLOOR    # mean_std: std below this is replaced by it (as the policy's normaliser does)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        if self.mode == "mean_std":
            std = np.maximum(np.asarray(self.stats["std"]), self.std_floor)
            return (a - np.asarray(self.stats["mean"])) / (std + NORM_EPS)
        lo, hi = np.asarray(self.stats["min"]), np.asarray(self.stats["max"])
        denom = np.where(hi - lo == 0, NORM_EPS, hi - lo)
        return 2.0 * (a - lo) / denom - 1.0

    def to_dict(self) -> dict:
        return {"mode": self.mode, "stats": self.stats, "std_floor": self.std_floor}


@dataclass
class EpisodeActions:
    dataset: str
    episode_index: int
    actions: np.ndarray  # (T, A_real) normalised, float32


@dataclass
class ActionSource:
    """All episodes' actions of one dataset, normalised."""

    name: str
    action_dim: int
    fps: float
    normalizer: Normalizer
    episodes: list[EpisodeActions] = field(default_factory=list)


def load_action_source(repo_id: str, root: str | None, action_key: str = "action",
                       normalization: str = "mean_std") -> ActionSource:
    """Read one LeRobot dataset's actions per episode (local ``root`` or hub id) and normalise them."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    if root is not None and not Path(root).exists():
        raise UserError(f"dataset folder {root} does not exist")
    try:
        ds = LeRobotDataset(repo_id or Path(root).name, root=root, download_videos=False)
    except Exception as e:  # LeRobot raises many kinds for missing/corrupt datasets
        raise UserError(f"cannot open LeRobot dataset {repo_id or root}: {e}") from e
    feats = ds.meta.features
    if action_key not in feats:
        keys = ", ".join(k for k in feats if not k.startswith("observation.images"))
        raise UserError(f"dataset {repo_id or root} has no {action_key!r} feature (it has: {keys}); "
                        f"set `action_key` in the dataset entry of the config to the column holding the actions")
    stats = ds.meta.stats.get(action_key) if ds.meta.stats else None
    need = ("mean", "std") if normalization == "mean_std" else ("min", "max")
    if not stats or any(k not in stats for k in need):
        raise UserError(f"dataset {repo_id or root} has no {'/'.join(need)} stats for {action_key!r}; "
                        "recompute them with LeRobot's compute_stats")
    normalizer = Normalizer(normalization, {k: np.asarray(stats[k], dtype=np.float64).reshape(-1).tolist()
                                            for k in need})
    table = ds.hf_dataset.with_format("numpy")
    actions = np.asarray(table[action_key], dtype=np.float64)
    if actions.ndim == 1:
        actions = actions[:, None]
    ep_index = np.asarray(table["episode_index"])
    src = ActionSource(name=repo_id or str(root), action_dim=actions.shape[1], fps=float(ds.meta.fps),
                       normalizer=normalizer)
    normed = normalizer(actions).astype(np.float32)
    for e in np.unique(ep_index):
        src.episodes.append(EpisodeActions(src.name, int(e), normed[ep_index == e]))
    return src


class ChunkDataset(torch.utils.data.Dataset):
    """Sliding windows of ``chunk_len`` over every episode of every source, zero-padded to ``pad_dim``.

    Items: ``actions`` (L, pad_dim), ``dim_mask`` (pad_dim,) True on the dataset's real dims, ``pad_mask`` (L,)
    all False (windows lie inside episodes; the mask is there for the policy's padded chunks).
    """

    def __init__(self, sources: list[ActionSource], chunk_len: int, pad_dim: int, stride: int = 1,
                 episodes: set[tuple[str, int]] | None = None):
        self.chunk_len, self.pad_dim = chunk_len, pad_dim
        self.sources = sources
        self.windows: list[tuple[np.ndarray, int, int]] = []  # (episode actions, start, real dim)
        self.skipped_episodes = 0
        for src in sources:
            if src.action_dim > pad_dim:
                raise UserError(f"dataset {src.name} has {src.action_dim}-dim actions, more than the padding size "
                                f"{pad_dim}; raise `model.action_dim` (pi0 pads to its max_action_dim, 32)")
            for ep in src.episodes:
                if episodes is not None and (src.name, ep.episode_index) not in episodes:
                    continue
                n = len(ep.actions)
                if n < chunk_len:
                    self.skipped_episodes += 1
                    continue
                for s in range(0, n - chunk_len + 1, stride):
                    self.windows.append((ep.actions, s, src.action_dim))
        if not self.windows:
            longest = max((len(ep.actions) for s in sources for ep in s.episodes), default=0)
            raise UserError(f"no action chunk of length {chunk_len} fits in any episode (longest episode: {longest} "
                            f"frames); lower `chunk_len` or use longer episodes")
        if self.skipped_episodes:
            log.warning("skipped %d episodes shorter than the chunk length %d", self.skipped_episodes, chunk_len)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        actions, s, dim = self.windows[i]
        out = np.zeros((self.chunk_len, self.pad_dim), dtype=np.float32)
        out[:, :dim] = actions[s:s + self.chunk_len]
        dim_mask = np.zeros(self.pad_dim, dtype=bool)
        dim_mask[:dim] = True
        return {"actions": torch.from_numpy(out), "dim_mask": torch.from_numpy(dim_mask),
                "pad_mask": torch.zeros(self.chunk_len, dtype=torch.bool)}


def split_episodes(sources: list[ActionSource], val_fraction: float, seed: int
                   ) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
    """Hold out whole episodes (never windows of a training episode) for reports; at least one stays in training."""
    rng = np.random.default_rng(seed)
    train, val = set(), set()
    for src in sources:
        keys = [(src.name, ep.episode_index) for ep in src.episodes]
        order = rng.permutation(len(keys))
        n_val = min(len(keys) - 1, int(round(val_fraction * len(keys))))
        for j, k in enumerate(order):
            (val if j < n_val else train).add(keys[k])
    return train, val
