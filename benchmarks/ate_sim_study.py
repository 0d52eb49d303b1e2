"""The ATE study in the sim cell: does latent guidance make adapting a pre-trained policy to a new task faster or
better than plain fine-tuning? (The paper's cross-task setting, Table 1, and its data-scarce Table 12, in our cell.)

* **pre-training** (stands in for the pre-trained VLA): a tiny PI0 trained on 50 lift_lid demonstrations (seeds
  0-49) - by default the shipped ``ate_policy/checkpoints/sim_lift_lid_pi0`` (``--pretrain train`` trains it
  again with its recipe); the Stage-1 InfoVAE on those same 50 demonstrations' actions (trained once, by the first
  guided run, then reused through ``stage1_dir``);
* **adaptation**: lid_aside_far (the same grasp, the lid set down 8.6 cm from lift_lid's aside place; or
  ``--adapt-task lid_on_plate``: onto the randomised left plate, harder) with K demonstrations (seeds 2000 on; the
  first K of one set, so K=5 is inside K=10); each run
  fine-tunes the pre-trained policy with lambda = 0 (plain), +2 (ATE, the paper's sign) or -2 (flipped), equal
  steps, learning rate and data, several training seeds; guided runs train their Stage-2 InfoVAE on the K
  demonstrations (the pipeline's default);
* **normalisation**: the adapted policy normalises with the K adaptation demonstrations' statistics (``ate_policy
  train`` builds the processors from the fine-tuning dataset), and Stage 2 reads its chunks with the same
  statistics, mode and std floor (the training pipeline's contract check refuses a mismatch);
* **evaluation**: every saved checkpoint of every run through ``ate_policy eval`` on the same unseen seeds (3000
  on): learning curves with success, failure reasons, refusals and motion quality; beside them, on the same seeds,
  the pre-trained policy without adaptation (step 0) and the blind baseline (a K demonstration replayed); the
  latent-space alignment numbers of each guided run's Stage 1 / Stage 2 pair (``ate_policy vae report``).

The paper's own pair (pick_bun -> cook_bun, ``--pretrain-task pick_bun --adapt-task cook_bun --pretrain train``) is
out of reach of a CPU-size policy (no policy trained here does pick_bun yet: docs/sim_success.md), so every run
would score 0 and say nothing about ATE; lift_lid -> lid_aside_far is a pair a tiny PI0 adapts within minutes on
this machine (lid_on_plate: 0-1 of 10 after 800 steps with K = 10). Results and limits: docs/training.md.

Scales (``--scale``):

* ``cpu`` - the minimum grid for this 2-core machine: K = 10, lambda in {0, +2, -2}, 3 seeds, 800 steps,
  2 checkpoints, 10 evaluation episodes each (84 minutes here, load ~1.7);
* ``gpu`` - the full grid for a lab's GPU machine: K in {5, 10, 20}, lambda in {0, +2, -2}, 3 seeds, 2000 steps,
  4 checkpoints, 20 evaluation episodes each;
* ``--smoke`` - every step once at toy size (K = 2, lambda in {0, +2}, 1 seed, 4 steps, 1 short episode): checks
  the script in a few minutes, not ATE.

Every step is resumable: re-running the same command skips finished trainings and evaluations, and the results
file is rewritten after every run. Writes ``benchmarks/results/ate_sim_study.json`` (``--smoke``:
``ate_sim_study_smoke.json``): every run's config, seed, success per checkpoint (with Wilson 95 % intervals),
motion quality and alignment numbers, a summary per (K, lambda, step) and ``ate_sim_study.png`` (learning
curves) beside it.

    python benchmarks/ate_sim_study.py --scale cpu      # this machine, background, ~85 min
    python benchmarks/ate_sim_study.py --scale gpu      # a GPU machine
    python benchmarks/ate_sim_study.py --smoke          # minutes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
SHIPPED = ROOT / "ate_policy" / "checkpoints" / "sim_lift_lid_pi0"

SCALES = {
    "cpu": {"ks": [10], "lams": [0.0, 2.0, -2.0], "seeds": [0, 1, 2], "pretrain_demos": 50, "pretrain_steps": 4000,
            "adapt_steps": 800, "checkpoints": 2, "episodes": 10, "device": "cpu", "batch_size": 32, "lr": 5e-4},
    "gpu": {"ks": [5, 10, 20], "lams": [0.0, 2.0, -2.0], "seeds": [0, 1, 2], "pretrain_demos": 50,
            "pretrain_steps": 4000, "adapt_steps": 2000, "checkpoints": 4, "episodes": 20, "device": "auto",
            "batch_size": 32, "lr": 5e-4},
    "smoke": {"ks": [2], "lams": [0.0, 2.0], "seeds": [0], "pretrain_demos": 2, "pretrain_steps": 4,
              "adapt_steps": 4, "checkpoints": 1, "episodes": 1, "device": "cpu", "time_limit": 2.0,
              "batch_size": 2, "vae_steps": 5, "lr": 3e-4},
}
RECIPE = "train_sim_lift_lid_pi0"      # tiny PI0; the adaptation runs override dataset, steps and learning rate
PRETRAIN_SEED, ADAPT_SEED, EVAL_SEED = 0, 2000, 3000
TINY_VAE = {"action_dim": 32, "width": 32, "n_heads": 4, "ffn_dim": 64, "n_layers": 2, "dropout": 0.0}


def _model_args(stage: str) -> list[str]:
    return [f"--{stage}.model.{k}={v}" for k, v in TINY_VAE.items()]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of k successes in n trials."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ate_policy.cli", *args], check=True, cwd=ROOT)


def demos(task: str, root: Path, n: int, seed: int, image_hw, workers: int) -> Path:
    from ate_policy.data.sim_demos import record_sim_demos

    return record_sim_demos(task, root, n, tuple(image_hw), seed=seed, workers=workers)["root"]


def k_subsets(task: str, ks: list[int], image_hw, workers: int, work: Path) -> dict[int, Path]:
    """Datasets of the first K adaptation demonstrations: K=5 is recorded, copied and resumed to 10, and so on."""
    out, prev = {}, None
    for k in sorted(ks):
        d = work / f"adapt_K{k}"
        if not (d / f"sim_{task}" / "meta" / "info.json").exists() and prev is not None:
            shutil.copytree(prev, d / f"sim_{task}")
        out[k] = demos(task, d, k, ADAPT_SEED, image_hw, workers)
        prev = out[k]
    return out


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    return sorted((int(p.name), p / "pretrained_model") for p in (run / "policy" / "checkpoints").glob("[0-9]*"))


def evaluate(out: Path, sc: dict, a, *source: str) -> dict:
    """``ate_policy eval`` of ``source`` (``--checkpoint DIR`` or ``--replay DATASET --blind``) on the study's
    unseen seeds, once (a finished report is reused)."""
    limit = ["--time-limit", str(sc["time_limit"])] if sc.get("time_limit") else []
    if not (out / "eval.json").exists():
        cli("eval", "--task", a.adapt_task, *source, "--episodes", str(sc["episodes"]), "--seed", str(EVAL_SEED),
            "--image-size", *map(str, a.image_size), "--output", str(out), "--no-progress", "--videos", "1",
            "--device", "cpu", *limit)
    s = json.loads((out / "eval.json").read_text())
    lo, hi = wilson(s["successes"], s["episodes"])
    return {"success_rate": s["success_rate"], "successes": s["successes"], "episodes": s["episodes"],
            "ci95": [lo, hi], "outcomes": s.get("outcomes"), "refusals": s["safety_refusals"],
            "motion_mean": s["motion_mean"]}


def pretrained(sc: dict, a, work: Path, pre_demos: Path) -> tuple[Path, dict]:
    """The pre-trained policy's checkpoint folder and what made it."""
    if a.pretrain == "shipped":
        prov = json.loads((SHIPPED / "provenance.json").read_text())
        seeds = list(range(PRETRAIN_SEED, PRETRAIN_SEED + sc["pretrain_demos"]))
        if prov.get("demo_seeds") != seeds or a.pretrain_task != "lift_lid":
            raise SystemExit(f"the shipped checkpoint was trained on lift_lid seeds {prov.get('demo_seeds')}, not "
                             f"{a.pretrain_task} seeds {seeds}: use --pretrain train")
        return SHIPPED, {"source": "shipped", "path": str(SHIPPED.relative_to(ROOT)), "demos": prov["demos"],
                         "steps": prov["train_steps"], "recipe": prov["recipe"],
                         "train_step_time_total_s": prov.get("train_step_time_total_s")}
    run = work / "pretrain"
    tp = time.perf_counter()
    cli("train", "--config", RECIPE, f"--dataset.root={pre_demos}", f"--dataset.repo_id=local/sim_{a.pretrain_task}",
        f"--output_dir={run}", f"--steps={sc['pretrain_steps']}", f"--save_every={sc['pretrain_steps']}",
        "--guidance.enable=false", f"--device={sc['device']}", f"--batch_size={sc['batch_size']}")
    return run / "policy" / "checkpoints" / "last" / "pretrained_model", {
        "source": "trained", "demos": sc["pretrain_demos"], "steps": sc["pretrain_steps"], "recipe": RECIPE,
        "wall_s": round(time.perf_counter() - tp, 1), "load_avg_1min": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--work", default=None, help="folder for data and runs (default outputs/ate_sim_study[_smoke])")
    p.add_argument("--pretrain", choices=("shipped", "train"), default=None,
                   help="the pre-trained policy: the shipped lift_lid checkpoint (default) or one trained here "
                        "(--smoke: train)")
    p.add_argument("--pretrain-task", default="lift_lid")
    p.add_argument("--adapt-task", default="lid_aside_far", help="lid_aside_far (default) or lid_on_plate (harder)")
    p.add_argument("--image-size", type=int, nargs=2, default=(48, 64))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--report", action="store_true",
                   help="run nothing: re-summarise the results file, redraw its plot and print the table")
    a = p.parse_args(argv)
    scale = "smoke" if a.smoke else a.scale
    sc = SCALES[scale]
    out = RESULTS / f"ate_sim_study{'_smoke' if a.smoke else ''}.json"
    if a.report:
        log = json.loads(out.read_text())
        log["summary"] = summarise(log["runs"])
        out.write_text(json.dumps(log, indent=2))
        return report(log, out)
    a.pretrain = a.pretrain or ("train" if a.smoke else "shipped")
    work = Path(a.work or f"outputs/ate_sim_study{'_smoke' if a.smoke else ''}")
    t0 = time.perf_counter()
    log = {"scale": scale, "grid": sc, "recipe": RECIPE, "policy": "pi0 (tiny)", "pretrain_task": a.pretrain_task,
           "adapt_task": a.adapt_task, "image_hw": list(a.image_size),
           "eval_seeds": [EVAL_SEED + i for i in range(sc["episodes"])],
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                       "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(["python", *sys.argv]),
           "load_avg_at_start": os.getloadavg(), "normalisation": "adapted policy and Stage 2: the K adaptation "
           "demonstrations' statistics (mean_std, std floor 1e-3)", "runs": []}

    def save() -> None:
        log["summary"] = summarise(log["runs"])
        log["wall_s"] = round(time.perf_counter() - t0, 1)
        log["load_avg_now"] = os.getloadavg()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(log, indent=2))

    workers = 1 if a.smoke else a.workers
    pre_demos = demos(a.pretrain_task, work / "pretrain_demos", sc["pretrain_demos"], PRETRAIN_SEED, a.image_size,
                      workers)
    pre_ckpt, log["pretrain"] = pretrained(sc, a, work, pre_demos)
    subsets = k_subsets(a.adapt_task, sc["ks"], a.image_size, workers, work)
    # step 0 of every curve: the pre-trained policy as it is; and the camera-blind baseline on the same seeds
    log["pretrained_on_adapt_task"] = evaluate(work / "eval_pretrained", sc, a, "--checkpoint", str(pre_ckpt))
    log["blind"] = evaluate(work / "eval_blind", sc, a, "--replay", str(subsets[max(sc["ks"])]), "--blind")
    save()
    stage1_dir = None
    for k in sc["ks"]:
        for lam in sc["lams"]:
            for seed in sc["seeds"]:
                name = f"K{k}_lam{lam:+g}_seed{seed}"
                run = work / "runs" / name
                args = ["train", "--config", RECIPE, f"--dataset.root={subsets[k]}",
                        f"--dataset.repo_id=local/sim_{a.adapt_task}", f"--output_dir={run}",
                        f"--policy.pretrained_path={pre_ckpt.resolve()}", f"--steps={sc['adapt_steps']}",
                        f"--save_every={max(1, sc['adapt_steps'] // sc['checkpoints'])}", f"--seed={seed}",
                        f"--device={sc['device']}", f"--batch_size={sc['batch_size']}",
                        f"--policy_optim.lr={sc['lr']}"]
                if lam == 0:
                    args.append("--guidance.enable=false")
                else:
                    args += ["--guidance.enable=true", f"--guidance.lam={lam}"]
                    args += [*_model_args("vae_stage2"), f"--vae_stage2.steps={sc.get('vae_steps', 300)}"]
                    if stage1_dir is None:
                        pre_ds = f"[{{repo_id: local/sim_{a.pretrain_task}, root: {pre_demos}}}]"
                        args += [f"--vae_stage1.datasets={pre_ds}",
                                 *_model_args("vae_stage1"), f"--vae_stage1.steps={sc.get('vae_steps', 300)}"]
                    else:
                        args.append(f"--stage1_dir={stage1_dir}")
                tr = time.perf_counter()
                cli(*args)
                wall = time.perf_counter() - tr
                steps_file = run / "policy" / "metrics.jsonl"
                step_times = [json.loads(x)["step_time_s"] for x in steps_file.read_text().splitlines() if x.strip()]
                entry = {"name": name, "K": k, "lambda": lam, "seed": seed, "steps": sc["adapt_steps"],
                         "train_wall_s": round(wall, 1), "train_step_time_total_s": round(sum(step_times), 1),
                         "load_avg_1min": os.getloadavg()[0], "checkpoints": []}
                if lam != 0:
                    if stage1_dir is None:
                        stage1_dir = str(run / "vae_stage1")
                    rep = run / "latent_report"
                    if not (rep / "report.json").exists():
                        cli("vae", "report", "--stage1", stage1_dir, "--stage2", str(run / "vae_stage2"),
                            "--output", str(rep))
                    entry["alignment"] = json.loads((rep / "report.json").read_text())
                for step, ckpt in checkpoints(run):
                    entry["checkpoints"].append({"step": step, **evaluate(run / f"eval_{step:08d}", sc, a,
                                                                          "--checkpoint", str(ckpt))})
                log["runs"].append(entry)
                save()
                print(f"{name}: " + ", ".join(f"step {c['step']} {c['success_rate']:.0%}" for c in entry["checkpoints"]),
                      flush=True)
    log["load_avg_at_end"] = os.getloadavg()
    save()
    return report(log, out)


def report(log: dict, out: Path) -> int:
    """The plot beside ``out`` and the summary table on stdout."""
    plot(log, out.with_suffix(".png"))
    print(f"\npre-trained policy, no adaptation: {log['pretrained_on_adapt_task']['success_rate']:.0%}; "
          f"blind baseline: {log['blind']['success_rate']:.0%} ({log['grid']['episodes']} episodes)")
    print(f"{'K':>3} {'lambda':>7} {'step':>6} {'success (mean over seeds)':>26} {'95 % CI (pooled)':>18} "
          f"{'per seed':>16}")
    for row in log["summary"]:
        per_seed = " ".join(f"{x:.0%}" for x in row.get("success_per_seed", []))
        print(f"{row['K']:3d} {row['lambda']:+7g} {row['step']:6d} {row['success_rate']:26.0%} "
              f"{row['ci95'][0]:8.0%} - {row['ci95'][1]:4.0%} {per_seed:>16}")
    print(f"-> {out}")
    return 0


def summarise(runs: list[dict]) -> list[dict]:
    """Per (K, lambda, checkpoint step): mean success over seeds, and the Wilson interval of the pooled episodes."""
    groups: dict = {}
    for r in runs:
        for c in r["checkpoints"]:
            groups.setdefault((r["K"], r["lambda"], c["step"]), []).append(c)
    out = []
    for (k, lam, step), cs in sorted(groups.items()):
        s, n = sum(c["successes"] for c in cs), sum(c["episodes"] for c in cs)
        jerk = [c["motion_mean"]["left"]["jerk_rms_rad_s3"] for c in cs if c.get("motion_mean")]
        out.append({"K": k, "lambda": lam, "step": step, "seeds": len(cs), "episodes": n,
                    "success_rate": sum(c["success_rate"] for c in cs) / len(cs), "ci95": list(wilson(s, n)),
                    "success_per_seed": [c["success_rate"] for c in cs],
                    "left_jerk_rms_rad_s3": sum(jerk) / len(jerk) if jerk else None})
    return out


def plot(log: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({r["K"] for r in log["summary"]})
    pre = log["pretrained_on_adapt_task"]
    fig, axes = plt.subplots(1, len(ks), figsize=(5 * len(ks), 3.5), squeeze=False)
    for ax, k in zip(axes[0], ks):
        for lam in sorted({r["lambda"] for r in log["summary"]}):
            rows = [r for r in log["summary"] if r["K"] == k and r["lambda"] == lam]
            x = [0] + [r["step"] for r in rows]     # step 0: the pre-trained policy, not adapted
            y = [pre["success_rate"]] + [r["success_rate"] for r in rows]
            ax.plot(x, y, marker="o", label=f"lambda {lam:+g}")
            ax.fill_between(x, [pre["ci95"][0]] + [r["ci95"][0] for r in rows],
                            [pre["ci95"][1]] + [r["ci95"][1] for r in rows], alpha=0.15)
        ax.axhline(log["blind"]["success_rate"], color="grey", linestyle=":", label="blind replay")
        ax.set_title(f"{log['adapt_task']}, K = {k} demonstrations ({log['scale']})")
        ax.set_xlabel("fine-tuning step")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
