"""``ate_policy quickstart``: the main job on embedded defaults, on CPU, with no hardware and no network.

demo data -> Stage 1 InfoVAE + latent statistics -> Stage 2 InfoVAE -> latent-space report. Re-running it
skips what is already complete (and resumes what was interrupted); ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from ate_policy.config import load_yaml
from ate_policy.data.demo import DUAL_NAME, PRETRAIN_NAME, DemoSpec, write_demo_data
from ate_policy.vae.cli import summary_line
from ate_policy.vae.configuration_vae import VAETrainConfig


def _stage_cfg(recipe: str, out: Path, name: str, dataset: Path, device: str, seed: int, **extra) -> VAETrainConfig:
    overrides = {"output_dir": str(out / name), "device": device, "seed": seed,
                 "datasets": [{"repo_id": f"local/{dataset.name}", "root": str(dataset)}], **extra}
    return load_yaml(VAETrainConfig, recipe, overrides)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ate_policy quickstart", description=__doc__)
    p.add_argument("--output", default="outputs/quickstart", help="folder for every artefact")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--fresh", action="store_true", help="delete --output first instead of resuming")
    a = p.parse_args(argv)
    out = Path(a.output)
    if a.fresh and out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    lines: list[str] = []

    def done(stage: str, line: str) -> None:
        lines.append(f"[{stage}] {line}")
        print(lines[-1], flush=True)

    # 1. demo data
    data = out / "data"
    if (data / DUAL_NAME / "meta" / "info.json").exists() and (data / PRETRAIN_NAME / "meta" / "info.json").exists():
        paths = {"adaptation": data / DUAL_NAME, "pretrain": data / PRETRAIN_NAME}
        done("demo-data", f"reused {data}")
    else:
        spec = DemoSpec(seed=a.seed)
        paths = write_demo_data(data, spec, overwrite=True)
        done("demo-data", f"{spec.episodes} dual-arm episodes (16-dim, 3 cameras) -> {paths['adaptation']}; "
                          f"{spec.pretrain_episodes} single-arm pre-training episodes -> {paths['pretrain']}")

    # 2. Stage 1 + statistics, 3. Stage 2
    from ate_policy.vae.train import read_summary, train_stage

    s1 = _stage_cfg("vae_tiny_pretrain", out, "vae_stage1", paths["pretrain"], a.device, a.seed)
    fin1 = train_stage(s1)
    done("vae stage 1", f"{summary_line(read_summary(fin1))} -> {fin1}")
    s2 = _stage_cfg("vae_tiny_adapt", out, "vae_stage2", paths["adaptation"], a.device, a.seed,
                    stage1_dir=str(out / "vae_stage1"))
    fin2 = train_stage(s2)
    done("vae stage 2", f"{summary_line(read_summary(fin2))} -> {fin2}")

    # 4. report
    from ate_policy.vae.report import latent_report

    r = latent_report(out / "vae_stage1", out / "vae_stage2", out / "report", seed=a.seed)
    done("report", f"Mahalanobis of held-out adaptation latents under N(mu_phi, sigma_phi^2) "
                   f"{r['mahalanobis_adapt']:.2f} (pre-training reference {r['mahalanobis_pretrain']:.2f}) "
                   f"-> {r['plot']}")

    print(f"\nquickstart finished in {time.perf_counter() - t0:.0f} s; everything is under {out}/")
    return 0
