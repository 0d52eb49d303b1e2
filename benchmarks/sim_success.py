"""Does a policy trained by this stack do the task? Demonstrations -> training -> ``ate_policy eval``, per task.

For each task (pick_bun by default; cook_bun with ``--tasks pick_bun cook_bun``), one after the other (long jobs
share two cores: never two at once), each step timed with the 1-minute load average beside it:

1. ``ate_policy demo-data --sim TASK`` (resumed: only missing episodes are recorded) on demo seeds
   ``--demo-seed ..``;
2. the integration check: a demonstration replayed through ``ate_policy eval`` on its own seed (must succeed
   with no refusal);
3. ``ate_policy train --config <recipe>`` (``--policy diffusion``: train_sim_pick_bun, ``pi0``:
   train_sim_pick_bun_pi0) on those demonstrations;
4. ``ate_policy eval`` of the checkpoint on ``--episodes`` unseen seeds (``--eval-seed ..``, objects randomised as
   in the demonstrations), and the blind baseline on the same seeds: a demonstration recorded with another seed,
   replayed (the success a camera-blind policy gets).

Writes ``benchmarks/results/sim_success.json`` (``--smoke``: ``sim_success_smoke.json``)::

    {"tasks": {"<task>": {"policy", "demos", "train_steps", "train_wall_s", "episodes", "success_rate",
                          "refusals", "outcomes", "stages_reached", "blind_success_rate", "replay_success_rate",
                          "eval_seeds", ...}},
     "machine": {...}, "scale": "full" | "smoke"}

Full run (a quiet machine: about 1 h of demonstrations and 2 h of training per task on 2 CPU cores)::

    python benchmarks/sim_success.py --tasks pick_bun --policy diffusion --demos 50 --episodes 20

``--smoke`` (a few minutes, every step once at toy size: 2 demonstrations, 20 training steps, 1 short episode)
checks the script, not the policy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
RECIPES = {("pick_bun", "diffusion"): "train_sim_pick_bun", ("pick_bun", "pi0"): "train_sim_pick_bun_pi0",
           ("cook_bun", "diffusion"): "train_sim_pick_bun", ("cook_bun", "pi0"): "train_sim_pick_bun_pi0",
           ("lift_lid", "diffusion"): "train_sim_pick_bun", ("lift_lid", "pi0"): "train_sim_lift_lid_pi0"}


def machine() -> dict:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version()}


def timed(label: str, log: list, fn, *args, **kwargs):
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    wall = time.perf_counter() - t0
    log.append({"step": label, "wall_s": round(wall, 1), "load_avg_1min_before": round(load0, 2),
                "load_avg_1min_after": round(os.getloadavg()[0], 2)})
    print(f"  {label}: {wall:.0f} s (load {load0:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
    return out, wall


def cli(*args: str) -> None:
    """One ``ate_policy`` command in its own process (what a user runs; its memory is freed after)."""
    subprocess.run([sys.executable, "-m", "ate_policy.cli", *args], check=True, cwd=ROOT)


def eval_json(out: Path) -> dict:
    return json.loads((out / "eval.json").read_text())


def step_time_total(policy_dir: Path, upto: int | None = None) -> float:
    """The summed optimiser step times of a run (``metrics.jsonl``: every step once, across resumed runs too),
    up to step ``upto`` when given: its training time, whichever invocation did it."""
    rows = [json.loads(x) for x in (policy_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return round(sum(r["step_time_s"] for r in rows if upto is None or r["step"] <= upto), 1)


def init_provenance(checkpoint: str | None) -> dict | None:
    """What the weights a run started from had been through: the checkpoint, its run's steps up to it and their
    summed step times (the training a continued run adds its own to), and what that run started from in turn."""
    if not checkpoint:
        return None
    from ate_policy.config import read_train_config

    ckpt = Path(checkpoint)
    out = {"checkpoint": _repo_relative(ckpt)}
    policy_dir = ckpt.parent.parent.parent   # <run>/policy/checkpoints/<step>/pretrained_model
    shipped = ckpt / "provenance.json"       # a shipped policy (--ship) says what made it
    if ckpt.name == "pretrained_model" and ckpt.parent.name.isdigit() and (policy_dir / "metrics.jsonl").is_file():
        step = int(ckpt.parent.name)
        out.update(steps=step, train_step_time_total_s=step_time_total(policy_dir, step))
    elif shipped.is_file():
        prov = json.loads(shipped.read_text())
        out.update({k: prov[k] for k in ("recipe", "train_steps", "lr", "train_step_time_total_s", "success_rate",
                                         "command", "init_from") if k in prov})
        out["steps"] = out.pop("train_steps", None)
        return out
    earlier = (read_train_config(ckpt).get("policy") or {}).get("pretrained_path")
    if earlier:
        out["init_from"] = init_provenance(earlier)
    return out


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository when inside it (results name no machine's folders)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def check_unseen(demo_seeds: list[int], eval_seed: int, episodes: int) -> None:
    """The evaluation scenes must be ones the policy was not trained on: a success rate on its own demonstrations'
    scenes says little (a resumed dataset keeps the seeds it was recorded with, whatever --demo-seed says now)."""
    seen = sorted(set(demo_seeds) & set(range(eval_seed, eval_seed + episodes)))
    if seen:
        raise SystemExit(f"evaluation seeds {eval_seed}..{eval_seed + episodes - 1} include seeds the demonstrations "
                         f"were recorded with ({seen[:5]}{' ...' if len(seen) > 5 else ''}): pick --eval-seed above "
                         f"{max(demo_seeds)}")


def run_task(task: str, a, work: Path) -> dict:
    import yaml

    from ate_policy.data.sim_demos import record_sim_demos

    timings: list = []
    print(f"{task}:", flush=True)
    demos, _ = timed("demonstrations", timings, record_sim_demos, task, work / "demos", a.demos, tuple(a.image_size),
                     seed=a.demo_seed, workers=a.workers, handover_jitter_m=a.handover_jitter_cm / 100.0)
    root = demos["root"]
    demo_seeds = [e["seed"] for e in demos["episodes"]]
    check_unseen(demo_seeds, a.eval_seed, a.episodes)
    train_root, takeover = root, None
    if a.takeover_episodes:   # 1b. the demonstrator finishing from the takeover policy's states, merged in
        train_root, takeover = timed("takeover demonstrations", timings, takeover_data, task, a, work, root)[0]
        check_unseen(takeover["seeds"], a.eval_seed, a.episodes)
    limit = ["--time-limit", str(a.time_limit)] if a.time_limit else []
    common = ["--task", task, "--image-size", *map(str, a.image_size), "--no-progress", *limit]
    # 2. the integration check on the first demonstration's own seed
    timed("replay check", timings, cli, "eval", *common, "--replay", str(root), "--episodes", "1",
          "--seed", str(demo_seeds[0]), "--output", str(work / "eval_replay"), "--videos", "1")
    replay = eval_json(work / "eval_replay")
    # 3. training
    recipe = a.recipe or RECIPES[(task, a.policy)]
    run_dir = work / f"train_{a.policy}"
    _, train_wall = timed("training", timings, cli, "train", "--config", recipe, f"--dataset.root={train_root}",
                          f"--dataset.repo_id=local/sim_{task}", f"--output_dir={run_dir}", f"--steps={a.steps}",
                          f"--save_every={max(1, a.steps // 2)}",
                          *([f"--batch_size={a.batch_size}"] if a.batch_size else []),
                          *([f"--policy.pretrained_path={a.init_from}"] if a.init_from else []),
                          *([f"--policy_optim.lr={a.lr}"] if a.lr else []))
    # 4. the learned policy and the blind baseline on the same unseen seeds
    seeds = ["--episodes", str(a.episodes), "--seed", str(a.eval_seed)]
    timed("evaluation", timings, cli, "eval", *common, "--checkpoint", str(run_dir), *seeds,
          "--output", str(work / "eval_policy"), "--device", "cpu")
    learned = eval_json(work / "eval_policy")
    train_seed = yaml.safe_load((run_dir / "train_config.yaml").read_text()).get("seed")
    timed("blind baseline", timings, cli, "eval", *common, "--replay", str(root), "--blind", *seeds,
          "--output", str(work / "eval_blind"), "--videos", "0")
    blind = eval_json(work / "eval_blind")
    return {"policy": f"{a.policy} (tiny, recipe {recipe})", "recipe": recipe, "demos": len(demo_seeds),
            "init_from": init_provenance(a.init_from), "lr": a.lr,
            "demo_seeds": demo_seeds,
            **({"handover_jitter_cm": a.handover_jitter_cm} if a.handover_jitter_cm else {}),
            **({"takeover": takeover} if takeover else {}),
            "train_steps": a.steps, "train_seed": train_seed,
            # the train command's wall time in this invocation (a few seconds when a complete run was reused) and
            # the sum of the run's step times (its training time, whichever invocation did it)
            "train_wall_s": round(train_wall, 1), "train_step_time_total_s": step_time_total(run_dir / "policy"),
            "episodes": learned["episodes"], "eval_seeds": [a.eval_seed + i for i in range(a.episodes)],
            "success_rate": learned["success_rate"], "refusals": learned["safety_refusals"],
            "outcomes": learned["outcomes"], "time_limit_s": learned["time_limit_s"],
            "stages_reached": learned["stages_reached"],
            "blind_success_rate": blind["success_rate"], "blind_outcomes": blind["outcomes"],
            "blind_stages_reached": blind["stages_reached"],
            "replay_success_rate": replay["success_rate"], "replay_refusals": replay["safety_refusals"],
            "image_hw": list(a.image_size), "timings": timings,
            "reports": {k: str(work / d / "report.md") for k, d in
                        (("policy", "eval_policy"), ("blind", "eval_blind"), ("replay", "eval_replay"))}}


def takeover_data(task: str, a, work: Path, demos_root: Path) -> tuple[Path, dict]:
    """``a.takeover_episodes`` takeover episodes from ``a.takeover_from`` (``ate_policy demo-data --takeover-from``,
    resumed) and the training set: the demonstrations followed by them, merged into ``work/train_data`` (rebuilt
    when either changed)."""
    from ate_policy.data.sim_demos import durable_sidecar, merge_datasets
    from ate_policy.data.sim_takeover import record_takeover_demos

    if not a.takeover_from:
        raise SystemExit("--takeover-episodes needs --takeover-from CHECKPOINT")
    tk = record_takeover_demos(task, a.takeover_from, work / "takeover", a.takeover_episodes, seed=a.takeover_seed,
                               max_delay_s=a.takeover_delay_s)
    merged = work / "train_data" / demos_root.name
    want = [(r.get("seed"), r.get("takeover_s")) for src in (demos_root, tk["root"])
            for _, r in sorted(durable_sidecar(src).items())]
    have = ([(r.get("seed"), r.get("takeover_s")) for _, r in sorted(durable_sidecar(merged).items())]
            if (merged / "meta" / "info.json").is_file() else None)
    if have != want:
        import shutil

        shutil.rmtree(merged, ignore_errors=True)
        merged.parent.mkdir(parents=True, exist_ok=True)
        merge_datasets([], [demos_root, tk["root"]], merged)
    seeds = [e["seed"] for e in tk["episodes"]]
    return merged, {"from": init_provenance(a.takeover_from), "episodes": len(seeds), "seeds": seeds,
                    "attempts": tk["tried"], "skipped": {str(k): v for k, v in tk["skipped"].items()},
                    "takeover_s": [e["takeover_s"] for e in tk["episodes"]], "max_delay_s": a.takeover_delay_s}


def ship(run_dir: Path, dest: Path, result: dict) -> None:
    """The run's final checkpoint into ``dest`` as a self-contained folder (``ship_checkpoint``), with what made
    it and what it scored."""
    from ate_policy.runtime.policy import ship_checkpoint

    summary = json.loads((run_dir / "policy" / "summary.json").read_text())
    keep = ("recipe", "demos", "demo_seeds", "handover_jitter_cm", "init_from", "lr", "train_steps", "train_seed",
            "train_step_time_total_s", "episodes", "eval_seeds", "success_rate", "blind_success_rate", "command",
            "date")
    ship_checkpoint(Path(summary["final_checkpoint"]), dest, provenance={
        "fingerprint": summary.get("fingerprint"), "git_commit": summary.get("git_commit"),
        **{k: result[k] for k in keep if k in result}})
    print(f"shipped {summary['final_checkpoint']} -> {dest}")


def _key(task: str, a) -> str:
    """The result's name in sim_success.json: the task, with a recipe other than its default in brackets, and
    ``--label`` after it."""
    key = task if a.recipe in (None, RECIPES[(task, a.policy)]) else f"{task} [{a.recipe}]"
    return f"{key} {a.label}" if a.label else key


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["pick_bun"], choices=("pick_bun", "cook_bun", "lift_lid"))
    p.add_argument("--policy", choices=("diffusion", "pi0"), default="diffusion")
    p.add_argument("--demos", type=int, default=50)
    p.add_argument("--demo-seed", type=int, default=0, help="demonstrations use seeds from here on")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--eval-seed", type=int, default=1000,
                   help="evaluation episodes use seeds from here on; refused where they overlap the demonstrations'")
    p.add_argument("--time-limit", type=float, default=None, help="episode limit (default: 2x the demonstrator's)")
    p.add_argument("--image-size", type=int, nargs=2, default=(48, 64))
    p.add_argument("--workers", type=int, default=2, help="demonstration worker processes")
    p.add_argument("--handover-jitter-cm", type=float, default=0.0,
                   help="cook_bun demonstrations: the bun is handed over anywhere within this distance of the left "
                        "plate's centre (ate_policy demo-data --handover-jitter-cm)")
    p.add_argument("--takeover-from", default=None, metavar="CHECKPOINT",
                   help="also train on demonstrations that take over from this policy's own states "
                        "(ate_policy demo-data --takeover-from: DAgger-style), merged after the demonstrations")
    p.add_argument("--takeover-episodes", type=int, default=0, help="how many takeover episodes (default 0: none)")
    p.add_argument("--takeover-seed", type=int, default=2000, help="takeover episodes use seeds from here on")
    p.add_argument("--takeover-delay-s", type=float, default=4.0,
                   help="the takeover comes up to this long after the task's takeover stages (see demo-data)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default: the recipe's)")
    p.add_argument("--recipe", default=None,
                   help="training recipe (ate_policy/configs) instead of the task's default; the result is kept "
                        "under '<task> [<recipe>]' beside the default recipe's")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start training from this checkpoint's weights (a `pretrained_model` folder) in a fresh run "
                        "with its own learning-rate schedule: how a finished run is trained further")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    p.add_argument("--label", default=None,
                   help="appended to the result's name in sim_success.json, so the run is kept beside others")
    p.add_argument("--work", default=None, help="folder for data, runs and reports (default outputs/sim_success)")
    p.add_argument("--smoke", action="store_true", help="every step once at toy size (a few minutes)")
    p.add_argument("--ship", action="store_true",
                   help="copy each task's final checkpoint into ate_policy/checkpoints/sim_<task>_<policy> (the "
                        "package's shipped policies; its tokenizer travels with it)")
    a = p.parse_args(argv)
    from ate_policy.quiet import quiet_libraries

    quiet_libraries()   # the demonstrations are merged in this process
    if a.smoke:
        a.demos, a.steps, a.episodes, a.time_limit, a.workers = 2, 10, 1, a.time_limit or 3.0, 1
        a.batch_size = a.batch_size or 2
    work = Path(a.work or ("outputs/sim_success_smoke" if a.smoke else "outputs/sim_success"))
    results = {"scale": "smoke" if a.smoke else "full", "machine": machine(),
               "load_avg_at_start": os.getloadavg(), "tasks": {}}
    out = RESULTS / ("sim_success_smoke.json" if a.smoke else "sim_success.json")
    # tasks measured by earlier invocations stay (each entry carries its own date, command, machine and loads)
    earlier = json.loads(out.read_text()).get("tasks", {}) if out.exists() and not a.smoke else {}
    t0 = time.perf_counter()
    for task in a.tasks:
        r = run_task(task, a, work / task)
        r.update({"date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(["python", *sys.argv]),
                  "machine": results["machine"], "eval_seed": a.eval_seed})
        results["tasks"][_key(task, a)] = r
    results["tasks"] = {**{k: v for k, v in earlier.items() if k not in results["tasks"]}, **results["tasks"]}
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    results["load_avg_at_end"] = os.getloadavg()
    if a.ship:
        for task in a.tasks:
            ship(work / task / f"train_{a.policy}", ROOT / "ate_policy" / "checkpoints" / f"sim_{task}_{a.policy}",
                 results["tasks"][_key(task, a)])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\n{'task':10} {'policy':40} {'demos':>5} {'steps':>6} {'train s':>8} {'episodes':>8} {'success':>8} "
          f"{'blind':>6} {'replay':>6}")
    for task in a.tasks:                                # this invocation's tasks
        r = results["tasks"][_key(task, a)]
        print(f"{task:10} {r['policy']:40} {r['demos']:5d} {r['train_steps']:6d} {r['train_step_time_total_s']:8.0f} "
              f"{r['episodes']:8d} {r['success_rate']:8.0%} {r['blind_success_rate']:6.0%} "
              f"{r['replay_success_rate']:6.0%}")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
