"""Training batches from a LeRobot video dataset: decoded on every access (LeRobot's reader) vs. the in-memory
frame cache (``ate_policy.data.frame_cache``, what ``ate_policy train`` uses when ``cache_frames_gib`` allows).

Side by side in one run, on one dataset: the same random batches (32 samples, every camera) drawn from both, the
time per batch, and the one-off time to fill the cache. The items are checked equal on the way (the cache must
change nothing but the time).

Usage: ``python benchmarks/frame_cache.py [--root DATASET] [--batches 20]``. Without ``--root`` it writes a
dual-arm demo dataset (3 cameras at 48x64, the sim cell's render size; 20 episodes of 200 frames) to a temp folder.
Writes ``benchmarks/results/frame_cache.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="a LeRobot dataset folder (default: a generated demo dataset)")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "frame_cache.json"))
    args = p.parse_args(argv)

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from ate_policy.data.frame_cache import cache_video_frames

    tmp = None
    root = args.root
    if root is None:
        from ate_policy.data.demo import DemoSpec, write_demo_data

        tmp = tempfile.TemporaryDirectory()
        spec = DemoSpec(episodes=20, frames=200, pretrain_episodes=2, pretrain_frames=20, image_hw=(48, 64), seed=0)
        root = str(write_demo_data(tmp.name, spec)["adaptation"])
    name = "local/" + Path(root).name
    plain, cached = LeRobotDataset(name, root=root), LeRobotDataset(name, root=root)
    t0 = time.perf_counter()
    held = cache_video_frames(cached, budget_gib=16.0)
    if not held:
        print("the dataset has no (cacheable) videos", file=sys.stderr)
        return 1
    fill_s = time.perf_counter() - t0
    rng = random.Random(0)
    batches = [rng.sample(range(len(plain)), args.batch_size) for _ in range(args.batches)]
    load0 = os.getloadavg()[0]
    times = {"decoded": [], "cached": []}
    for batch in batches:                         # interleaved: both see the same load
        for label, ds in (("decoded", plain), ("cached", cached)):
            t = time.perf_counter()
            items = [ds[i] for i in batch]
            times[label].append(time.perf_counter() - t)
            if label == "decoded":
                reference = items
        for x, y in zip(reference, items):
            for k in cached.meta.video_keys:
                assert torch.equal(x[k], y[k]), "the cache served another frame than LeRobot decodes"
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)]},
        "dataset": {"root": "generated demo dataset" if tmp else root, "frames": len(plain),
                    "episodes": plain.meta.total_episodes, "cameras": list(plain.meta.video_keys),
                    "decoded_gib": round(held / 2**30, 3),
                    "video_backend": plain._video_backend},
        "batch_size": args.batch_size, "batches": args.batches,
        "decoded_s_per_batch": round(med["decoded"], 4), "cached_s_per_batch": round(med["cached"], 5),
        "speedup": round(med["decoded"] / med["cached"], 1), "cache_fill_s": round(fill_s, 2),
    }
    print(f"{len(plain)} frames x {len(plain.meta.video_keys)} cameras, batch {args.batch_size} "
          f"(median of {args.batches}, load {load0:.1f}):")
    print(f"  decoded on access  {med['decoded'] * 1e3:8.1f} ms/batch")
    print(f"  frame cache        {med['cached'] * 1e3:8.1f} ms/batch   ({result['speedup']}x; filling it took "
          f"{fill_s:.1f} s, {result['dataset']['decoded_gib']} GiB)")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.output}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
