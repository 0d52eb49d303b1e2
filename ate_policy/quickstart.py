"""``ate_policy quickstart``: the main job on embedded defaults, on CPU, with no hardware and no network.

demo data -> Stage 1 InfoVAE + latent statistics -> Stage 2 InfoVAE -> latent-space report -> tiny PI0
fine-tuned with ATE guidance (``ate_policy.train.run`` with the ``train_tiny`` recipe, pointed at this run's
data and its two VAE stages) -> one short episode of that policy in the simulated cook_bun cell through the
deployment runtime and the drivers' safety layer (``ate_policy eval``) -> a policy trained by this stack on sim
demonstrations (shipped: ``SIM_POLICY``) doing the lift_lid task on unseen scenes, its success rate printed.
Re-running it skips what is already complete (and resumes what was interrupted); ``--fresh`` starts over.

The stages are the ``STAGES`` list below: each takes the shared ``Run`` (options, output folder, the
artefacts of earlier stages) and returns its one-line summary. A new stage (e.g. an evaluation in the sim
cell) is one more function appended to the list; it finds what it needs in ``run.artefacts``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ate_policy.config import load_yaml
from ate_policy.data.demo import DUAL_NAME, PRETRAIN_NAME, DemoSpec, write_demo_data
from ate_policy.vae.configuration_vae import VAETrainConfig

TRAIN_RECIPE = "train_tiny"
# The sim stage's policy: a tiny PI0 trained by this stack (recipe train_sim_lift_lid_pi0) on 50 scripted lift_lid
# demonstrations (seeds 0-49), shipped with the package; its provenance.json says what made it and what it scored
# (docs/sim_success.md: the command that reproduces it).
SIM_POLICY = Path(__file__).parent / "checkpoints" / "sim_lift_lid_pi0"
SIM_TASK = "lift_lid"
SIM_EVAL_SEED = 1000  # evaluation scenes the policy never saw (its demonstrations used seeds 0-49)


@dataclass
class Run:
    out: Path
    seed: int = 0
    device: str = "cpu"
    # Policy fine-tuning steps; None = the recipe's.
    policy_steps: int | None = None
    # Simulated seconds of the evaluation episode.
    eval_seconds: float = 5.0
    # Episodes of the sim stage (the shipped sim-trained policy), on unseen seeds.
    sim_episodes: int = 3
    # name -> path of everything written so far (datasets, stage folders, checkpoints, plots)
    artefacts: dict[str, Path] = field(default_factory=dict)


def _vae_cfg(recipe: str, run: Run, name: str, dataset: Path, **extra) -> VAETrainConfig:
    overrides = {"output_dir": str(run.out / name), "device": run.device, "seed": run.seed,
                 "datasets": [{"repo_id": f"local/{dataset.name}", "root": str(dataset)}], **extra}
    return load_yaml(VAETrainConfig, recipe, overrides)


# --- the stages ---------------------------------------------------------------------------------------------
def stage_demo_data(run: Run) -> str:
    data = run.out / "data"
    run.artefacts["adaptation data"] = data / DUAL_NAME
    run.artefacts["pre-training data"] = data / PRETRAIN_NAME
    if all((run.artefacts[k] / "meta" / "info.json").exists()
           for k in ("adaptation data", "pre-training data")):
        return f"reused {data}"
    spec = DemoSpec(seed=run.seed)
    paths = write_demo_data(data, spec, overwrite=True)
    return (f"{spec.episodes} dual-arm episodes (16-dim, 3 cameras) -> {paths['adaptation']}; "
            f"{spec.pretrain_episodes} single-arm pre-training episodes -> {paths['pretrain']}")


def _vae_stage(cfg: VAETrainConfig) -> str:
    from ate_policy.vae.cli import summary_line
    from ate_policy.vae.train import read_summary, stage_complete, train_stage

    reused = stage_complete(cfg)
    fin = train_stage(cfg)
    return f"{'reused: ' if reused else ''}{summary_line(read_summary(fin))} -> {fin}"


def stage_vae1(run: Run) -> str:
    run.artefacts["vae stage 1"] = run.out / "vae_stage1"
    return _vae_stage(_vae_cfg("vae_tiny_pretrain", run, "vae_stage1", run.artefacts["pre-training data"]))


def stage_vae2(run: Run) -> str:
    run.artefacts["vae stage 2"] = run.out / "vae_stage2"
    # Chunk length and normalisation as the policy of the last stage reads its actions (train_tiny: chunk 10,
    # mean/std): ate_policy.train finds this Stage 2 complete in the same folder and steers with it.
    return _vae_stage(_vae_cfg("vae_tiny_adapt", run, "vae_stage2", run.artefacts["adaptation data"],
                               stage1_dir=str(run.artefacts["vae stage 1"])))


def stage_report(run: Run) -> str:
    from ate_policy.vae.report import latent_report

    numbers = run.out / "report" / "report.json"
    newest_stage = max((run.artefacts[k] / "final" / "summary.json").stat().st_mtime
                       for k in ("vae stage 1", "vae stage 2"))
    reused = numbers.exists() and numbers.stat().st_mtime >= newest_stage
    if reused:
        r = json.loads(numbers.read_text())
    else:
        r = latent_report(run.artefacts["vae stage 1"], run.artefacts["vae stage 2"], run.out / "report",
                          seed=run.seed)
    run.artefacts["latent report"] = Path(r["plot"])
    return (f"{'reused: ' if reused else ''}Mahalanobis of held-out adaptation latents under N(mu_phi, "
            f"sigma_phi^2) {r['mahalanobis_adapt']:.2f} (pre-training reference "
            f"{r['mahalanobis_pretrain']:.2f}) -> {r['plot']}")


def policy_config(run: Run):
    """The ``train_tiny`` recipe pointed at this run: its data, its Stage 1 and (same folder) its Stage 2."""
    from ate_policy.train import ATETrainConfig

    data = run.artefacts["adaptation data"]
    overrides = {"output_dir": str(run.out), "seed": run.seed,
                 "device": "cpu" if run.device == "cpu" else "auto",
                 "dataset": {"repo_id": f"local/{data.name}", "root": str(data)},
                 "stage1_dir": str(run.artefacts["vae stage 1"]),
                 # The Stage 2 trained above, as train_tiny describes it (its fingerprint must match to be reused).
                 "vae_stage2": {"seed": run.seed}}
    if run.policy_steps is not None:
        overrides["steps"] = run.policy_steps
        overrides["save_every"] = max(1, run.policy_steps // 2)
    return load_yaml(ATETrainConfig, TRAIN_RECIPE, overrides)


def stage_policy(run: Run) -> str:
    from ate_policy.train import run as train_run

    cfg = policy_config(run)
    policy_dir = run.out / "policy"
    reused = (policy_dir / "summary.json").exists()
    folders = train_run(cfg)
    summary = json.loads((folders["policy"] / "summary.json").read_text())
    rows = [json.loads(ln) for ln in (policy_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    tail = rows[-max(1, len(rows) // 5):]  # the last fifth: less noisy than the last step alone
    loss = sum(r["loss"] for r in tail) / len(tail)
    run.artefacts["policy checkpoint"] = Path(summary["final_checkpoint"])
    run.artefacts["policy logs"] = policy_dir / "tensorboard"
    guidance = ""
    if summary["guidance"]:
        g = sum(r.get("guidance_norm", 0.0) for r in tail) / len(tail)
        clamped = sum(r.get("guidance_clamped_frac", 0.0) for r in tail) / len(tail)
        guidance = f", guidance lambda {summary['lambda']:g}: |G| {g:.3f}, clamped {clamped:.1%}"
    return (f"{'reused: ' if reused else ''}tiny PI0 + ATE, {summary['steps']} steps, "
            f"batch {cfg.batch_size}, loss {loss:.4f} "
            f"(mean of the last {len(tail)} step{'s' * (len(tail) > 1)}){guidance} "
            f"-> {summary['final_checkpoint']}")


def _evaluated(run: Run, out: Path, task_name: str, checkpoint: Path, **kwargs) -> tuple[dict, bool]:
    """(``ate_policy eval``'s summary of ``checkpoint`` on ``task_name`` in ``out``, reused): an earlier run's
    eval.json when there is one; ``kwargs`` go to ``evaluate`` (episodes, seed, time limit, videos)."""
    from ate_policy.evaluation import evaluate
    from ate_policy.runtime import load_task

    if (out / "eval.json").exists():
        return json.loads((out / "eval.json").read_text()), True
    device = {"device": "cpu", "dtype": "float32", "compile": False} if run.device == "cpu" else {}
    task = load_task(task_name, {"checkpoint": str(checkpoint), "device": device})
    return evaluate(task, output=out, progress=False, **kwargs), False


def stage_eval(run: Run) -> str:
    """The fine-tuned policy in the simulated cook_bun cell through the deployment runtime and the drivers'
    safety layer (``ate_policy eval``): one short episode, to show the path from checkpoint to robot commands.
    The demo policy learned synthetic motions, not the task: success is not expected."""
    out = run.out / "eval"
    s, reused = _evaluated(run, out, "cook_bun", run.artefacts["policy checkpoint"], episodes=1, seed=run.seed,
                           time_limit_s=run.eval_seconds)
    run.artefacts["sim evaluation"] = out / "report.md"
    ep = s["per_episode"][0]
    refusals = s["safety_refusals"]
    refused = f"{sum(refusals.values())} command(s) refused by the safety layer"
    if refusals:
        refused += f" (mostly {max(refusals, key=refusals.get)})"
    if ep.get("held"):   # the cell supervisor held both arms, as on the robot: the episode ended there
        refused += f"; the cell held at {ep['held']['at_s']} s ({ep['held']['reason']}), a failure"
    return (f"{'reused: ' if reused else ''}cook_bun in the sim cell, {ep['ticks']} ticks at 20 Hz "
            f"(lockstep), success {s['successes']}/{s['episodes']}, missed ticks {s['missed_ticks']}, "
            f"{refused} -> {out / 'report.md'}")


def stage_sim_policy(run: Run) -> str:
    """A policy trained by this stack on sim demonstrations doing a task: the shipped tiny PI0 (``SIM_POLICY``)
    sets the steamer's lid aside in the simulated cell, through the same runtime, safety layer and cell supervisor
    as above, on scenes it never saw (objects randomised as in its demonstrations)."""
    out = run.out / "sim_policy"
    s, reused = _evaluated(run, out, SIM_TASK, SIM_POLICY, episodes=run.sim_episodes, seed=SIM_EVAL_SEED + run.seed,
                           videos=1)
    run.artefacts["sim policy evaluation"] = out / "report.md"
    fails = "".join(f", {k} {n}" for k, n in s["outcomes"].items() if n and k != "success")
    refusals = sum(s["safety_refusals"].values())
    made = json.loads((SIM_POLICY / "provenance.json").read_text())
    return (f"{'reused: ' if reused else ''}{SIM_TASK} by the shipped tiny PI0 trained here on {made['demos']} sim "
            f"demonstrations ({made['train_steps']} steps): success {s['successes']}/{s['episodes']}{fails} on "
            f"unseen seeds {s['seed']}..{s['seed'] + s['episodes'] - 1}, {refusals} safety refusal(s), "
            f"{s['clamped_ticks']} rate-limited tick(s) -> {out / 'report.md'}")


# (name printed in brackets, function). Append a stage here; it runs after every earlier one.
STAGES: list[tuple[str, Callable[[Run], str]]] = [
    ("demo-data", stage_demo_data),
    ("vae stage 1", stage_vae1),
    ("vae stage 2", stage_vae2),
    ("report", stage_report),
    ("policy", stage_policy),
    ("sim eval", stage_eval),
    ("sim policy", stage_sim_policy),
]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ate_policy quickstart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="outputs/quickstart", help="folder for every artefact")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--policy-steps", type=int, default=None,
                   help=f"policy fine-tuning steps (default: the {TRAIN_RECIPE} recipe's)")
    p.add_argument("--eval-seconds", type=float, default=5.0,
                   help="simulated seconds of the sim evaluation episode (default 5)")
    p.add_argument("--sim-episodes", type=int, default=3,
                   help=f"episodes of the shipped sim-trained policy on {SIM_TASK} (default 3)")
    p.add_argument("--fresh", action="store_true", help="delete --output first instead of resuming")
    a = p.parse_args(argv)
    if a.sim_episodes < 1:
        p.error("--sim-episodes must be >= 1")
    run = Run(out=Path(a.output), seed=a.seed, device=a.device, policy_steps=a.policy_steps,
              eval_seconds=a.eval_seconds, sim_episodes=a.sim_episodes)
    if a.fresh and run.out.exists():
        shutil.rmtree(run.out)
    t0 = time.perf_counter()
    for name, stage in STAGES:
        t_stage = time.perf_counter()
        line = stage(run)
        print(f"[{name}] {line} ({time.perf_counter() - t_stage:.0f} s)", flush=True)

    print(f"\nquickstart finished in {time.perf_counter() - t0:.0f} s; everything is under {run.out}/")
    width = max(len(k) for k in run.artefacts)
    for k, v in run.artefacts.items():
        print(f"  {k.ljust(width)}  {v}")
    return 0
