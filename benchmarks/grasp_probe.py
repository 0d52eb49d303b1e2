"""Does a policy see where the object is? A cheap probe of a training run's checkpoints: each is evaluated by
``ate_policy eval`` for only the first seconds of each episode (``--time-limit``, default 5 s: the first grasp)
on unseen seeds, and the evaluation's first-grasp tracking is read (docs/deploy.md, Evaluation): the slope of the
TCP's x and y on the object's at the first close command, 1 when the grasp follows the object, 0 when it goes to
one place whatever the scene (a camera-blind policy), with the RMS horizontal miss and how many episodes grasped.
About 1 min per checkpoint for 20 episodes on this CPU, against ~12 min for a full pick_bun evaluation.

    python benchmarks/grasp_probe.py --task pick_bun --run outputs/sim_success/pick_bun/train_pi0 --steps 2000 4000
    python benchmarks/grasp_probe.py --task lift_lid --checkpoint ate_policy/checkpoints/sim_lift_lid_pi0 --name lid

Writes ``benchmarks/results/grasp_probe.json``: one entry per ``--name`` (default: the run folder's name), each
with its command, date, machine, seeds and, per checkpoint, the tracking and the stages reached; entries of
earlier invocations stay (and an entry probed again with the same task, seeds and time limit keeps its other
checkpoints).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_success import RESULTS, cli, eval_json, machine  # noqa: E402


def checkpoints(run: Path, steps: list[int] | None) -> dict[str, Path]:
    """{step: pretrained_model folder} of a training run (``ate_policy train``'s layout)."""
    found = {p.name.lstrip("0") or "0": p / "pretrained_model"
             for p in sorted((run / "policy" / "checkpoints").glob("[0-9]*"))}
    if steps:
        missing = [s for s in steps if str(s) not in found]
        if missing:
            raise SystemExit(f"{run}: no checkpoint for steps {missing}; it has {sorted(found, key=int)}")
        found = {str(s): found[str(s)] for s in steps}
    if not found:
        raise SystemExit(f"{run}: no checkpoints under policy/checkpoints")
    return found


def _step(name: str) -> int:
    return int(name) if name.isdigit() else -1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a training run folder: probe its saved checkpoints")
    src.add_argument("--checkpoint", help="one checkpoint folder")
    p.add_argument("--steps", type=int, nargs="*", default=None, help="with --run: only these steps")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=1000, help="evaluation seeds from here on (unseen)")
    p.add_argument("--time-limit", type=float, default=5.0)
    p.add_argument("--image-size", type=int, nargs=2, default=(48, 64))
    p.add_argument("--name", default=None, help="results entry (default: the run's or checkpoint's folder name)")
    p.add_argument("--work", default="outputs/grasp_probe", help="folder for the evaluations")
    a = p.parse_args(argv)
    ckpts = checkpoints(Path(a.run), a.steps) if a.run else {"-": Path(a.checkpoint)}
    name = a.name or Path(a.run or a.checkpoint).name
    rows = {}
    for step, ckpt in ckpts.items():
        out = Path(a.work) / name / f"step_{step}"
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        cli("eval", "--task", a.task, "--checkpoint", str(ckpt), "--episodes", str(a.episodes), "--seed",
            str(a.seed), "--image-size", *map(str, a.image_size), "--device", "cpu", "--time-limit",
            str(a.time_limit), "--videos", "0", "--no-progress", "--output", str(out))
        s = eval_json(out)
        rows[step] = {"checkpoint": str(ckpt), "grasp_tracking": s["grasp_tracking"],
                      "stages_reached": s["stages_reached"], "wall_s": round(time.perf_counter() - t0, 1),
                      "load_avg_1min_before": round(load0, 2)}
    out_file = RESULTS / "grasp_probe.json"
    results = json.loads(out_file.read_text()) if out_file.exists() else {}
    setup = {"task": a.task, "episodes": a.episodes, "eval_seeds": [a.seed, a.seed + a.episodes - 1],
             "time_limit_s": a.time_limit, "image_hw": list(a.image_size)}
    before = results.get(name, {})
    if all(before.get(k) == v for k, v in setup.items()):   # same probe, more checkpoints: keep the earlier ones
        rows = {**before.get("checkpoints", {}), **rows}
    results[name] = {**setup, "command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
                     "machine": machine(), "checkpoints": dict(sorted(rows.items(), key=lambda kv: _step(kv[0])))}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(results, indent=2))
    print(f"\n{name} ({a.task}, {a.episodes} episodes from seed {a.seed}, first {a.time_limit:g} s)")
    print(f"{'step':>6} {'arm/object':12} {'slope x':>8} {'slope y':>8} {'miss cm':>8} {'closed':>7}  first stage")
    for step, r in rows.items():
        first = next(iter(r["stages_reached"].items()), ("-", 0))
        for arm, g in r["grasp_tracking"].items() or [("-", None)]:
            if g is None:
                print(f"{step:>6} {'no close':12}")
                continue
            sx, sy = (f"{v:.2f}" if v is not None else "-" for v in g["slope_xy"])
            print(f"{step:>6} {arm + '/' + g['object']:12} {sx:>8} {sy:>8} {100 * g['miss_rms_m']:8.1f} "
                  f"{g['episodes']:7d}  {first[0]} {first[1]}/{a.episodes}")
    print(f"-> {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
