"""Sim cell benchmark: physics steps per second and rendered frames per second per camera resolution.

Side by side in one run, on this machine, CPU rendering (OSMesa unless MUJOCO_GL says otherwise):
* physics: 2 ms steps of the empty cell and of the cook_bun scene with both arms streaming targets
  (the rate-limited controllers and grasp logic included), as steps/s and as the real-time factor;
* rendering: frames/s of each camera at 48x64 (the demo-data default), 224x224 (a policy's input),
  480x640 and 540x960 (the real cameras' recording size), without shadows (the default) and with shadows;
* a whole 20 Hz tick of data generation: 50 physics steps + 3 cameras at 48x64 and at 224x224.

Usage: ``python benchmarks/sim_step.py [--seconds 2]``; writes ``benchmarks/results/sim_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import ate_sim  # noqa: F401  (GL backend first)
from ate_description import contract
from ate_sim.cell import HOME_Q, SimCell
from ate_sim.render import gl_backend

OUT = Path(__file__).parent / "results" / "sim_step.json"
RESOLUTIONS = [(48, 64), (224, 224), (480, 640), (540, 960)]


def physics_rate(task: str | None, seconds: float) -> dict:
    cell = SimCell(task=task, seed=0)
    dt = cell.model.opt.timestep
    steps, k = 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        # A 0.5 Hz sweep streamed at 20 Hz, as a teleop would.
        for arm in contract.ARMS:
            cell.set_joint_targets(arm, HOME_Q + 0.4 * np.sin(2 * np.pi * 0.5 * k * contract.PERIOD_S))
        cell.step(contract.PERIOD_S)
        steps += int(round(contract.PERIOD_S / dt))
        k += 1
    wall = time.perf_counter() - t0
    cell.close()
    return {"steps_per_s": steps / wall, "realtime_factor": steps * dt / wall}


def render_rate(cell: SimCell, camera: str, hw, seconds: float) -> float:
    cell.render(camera, hw)  # context + buffers
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        cell.render(camera, hw)
        n += 1
    return n / (time.perf_counter() - t0)


def tick_rate(cell: SimCell, hw, seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        cell.step(contract.PERIOD_S)
        for cam in contract.CAMERA_NAMES:
            cell.render(cam, hw)
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring time per cell of the table")
    a = ap.parse_args()
    res: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "mujoco_gl": gl_backend() or os.environ.get("MUJOCO_GL")},
                 "physics": {}, "render_fps": {}, "tick_per_s": {}}
    for task in (None, "cook_bun"):
        res["physics"][task or "empty"] = physics_rate(task, a.seconds)
    from ate_sim.model import CellConfig

    for shadows in (False, True):
        cell = SimCell(task="cook_bun", cfg=CellConfig(shadows=shadows), seed=0)
        key = "shadows" if shadows else "no_shadows"
        res["render_fps"][key] = {}
        for hw in RESOLUTIONS:
            for cam in contract.CAMERA_NAMES:
                res["render_fps"][key][f"{cam}@{hw[0]}x{hw[1]}"] = render_rate(cell, cam, hw, a.seconds / 2)
        if not shadows:
            for hw in ((48, 64), (224, 224)):
                res["tick_per_s"][f"{hw[0]}x{hw[1]}"] = tick_rate(cell, hw, a.seconds)
        cell.close()

    print(f"sim_step on {res['machine']['cpus']} CPUs, MUJOCO_GL={res['machine']['mujoco_gl']}")
    print(f"{'physics':<12}{'steps/s':>10}{'x realtime':>12}")
    for k, v in res["physics"].items():
        print(f"{k:<12}{v['steps_per_s']:>10.0f}{v['realtime_factor']:>12.2f}")
    print(f"\n{'render fps':<28}{'no shadows':>12}{'shadows':>10}{'ratio':>8}")
    for k in res["render_fps"]["no_shadows"]:
        ns, sh = res["render_fps"]["no_shadows"][k], res["render_fps"]["shadows"][k]
        print(f"{k:<28}{ns:>12.1f}{sh:>10.1f}{ns / sh:>8.2f}")
    print("\nrecording ticks/s (50 physics steps + 3 cameras): "
          + ", ".join(f"{k}: {v:.1f}" for k, v in res["tick_per_s"].items()))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2))
    print(f"\nwrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
