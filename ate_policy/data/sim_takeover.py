"""Demonstrations from the states a policy reaches (DAgger-style takeover) in the simulated cell, as a LeRobot
dataset.

    ate_policy demo-data --sim cook_bun --takeover-from CHECKPOINT --episodes 30 --seed 2000 --output DIR

A policy imitating scripted demonstrations drifts a little off them, and a later step (cook_bun's regrasp of the
bun from the plate) then starts from states no demonstration began from. Here, per seed, the policy runs in the
sim cell exactly as ``ate_policy eval`` runs it (deployment runtime, drivers' safety layer, lockstep) until the
task's takeover stages were reached (``ate_sim.demonstrator.TAKEOVER``: for cook_bun the bun on the left plate and
the lid set down), and then for a per-seed random ``0..--takeover-delay-s`` longer, or until the policy first
commands a gripper shut, whichever comes first (so the takeover points spread over the policy's approach and its
grasp attempts). The scripted demonstrator then finishes the task from that very state
(``ate_sim.demonstrator.take_over``: the objects where the policy left them, the arms at its last targets), and
only that part is recorded, at 20 Hz like every sim demonstration (the same recorder, state, action, cameras). The
policy gets as long to reach the takeover point as the scripted demonstrator takes for the whole task.

Kept: the episodes whose takeover succeeds; a seed whose policy never reached the stages (or succeeded on its own,
or dropped an object) is skipped, at most ``3 x --episodes`` seeds are tried. Each episode's sidecar record
carries ``seed``, ``sim_task``, ``takeover_s`` (the policy's time before the takeover) and ``takeover_policy``;
each skipped seed and why goes to ``takeover_<task>.skipped.jsonl`` beside the dataset (one line per seed, written
as it is skipped). An existing dataset is resumed from the seed after the last one tried (kept or skipped), and
its summary counts the earlier skips too. Train on it together with the task's plain
demonstrations (``benchmarks/sim_success.py --takeover-from``, which merges the two).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_description.errors import UserError

GRIP_CLOSED = 0.5
"""A gripper command below this opening fraction counts as closing (the demonstrator commands 0 to grasp)."""


def takeover_delay_s(seed: int, max_delay_s: float) -> float:
    """The seed's wait after the takeover stages, uniform in [0, max_delay_s], apart from the scene's own
    randomisation and the policy's noise."""
    return float(np.random.default_rng([int(seed), 0x7A4E]).uniform(0.0, max_delay_s)) if max_delay_s > 0 else 0.0


class HandOver:
    """The ``hand_over`` rule of ``evaluation.run_episode``: True once every one of ``stages`` was reached and then
    ``delay_s`` passed or a gripper command went from open to closed."""

    def __init__(self, stages: tuple[str, ...], delay_s: float):
        self.stages, self.delay_s = stages, delay_s
        self.t0: float | None = None
        self._open: np.ndarray | None = None

    def __call__(self, cell, reached: dict[str, bool], action) -> bool:
        if self.t0 is None:
            if not all(reached[s] for s in self.stages):
                return False
            self.t0 = cell.sim_time
        if action is not None:
            grips = np.array([action[contract.arm_slice(a).start + contract.N_ARM_JOINTS] for a in contract.ARMS])
            is_open = grips >= GRIP_CLOSED
            closing = self._open is not None and bool(np.any(self._open & ~is_open))
            self._open = is_open
            if closing:
                return True
        return cell.sim_time - self.t0 >= self.delay_s


def skip_log(root: Path) -> Path:
    """The file beside a takeover dataset that keeps its skipped seeds (outside the dataset, which LeRobot owns and
    which does not exist yet when the first seeds are skipped)."""
    return root.parent / f"{root.name}.skipped.jsonl"


def read_skips(root: Path) -> dict[int, str]:
    """{seed: why} of the seeds skipped so far for the takeover dataset at ``root`` (empty when none were)."""
    path = skip_log(root)
    if not path.is_file():
        return {}
    out: dict[int, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rec = json.loads(line)
                out[int(rec["seed"])] = str(rec["why"])
            except (ValueError, KeyError, TypeError) as e:
                raise UserError(f"{path}:{n}: not a skipped-seed record ({e}); fix or delete that line") from e
    return out


def record_takeover_demos(task: str, checkpoint: str | Path, output: str | Path, episodes: int, seed: int = 2000,
                          max_delay_s: float = 4.0, device: str = "cpu", overwrite: bool = False,
                          max_attempts: int | None = None, policy=None, progress: bool = True,
                          policy_time_limit_s: float | None = None) -> dict:
    """Record ``episodes`` successful takeover episodes of ``task`` from the policy at ``checkpoint`` into
    ``output/takeover_<task>``; returns a summary dict (``root``, ``episodes``, ``attempts``: seeds tried by this
    call, ``skipped``: {seed: why} of every seed skipped for this dataset, earlier calls' included, ``tried``: every
    seed tried for it, kept or skipped). ``policy``: a ready select_chunk instead of loading ``checkpoint`` (tests).
    ``policy_time_limit_s``: how long the policy may take to reach the takeover point (default: the scripted
    demonstrator's duration of the whole task; a seed that has not reached it by then is skipped)."""
    from tqdm import tqdm

    from ate_policy.data.sim_demos import (_recorded_seeds, _sim_modules, durable_sidecar, record_tick,
                                           recorder_config)
    from ate_policy.evaluation import observe, open_policy_cell, run_episode
    from ate_policy.recording.recorder import EpisodeRecorder
    from ate_policy.runtime.configuration_task import load_task

    _, demonstrator, _ = _sim_modules()
    if task not in demonstrator.TAKEOVER:
        raise UserError(f"no takeover script for sim task {task!r}; available: {sorted(demonstrator.TAKEOVER)}")
    if episodes < 1:
        raise UserError("--episodes must be >= 1")
    if max_delay_s < 0:
        raise UserError("--takeover-delay-s must be >= 0")
    if policy is None and not Path(checkpoint).exists():
        raise UserError(f"--takeover-from: no checkpoint at {checkpoint}")
    root = Path(output) / f"takeover_{task}"
    if overwrite:
        shutil.rmtree(root, ignore_errors=True)
        skip_log(root).unlink(missing_ok=True)
    kept = _recorded_seeds(root) if root.exists() else []
    already = len(kept)
    skipped = read_skips(root)
    next_seed = max([seed] + [s + 1 for s in kept] + [s + 1 for s in skipped])
    stages, _ = demonstrator.TAKEOVER[task]
    over = {"device": {"device": device}, **({"checkpoint": str(checkpoint)} if checkpoint else {})}
    if policy_time_limit_s is None:
        from ate_sim.scenes import make_scene

        policy_time_limit_s = float(make_scene(task).demo_duration_s)
    pc = open_policy_cell(load_task(task, over), time_limit_s=policy_time_limit_s, policy=policy, seed=next_seed)
    sim, runtime, hw = pc.sim, pc.runtime, pc.render_hw
    instruction = sim.cell.scene.instruction
    cfg = recorder_config(root, task, instruction, hw)
    root.parent.mkdir(parents=True, exist_ok=True)

    def skip(s: int, why: str) -> None:
        skipped[s] = why
        with open(skip_log(root), "a") as f:
            f.write(json.dumps({"seed": s, "why": why}) + "\n")

    attempts, max_attempts = 0, max_attempts or 3 * episodes
    t_base = 0.0   # the recorder's clock continues across episodes (each restarts the cell's time at 0)
    bar = tqdm(total=episodes, initial=already, desc=f"takeover {task}", unit="ep", disable=None if progress else True)
    try:
        runtime.warmup(observe(sim)[0])
        with EpisodeRecorder(cfg, resume=(root / "meta" / "info.json").is_file()) as rec:
            while len(kept) < episodes and attempts < max_attempts:
                s, attempts, next_seed = next_seed, attempts + 1, next_seed + 1
                rule = HandOver(stages, takeover_delay_s(s, max_delay_s))
                res, _ = run_episode(sim, runtime, s, pc.limit_s, hand_over=rule)
                if res["handed_over_s"] is None:
                    skip(s, "the policy succeeded on its own" if res["success"] else
                         f"not reached ({res['failure']}; stages: {', '.join(res['stages']) or '-'})")
                    continue
                runtime.reset(clear_hold=True)
                rec.start_episode(instruction)
                cell = sim.cell

                def on_tick(c, action, base=t_base):
                    record_tick(rec, c, action, base + c.sim_time, hw)

                result = demonstrator.take_over(cell, on_tick=on_tick)
                t_base += cell.sim_time + 1.0
                if result.success:
                    rec.stop_and_save({"seed": s, "sim_task": task, "takeover_s": res["handed_over_s"],
                                       "takeover_policy": str(checkpoint or "given")})
                    kept.append(s)
                    bar.update(1)
                else:
                    rec.discard()
                    skip(s, "the demonstrator's takeover failed")
    finally:
        bar.close()
        runtime.close()
        sim.close()
    if len(kept) < episodes:
        raise UserError(f"only {len(kept)} of {episodes} takeover episodes in {attempts} attempts (skipped: "
                        f"{skipped}); the dataset at {root} holds the successful ones")
    eps = [{"seed": r["seed"], "frames": r["frames"], "takeover_s": r.get("takeover_s"), "episode_index": i}
           for i, r in sorted(durable_sidecar(root).items())]
    return {"root": root, "episodes": eps, "attempts": attempts, "skipped": dict(sorted(skipped.items())),
            "tried": len(eps) + len(skipped), "resumed_with": already,
            "instruction": instruction, "image_hw": tuple(hw)}


def main(args: argparse.Namespace) -> int:
    """Entry from ``ate_policy demo-data --sim TASK --takeover-from CHECKPOINT``."""
    s = record_takeover_demos(args.sim, args.takeover_from, args.output, args.episodes, seed=args.seed,
                              max_delay_s=args.takeover_delay_s, device=args.device, overwrite=args.overwrite)
    frames = sum(e["frames"] for e in s["episodes"])
    resumed = f", {s['resumed_with']} were there already" if s["resumed_with"] else ""
    print(f"takeover dataset '{args.sim}' ({len(s['episodes'])} episodes{resumed}; {s['attempts']} new attempts, "
          f"{len(s['skipped'])} seeds skipped in all; {frames} frames at {contract.FPS} Hz): {s['root']}")
    for seed, why in s["skipped"].items():
        print(f"  seed {seed} skipped: {why}")
    return 0
