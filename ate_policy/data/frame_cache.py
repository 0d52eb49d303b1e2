"""Decoded video frames of a LeRobot dataset, held in memory for training.

A ``LeRobotDataset`` decodes every camera frame of every sample from its MP4 on each access: on a CPU with a small
network (the sim recipes: batch 32, three cameras) that seek-and-decode is more than half of a training step.
:func:`cache_video_frames` decodes each episode's videos once, in order, with LeRobot's own decoder and its own
arguments (backend, tolerance), keeps the frames as uint8, and serves the dataset's video queries from memory
afterwards: the items are bit-identical to the uncached dataset's (``tests/data/test_frame_cache.py`` checks
that against LeRobot's reader), only faster.

Memory is ``frames x cameras x H x W x 3`` bytes (a 50-episode sim set at 48x64: ~0.5 GiB); a dataset above the
budget is left as it is. DataLoader workers share the cache copy-on-write when forked; ``ate_policy train`` does not
cache under another start method (each worker would receive a pickled copy).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)


def decoded_frames_bytes(dataset) -> int:
    """What the decoded frames of every video key of ``dataset`` take as uint8."""
    meta = dataset.meta
    per_frame = sum(int(np.prod(meta.features[k]["shape"])) for k in meta.video_keys)
    return per_frame * len(dataset)


def cache_video_frames(dataset, budget_gib: float, progress: bool = False) -> int:
    """Decode ``dataset``'s videos into memory and serve its video queries from there. Returns the bytes it holds,
    0 where it did not: no videos, frames exceeding ``budget_gib`` (0 = never), or a depth stream (LeRobot
    dequantises those after decoding; they are left to its reader). ``progress``: a bar over the episodes."""
    meta = dataset.meta
    if not meta.video_keys or budget_gib <= 0:
        return 0
    need = decoded_frames_bytes(dataset)
    if need > budget_gib * 2**30:
        log.info("video frames not cached: %.2f GiB decoded exceeds cache_frames_gib %.2f", need / 2**30,
                 budget_gib)
        return 0
    if getattr(meta, "depth_keys", None):
        log.info("video frames not cached: depth cameras %s", list(meta.depth_keys))
        return 0
    from lerobot.datasets.video_utils import decode_video_frames
    from tqdm import tqdm

    reader = dataset._ensure_reader()
    if reader.hf_dataset is None:
        reader.load_and_activate()
    hf = reader.hf_dataset
    episodes = np.asarray(hf["episode_index"]).reshape(-1)
    stamps = np.asarray(hf["timestamp"], dtype=np.float64).reshape(-1)
    fps = float(meta.fps)
    cache: dict[tuple[int, str], tuple[torch.Tensor, int]] = {}   # (episode, camera) -> (frames, first frame)
    ep_ids = [int(e) for e in np.unique(episodes)]
    for ep_idx in tqdm(ep_ids, desc="caching video frames", unit="episode", disable=None if progress else True,
                       dynamic_ncols=True):
        ep = meta.episodes[ep_idx]
        ts = np.sort(stamps[episodes == ep_idx])
        first = int(round(ts[0] * fps))
        if not np.allclose(np.round(ts * fps) - first, np.arange(len(ts))):
            log.info("video frames not cached: episode %d's timestamps are not one per frame", ep_idx)
            return 0
        for key in meta.video_keys:
            shifted = [ep[f"videos/{key}/from_timestamp"] + float(t) for t in ts]
            frames = decode_video_frames(reader.root / meta.get_video_file_path(ep_idx, key), shifted,
                                         reader._tolerance_s, reader._video_backend, return_uint8=True)
            cache[(ep_idx, key)] = (frames, first)
    as_uint8 = reader._return_uint8

    def query_videos(query_timestamps: dict[str, list[float]], ep_idx: int) -> dict[str, torch.Tensor]:
        out = {}
        for key, query_ts in query_timestamps.items():
            frames, first = cache[(ep_idx, key)]
            # stacked views: advanced indexing (frames[list]) costs ~8 ms here against ~0.01 ms for this
            picked = torch.stack([frames[int(round(t * fps)) - first] for t in query_ts])
            # exactly what LeRobot's decoder returns for uint8 frames it normalises itself
            out[key] = (picked if as_uint8 else (picked / 255.0).type(torch.float32)).squeeze(0)
        return out

    reader._query_videos = query_videos
    return need
