"""``ate_policy vae pretrain|adapt|report``.

pretrain / adapt take a draccus config (``--config FILE`` or a shipped recipe name such as ``vae_tiny_pretrain``,
plus dotted overrides, e.g. ``--steps=500 --model.width=64``); without ``--config`` the defaults (the authors'
values) for the sub-command's own stage. ``--fresh`` retrains a stage folder made by another config or other data
(otherwise refused). ``--help`` after the stage lists every field.
"""

from __future__ import annotations

import argparse
import logging

from ate_description.errors import UserError

USAGE = """usage: ate_policy vae <pretrain|adapt|report> [options]

  pretrain  Stage 1: InfoVAE on pre-training action chunks, then the latent statistics mu_phi, sigma_phi
  adapt     Stage 2: fresh InfoVAE on adaptation chunks, reverse KL towards N(mu_phi, sigma_phi^2)
  report    latent-space plot and alignment numbers of a Stage 1 / Stage 2 pair

examples:
  ate_policy vae pretrain --config vae_tiny_pretrain --datasets='[{repo_id: local/x, root: data/x}]'
  ate_policy vae adapt --config vae_paper_adapt --stage1_dir outputs/vae_stage1
  ate_policy vae adapt --stage1_dir outputs/vae_stage1 --datasets='[{repo_id: local/y, root: data/y}]' --chunk_len=20

  without --config: the defaults of the sub-command's stage; --fresh: retrain a stage made by another config
  ate_policy vae report --stage1 outputs/vae_stage1 --stage2 outputs/vae_stage2 --output outputs/report
"""


def summary_line(summary: dict) -> str:
    f = summary["final"]
    line = (f"{summary['stage']}: {summary['steps']} steps on {summary['windows']} chunks "
            f"(skipped {summary['skipped_episodes']} short episodes), final loss {f['loss']:.4f} "
            f"(recon {f['recon']:.4f}, kl {f['kl']:.3f}, mmd {f['mmd']:.4f})")
    if "latent_stats" in summary:
        s = summary["latent_stats"]
        line += f"; latent stats over {s['chunks']} chunks: |mu_phi| {s['mu_norm']:.3f}, mean sigma_phi {s['sigma_mean']:.3f}"
    return line


def run_stage(stage: str, argv: list[str]) -> int:
    from ate_policy.config import parse_cli
    from ate_policy.vae.configuration_vae import VAETrainConfig
    from ate_policy.vae.train import read_summary, train_stage

    fresh = "--fresh" in argv
    argv = [a for a in argv if a != "--fresh"]
    has_config = any(a.split("=", 1)[0] in ("--config", "--config_path") for a in argv)
    if not has_config and not any(a.split("=", 1)[0] == "--stage" for a in argv):
        # No recipe: the config's defaults (the authors' values) for the stage this sub-command trains.
        argv = [f"--stage={stage}", *argv]
    cfg = parse_cli(VAETrainConfig, argv, prog=f"ate_policy vae {stage}")
    if cfg.stage != stage:
        raise UserError(f"the config describes stage {cfg.stage!r} but `vae {stage}` was asked for; "
                        f"use `ate_policy vae {cfg.stage}` or set --stage={stage}")
    fin = train_stage(cfg, fresh=fresh)
    print(summary_line(read_summary(fin)))
    print(f"model: {fin}  (checkpoints: {cfg.out / 'checkpoints'}, TensorBoard: {cfg.out / 'tensorboard'})")
    return 0


def run_report(argv: list[str]) -> int:
    from ate_policy.vae.report import latent_report

    p = argparse.ArgumentParser(prog="ate_policy vae report", description=__doc__)
    p.add_argument("--stage1", required=True, help="folder of a finished Stage-1 run")
    p.add_argument("--stage2", required=True, help="folder of a finished Stage-2 run")
    p.add_argument("--output", required=True, help="folder for latent_space.png and report.json")
    p.add_argument("--split", choices=("val", "all"), default="val",
                   help="held-out episodes of each stage (default) or every episode")
    p.add_argument("--method", choices=("pca", "tsne"), default="pca")
    p.add_argument("--max-chunks", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    r = latent_report(a.stage1, a.stage2, a.output, a.split, a.method, a.max_chunks, a.seed)
    print(f"report: Mahalanobis of adaptation latents {r['mahalanobis_adapt']:.2f} "
          f"(pre-training reference {r['mahalanobis_pretrain']:.2f}), MMD {r['mmd_adapt_vs_pretrain']:.4f}")
    print(f"plot: {r['plot']}  numbers: {a.output}/report.json")
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in ("pretrain", "adapt"):
        return run_stage(cmd, rest)
    if cmd == "report":
        return run_report(rest)
    raise UserError(f"unknown vae command {cmd!r}\n{USAGE}")
