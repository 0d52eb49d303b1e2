"""Does Rerun visualisation slow the 20 Hz loop? Tick jitter with viz on vs off, in one run.

A loop that sleeps to each 50 ms deadline and does what the policy node does per tick with the policy runtime
(a policy that costs nothing, so the loop itself is measured), handing ``PolicyViz``'s ``RuntimeViz`` three camera
frames (960x540 RGB as recorded, ``--size`` to change), both arms' state, targets and wrench, and on each chunk
the plan. Variants take turns in short segments, so load from other jobs on a shared machine falls on each
alike:

* ``off``: no visualisation (the baseline: this machine's own scheduling jitter);
* ``on_web``: ``viz:=true viz_mode:=web``: JPEG frames to a web viewer process (``rerun --serve-web``);
* ``on_file``: ``viz_mode:=off viz_rrd:=FILE``: the same into an .rrd file.

Per variant: jitter = tick start - its deadline (p50 / p99 / max, ms), the tick's own duration (p50 / p99,
ms: the runtime tick plus the logging calls), missed ticks (a tick starting a full period late), and the
logger's dropped entries (a full queue drops rather than waits; counted). Usage:
``python benchmarks/viz_overhead.py [--seconds 8] [--segments 3] [--size H W] [--quick]``; writes
``benchmarks/results/viz_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_policy.runtime import Observation, PolicyRuntime, RuntimeConfig

OUT = Path(__file__).parent / "results" / "viz_overhead.json"
PERIOD = contract.PERIOD_S


class FreePolicy:
    """select_chunk that costs nothing: 20 targets creeping from the observed state."""

    image_hw = (224, 224)

    def __call__(self, obs):
        return np.asarray(obs.state, float)[None, :] + np.arange(20)[:, None] * 1e-4


def run_segment(viz_mode: str | None, seconds: float, hw: tuple[int, int], tmp: Path, seg: int) -> dict:
    from ate_policy.viz.live import PolicyViz

    rt = PolicyRuntime(FreePolicy(), RuntimeConfig(clock="realtime", warmup_runs=1, max_age_ms=1e6))
    rt.warmup()
    viz = None
    if viz_mode == "web":
        viz = PolicyViz(rt, "web")
    elif viz_mode == "file":
        viz = PolicyViz(rt, "off", rrd=str(tmp / f"seg{seg}.rrd"))
    if viz is not None:
        viz.logger.ready.wait(30.0)   # the static parts (URDF) are logged before the loop starts, as in the node
    rng = np.random.default_rng(seg)
    frames = [{c: rng.integers(0, 255, (*hw, 3), dtype=np.uint8) for c in contract.CAMERA_NAMES} for _ in range(4)]
    rt.start()
    n = int(seconds / PERIOD)
    jitter, cost, missed = [], [], 0
    t0 = time.perf_counter() + 0.2
    for k in range(n):
        deadline = t0 + k * PERIOD
        now = time.perf_counter()
        if deadline > now:
            time.sleep(deadline - now)
        start = time.perf_counter()
        late = start - deadline
        jitter.append(late)
        missed += int(late >= PERIOD)
        state = np.r_[np.zeros(7), 0.5, np.zeros(7), 0.5] + 1e-3 * np.sin(k / 10)
        imgs = frames[k % len(frames)]
        obs = Observation(state.astype(np.float32), imgs, {s: start for s in contract.CAPTURE_STREAMS})
        res = rt.tick(obs, start)
        if viz is not None:
            viz.tick(res, obs, {a: np.zeros(6) for a in contract.ARMS})
        cost.append(time.perf_counter() - start)
    st = viz.close() if viz is not None else {"dropped": 0, "logged": {}}
    rt.close()
    return {"jitter": jitter, "cost": cost, "missed": missed, "dropped": st["dropped"],
            "logged_ticks": st["logged"].get("tick", 0), "ticks": n}


def pct(x, q):
    return round(float(np.percentile(np.asarray(x) * 1e3, q)), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="per segment")
    ap.add_argument("--segments", type=int, default=3, help="turns per variant")
    ap.add_argument("--size", type=int, nargs=2, default=list(contract.CAMERA_RESOLUTION), metavar=("H", "W"))
    ap.add_argument("--quick", action="store_true", help="2 s x 1 segment at 224x224 (a smoke run)")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.segments, a.size = 2.0, 1, [224, 224]
    variants = {"off": None, "on_web": "web", "on_file": "file"}
    acc = {v: {"jitter": [], "cost": [], "missed": 0, "dropped": 0, "ticks": 0, "logged_ticks": 0} for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        seg = 0
        for _ in range(a.segments):
            for name, mode in variants.items():
                r = run_segment(mode, a.seconds, tuple(a.size), Path(tmp), seg)
                seg += 1
                for k in ("jitter", "cost"):
                    acc[name][k] += r[k]
                for k in ("missed", "dropped", "ticks", "logged_ticks"):
                    acc[name][k] += r[k]
    rows = {}
    for name, r in acc.items():
        rows[name] = {"ticks": r["ticks"], "jitter_ms": {"p50": pct(r["jitter"], 50), "p99": pct(r["jitter"], 99),
                                                         "max": round(max(r["jitter"]) * 1e3, 3)},
                      "tick_cost_ms": {"p50": pct(r["cost"], 50), "p99": pct(r["cost"], 99)},
                      "missed_ticks": r["missed"], "viz_dropped": r["dropped"], "viz_logged_ticks": r["logged_ticks"]}
    print(f"20 Hz loop, cameras 3 x {a.size[0]}x{a.size[1]}, {a.segments} x {a.seconds:g} s per variant")
    print(f"{'variant':<9} {'ticks':>6} {'jitter p50':>11} {'p99':>8} {'max':>8} {'cost p50':>9} {'p99':>8} "
          f"{'missed':>7} {'dropped':>8}")
    for name, r in rows.items():
        j, c = r["jitter_ms"], r["tick_cost_ms"]
        print(f"{name:<9} {r['ticks']:>6} {j['p50']:>9.3f}ms {j['p99']:>6.3f}ms {j['max']:>6.2f}ms {c['p50']:>7.3f}ms "
              f"{c['p99']:>6.3f}ms {r['missed_ticks']:>7} {r['viz_dropped']:>8}")
    res = {"benchmark": "viz_overhead", "image_hw": a.size, "seconds_per_segment": a.seconds,
           "segments": a.segments, "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "python": platform.python_version(), "variants": rows}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2))
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
