"""The 20 Hz control loop while inference runs: tick jitter p50/p99, tick cost and missed ticks.

Realtime mode, a tiny random PI0 on the CPU (three 224x224 uint8 views a tick), a loop that sleeps to each 50
ms deadline and calls ``PolicyRuntime.tick`` like the policy node's ROS timer does. Side by side in one run,
the variants taking turns in short segments (load from other jobs on a shared machine falls on each alike):

* ``loop_only``: the runtime with a policy that costs nothing: this machine's own scheduling jitter, the
  baseline;
* ``async``: the runtime as deployed (inference on its worker thread, chunks merged by blending);
* ``async_slow``: the same with 80 ms added to every inference (a stand-in for the real-size PI0 on a 4090,
  openpi's 73-86 ms), threshold 8 ticks;
* ``sync_slow``: the naive loop for comparison (LeRobot's ``select_action`` pattern): when the queue is empty
  the tick itself runs inference on the same 80 ms-slower policy, then pops; a tick that starts a full period
  late has missed its slot.

Per variant: jitter = tick start - its deadline (p50 / p99 / max, ms), the tick's own duration, missed ticks
(runtime: holds because the plan ran dry; sync: deadlines passed while inferring), inference latency.
Usage: ``python benchmarks/control_loop.py [--seconds 12] [--segments 4] [--threads 1]``; writes
``benchmarks/results/control_loop.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from ate_description import contract
from ate_policy.runtime import BlendConfig, Observation, PolicyRuntime, RuntimeConfig
from ate_policy.runtime.policy import load_policy
from ate_policy.runtime.tiny_checkpoint import write_tiny_checkpoint

OUT = Path(__file__).parent / "results" / "control_loop.json"
HW = (224, 224)
PERIOD = contract.PERIOD_S
TASK = "cook the bun: put the bun in the steamer and close the lid"
EXTRA_LATENCY_S = 0.080


class Slower:
    """The policy with a fixed extra latency (sleep: the GIL is released, like a GPU kernel wait)."""

    def __init__(self, policy, extra_s: float):
        self.policy, self.extra_s = policy, extra_s
        self.image_hw, self.supports_rtc = policy.image_hw, policy.supports_rtc

    def __call__(self, obs, rtc=None):
        time.sleep(self.extra_s)
        return self.policy(obs, rtc=rtc) if rtc is not None else self.policy(obs)


def frames(rng) -> dict[str, np.ndarray]:
    return {c: rng.integers(0, 256, (*HW, 3), dtype=np.uint8) for c in contract.CAMERA_NAMES}


def pct(v, q):
    return float(np.percentile(v, q) * 1e3) if len(v) else None


class Instant:
    """A policy that costs nothing (a constant chunk): the loop's own jitter on this machine, as a
    baseline."""

    image_hw, supports_rtc = HW, False

    def __call__(self, obs, rtc=None):
        return np.zeros((20, contract.ACTION_DIM))


class AsyncLoop:
    def __init__(self, policy, threshold: int):
        cfg = RuntimeConfig(clock="realtime", queue_threshold_ticks=threshold, warmup_runs=2,
                            blending=BlendConfig("blend"))
        self.rt = PolicyRuntime(policy, cfg, instruction=TASK)
        self.rng = np.random.default_rng(0)
        self.imgs = frames(self.rng)
        self.rt.warmup(Observation(np.zeros(16, np.float32), self.imgs,
                                   {s: 0.0 for s in contract.CAPTURE_STREAMS}))
        self.jitter, self.cost, self.lat = [], [], []
        self.counts = {"ticks": 0, "missed_ticks": 0, "late_ticks": 0, "chunks": 0, "overtaken_actions": 0}
        self.holds: dict[str, int] = {}
        self.threshold = threshold

    def segment(self, seconds: float) -> None:
        rt = self.rt
        rt.reset()
        rt.start()
        n = int(seconds / PERIOD)
        t0 = time.monotonic() + 0.05
        for k in range(n):
            deadline = t0 + k * PERIOD
            time.sleep(max(0.0, deadline - time.monotonic()))
            start = time.monotonic()
            self.jitter.append(start - deadline)
            # the node's work per tick: newest frames and states with their capture stamps, then tick()
            obs = Observation(self.rng.normal(0, 0.01, 16).astype(np.float32), self.imgs,
                              {s: start - 0.01 for s in contract.CAPTURE_STREAMS})
            rt.tick(obs, start)
            self.cost.append(time.monotonic() - start)
        st = rt.stats()
        for k in self.counts:
            self.counts[k] += st[k]
        for k, v in st["holds"].items():
            self.holds[k] = self.holds.get(k, 0) + v
        self.lat += list(rt._latencies)

    def result(self) -> dict:
        self.rt.close()
        return {**summary(self.jitter, self.cost, self.lat), **self.counts, "holds": self.holds,
                "queue_threshold_ticks": self.threshold}


class SyncLoop:
    def __init__(self, policy):
        self.policy = policy
        self.rng = np.random.default_rng(0)
        self.imgs = frames(self.rng)
        self.jitter, self.cost, self.lat = [], [], []
        self.ticks = self.missed = 0

    def segment(self, seconds: float) -> None:
        queue: deque = deque()
        n = int(seconds / PERIOD)
        t0 = time.monotonic() + 0.05
        k = 0
        while k < n:
            deadline = t0 + k * PERIOD
            time.sleep(max(0.0, deadline - time.monotonic()))
            start = time.monotonic()
            late = start - deadline
            if late >= PERIOD:           # this slot has passed: it was missed, the next one is due
                skip = min(int(late // PERIOD), n - k)
                self.missed += skip
                self.ticks += skip
                k += skip
                continue
            self.jitter.append(late)
            obs = Observation(self.rng.normal(0, 0.01, 16).astype(np.float32), self.imgs,
                              {s: start for s in contract.CAPTURE_STREAMS}, TASK)
            if not queue:
                t = time.monotonic()
                queue.extend(self.policy(obs))
                self.lat.append(time.monotonic() - t)
            queue.popleft()
            self.cost.append(time.monotonic() - start)
            k += 1
            self.ticks += 1

    def result(self) -> dict:
        return {**summary(self.jitter, self.cost, self.lat), "ticks": self.ticks, "missed_ticks": self.missed}


def summary(jitter, cost, lat) -> dict:
    return {"jitter_ms": {"p50": pct(jitter, 50), "p99": pct(jitter, 99), "max": max(jitter) * 1e3},
            "tick_ms": {"p50": pct(cost, 50), "p99": pct(cost, 99), "max": max(cost) * 1e3},
            "inference_ms": {"p50": pct(lat, 50), "max": max(lat) * 1e3 if lat else None}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=12.0, help="loop time per variant")
    ap.add_argument("--segments", type=int, default=4, help="the variants take turns in this many segments")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: on a shared 2-core machine two OpenMP threads stall on each "
                         "other)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.WARNING)
    res: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "torch": torch.__version__,
                             "torch_threads": torch.get_num_threads(), "load_avg_at_start": os.getloadavg()},
                 "setup": "realtime 20 Hz, tiny PI0 (chunk 20, 10 denoising steps) on the CPU, three "
                          f"{HW[0]}x{HW[1]} views, blend merging; *_slow: +{EXTRA_LATENCY_S * 1e3:.0f} ms "
                          "per inference; loop_only: a policy that costs nothing (this machine's own "
                          "scheduling jitter)",
                 "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        d = write_tiny_checkpoint(Path(tmp) / "tiny", chunk_size=20, image_hw=HW, num_inference_steps=10)
        pol = load_policy(d, instruction=TASK)
        loops = {"loop_only": AsyncLoop(Instant(), threshold=8), "async": AsyncLoop(pol, threshold=8),
                 "async_slow": AsyncLoop(Slower(pol, EXTRA_LATENCY_S), threshold=8),
                 "sync_slow": SyncLoop(Slower(pol, EXTRA_LATENCY_S))}
        # Short segments in rotation: load from other jobs on a shared machine falls on every variant alike.
        for _ in range(a.segments):
            for loop in loops.values():
                loop.segment(a.seconds / a.segments)
        res["variants"] = {k: loop.result() for k, loop in loops.items()}
    print(f"control_loop: {res['setup']} ({res['machine']['cpus']} CPUs, load "
          f"{res['machine']['load_avg_at_start'][0]:.1f}), {a.seconds:.0f} s per variant")
    print(f"{'variant':<12}{'jitter p50':>11}{'p99':>8}{'max':>8}{'tick p50':>10}{'p99':>8}{'missed':>8}"
          f"{'infer p50':>11}")
    for k, v in res["variants"].items():
        j = v["jitter_ms"]
        print(f"{k:<12}{j['p50']:>11.2f}{j['p99']:>8.2f}{j['max']:>8.2f}"
              f"{v['tick_ms']['p50']:>10.2f}{v['tick_ms']['p99']:>8.2f}{v['missed_ticks']:>8d}"
              f"{v['inference_ms']['p50'] or 0.0:>11.2f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
