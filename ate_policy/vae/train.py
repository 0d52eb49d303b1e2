"""Training of one InfoVAE stage (paper Alg. 1): Stage 1 ``pretrain`` + latent statistics, Stage 2 ``adapt``.

A stage's folder (``output_dir``)::

    train_config.yaml          the exact config it ran with
    fingerprint.json           what the stage computes from (config without length/logging/paths, input digests)
    checkpoints/<step>/        model + optimizer/RNG state every `save_every` steps; `checkpoints/last` names the newest
    final/                     model.safetensors, vae_config.json (model, chunk length, normalisation, held-out
                               episodes), latent_stats.safetensors (Stage 1: mu_phi, sigma_phi), summary.json
    tensorboard/               recon, KL, MMD, latent norms per step

``train_stage`` skips a stage whose ``final/`` is complete and resumes an interrupted one from its newest
checkpoint: same step count, same data order, same RNG stream, so the loss curve continues. Both only when the
folder's ``fingerprint.json`` matches the config and data (``stage_fingerprint``; ``steps``/``epochs`` may grow):
otherwise it refuses, or with ``fresh`` starts the stage over.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ate_policy.config import dump_yaml
from ate_policy.data.chunks import ActionSource, ChunkDataset, load_action_source, split_episodes
from ate_description.errors import UserError
from ate_policy.vae.configuration_vae import VAETrainConfig
from ate_policy.vae.modeling_vae import CONFIG_FILE, InfoVAE

log = logging.getLogger(__name__)

STATS_FILE = "latent_stats.safetensors"
SUMMARY_FILE = "summary.json"
STATE_FILE = "training_state.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for but CUDA is not available here; use device=cpu or auto")
    return torch.device(name)


# --- latent statistics ------------------------------------------------------------------------------------------
@torch.no_grad()
def compute_latent_stats(model: InfoVAE, dataset: ChunkDataset, batch_size: int = 256,
                         device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """mu_phi = mean over chunks of the encoder means; sigma_phi = mean over chunks of the encoder stds."""
    model.eval()
    sum_mu = torch.zeros(model.latent_dim, dtype=torch.float64)
    sum_sigma = torch.zeros(model.latent_dim, dtype=torch.float64)
    n = 0
    for batch in iterate_batches(dataset, batch_size, shuffle=False):
        mu, logvar = model.encode(batch["actions"].to(device), batch["pad_mask"].to(device))
        sum_mu += mu.double().sum(0).cpu()
        sum_sigma += (0.5 * logvar).exp().double().sum(0).cpu()
        n += mu.shape[0]
    return (sum_mu / n).float(), (sum_sigma / n).float()


def save_latent_stats(directory: Path, mu: torch.Tensor, sigma: torch.Tensor) -> None:
    from safetensors.torch import save_file

    save_file({"mu": mu.contiguous(), "sigma": sigma.contiguous()}, directory / STATS_FILE)


def load_latent_stats(stage1_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The Stage-1 statistics, from a Stage-1 run folder or its ``final/`` folder."""
    from safetensors.torch import load_file

    t = load_file(latent_stats_file(stage1_dir))
    return t["mu"], t["sigma"]


def latent_stats_file(stage1_dir: str | Path) -> Path:
    """The Stage-1 statistics file of a Stage-1 run folder or of its ``final/`` folder."""
    d = Path(stage1_dir)
    for cand in (d / "final" / STATS_FILE, d / STATS_FILE):
        if cand.exists():
            return cand
    raise UserError(f"no Stage-1 latent statistics under {d} ({STATS_FILE} missing): run `ate_policy vae pretrain` "
                    "to completion first and pass its output folder as `stage1_dir`")


def final_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "final"


def stage_started(output_dir: str | Path) -> bool:
    """Whether a stage folder holds work: a checkpoint or a final result."""
    out = Path(output_dir)
    return final_dir(out).exists() or any((out / "checkpoints").glob("[0-9]*"))


def stage_fingerprint(cfg: VAETrainConfig) -> tuple[str, dict]:
    """(fingerprint, document) of what this stage computes: its config section without length, logging, paths and
    device, plus its inputs (each dataset's id and meta hashes; for Stage 2 the Stage-1 statistics it aligns to)."""
    from ate_policy.config import to_dict
    from ate_policy.provenance import config_section, dataset_digest, file_sha256, fingerprint

    inputs: dict = {}
    if cfg.stage == "adapt":
        if not cfg.stage1_dir:
            raise UserError("Stage 2 (adapt) needs the Stage-1 statistics: set `stage1_dir` to the folder of a "
                            "finished `ate_policy vae pretrain` run")
        inputs["stage1_latent_stats_sha256"] = file_sha256(latent_stats_file(cfg.stage1_dir))
    if not cfg.datasets:
        raise UserError("no dataset given: set `datasets` in the config, e.g. --datasets='[{repo_id: x, root: path}]'")
    for i, d in enumerate(cfg.datasets):
        if d.root is not None and not Path(d.root).exists():
            raise UserError(f"dataset folder {d.root} does not exist (datasets[{i}] of the {cfg.stage} stage)")
    inputs["datasets"] = [dataset_digest(d.repo_id, d.root, d.action_key) for d in cfg.datasets]
    doc = {"config": config_section(to_dict(cfg), drop=("datasets", "stage1_dir")), "inputs": inputs}
    return fingerprint(doc), doc


def stage_complete(cfg: VAETrainConfig) -> bool:
    f = final_dir(cfg.output_dir)
    need = [CONFIG_FILE, SUMMARY_FILE] + ([STATS_FILE] if cfg.stage == "pretrain" else [])
    return all((f / n).exists() for n in need)


# --- batching ---------------------------------------------------------------------------------------------------
def iterate_batches(dataset: ChunkDataset, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                    skip: int = 0):
    """Batches of a ChunkDataset; the order depends only on (seed, epoch) so a resumed run sees the same data."""
    n = len(dataset)
    if shuffle:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    bs = min(batch_size, n)
    n_batches = n // bs if shuffle else math.ceil(n / bs)  # drop the ragged tail when training (MMD needs >= 2)
    for b in range(skip, n_batches):
        items = [dataset[i] for i in order[b * bs:(b + 1) * bs]]
        yield {k: torch.stack([it[k] for it in items]) for k in items[0]}


def batches_per_epoch(dataset: ChunkDataset, batch_size: int) -> int:
    return len(dataset) // min(batch_size, len(dataset))


# --- checkpoints ------------------------------------------------------------------------------------------------
def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_checkpoint(out: Path, step: int, model: InfoVAE, optim: torch.optim.Optimizer, meta: dict,
                    history: list[dict]) -> Path:
    ckpt_root = out / "checkpoints"
    tmp = ckpt_root / f".tmp-{step:08d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, meta)
    torch.save({"step": step, "optimizer": optim.state_dict(), "rng": _rng_state(), "history": history},
               tmp / STATE_FILE)
    dest = ckpt_root / f"{step:08d}"
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)  # a checkpoint folder exists only once complete
    (ckpt_root / "last.txt").write_text(dest.name)
    return dest


def latest_checkpoint(out: Path) -> Path | None:
    marker = out / "checkpoints" / "last.txt"
    if marker.exists():
        p = out / "checkpoints" / marker.read_text().strip()
        if (p / STATE_FILE).exists():
            return p
    cands = sorted(p for p in (out / "checkpoints").glob("[0-9]*") if (p / STATE_FILE).exists())
    return cands[-1] if cands else None


# --- the stage --------------------------------------------------------------------------------------------------
def load_sources(cfg: VAETrainConfig) -> list[ActionSource]:
    if not cfg.datasets:
        raise UserError("no dataset given: set `datasets` in the config, e.g. --datasets='[{repo_id: x, root: path}]'")
    return [load_action_source(d.repo_id, d.root, d.action_key, cfg.normalization) for d in cfg.datasets]


def train_stage(cfg: VAETrainConfig, progress: bool = True, fresh: bool = False) -> Path:
    """Run one stage to completion (resuming or skipping as needed); returns its ``final/`` folder.

    A stage folder started by another config or other data (``stage_fingerprint``) is refused, or with ``fresh``
    deleted and retrained.
    """
    from ate_policy.provenance import claim_stage, provenance

    out = cfg.out
    fp, doc = stage_fingerprint(cfg)
    claim_stage(out, doc, f"the {cfg.stage} VAE stage", stage_started, fresh)
    if stage_complete(cfg):
        log.info("stage %s already complete in %s: skipped", cfg.stage, out)
        return final_dir(out)
    prior = None
    if cfg.stage == "adapt":
        prior = load_latent_stats(cfg.stage1_dir)
        if prior[0].numel() != cfg.model.width:
            raise UserError(f"Stage-1 latents have dim {prior[0].numel()} but this Stage 2 has model.width "
                            f"{cfg.model.width}: both stages must use the same width")
    device = resolve_device(cfg.device)
    sources = load_sources(cfg)
    train_eps, val_eps = split_episodes(sources, cfg.val_fraction, cfg.seed)
    dataset = ChunkDataset(sources, cfg.chunk_len, cfg.model.action_dim, cfg.stride, train_eps)
    meta = {
        "stage": cfg.stage,
        "normalization": {s.name: {**s.normalizer.to_dict(), "action_dim": s.action_dim} for s in sources},
        "val_episodes": sorted([list(k) for k in val_eps]),
        "stage1_dir": cfg.stage1_dir,
        "kl_direction": cfg.kl_direction if cfg.stage == "adapt" else None,
    }

    out.mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, out / "train_config.yaml")
    torch.manual_seed(cfg.seed)
    model = InfoVAE(cfg.model, cfg.chunk_len).to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    per_epoch = batches_per_epoch(dataset, cfg.optim.batch_size)
    total = cfg.epochs * per_epoch if cfg.epochs else cfg.steps
    step, history = 0, []
    ckpt = latest_checkpoint(out)
    saved_step = 0
    if ckpt is not None:
        from safetensors.torch import load_file

        state = torch.load(ckpt / STATE_FILE, weights_only=False)
        model.load_state_dict(load_file(ckpt / "model.safetensors", device=str(device)))
        optim.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        step, history = state["step"], state["history"]
        saved_step = step
        log.info("resuming stage %s from step %d (%s)", cfg.stage, step, ckpt)

    if prior is not None:
        prior = (prior[0].to(device), prior[1].to(device))
    writer = _tensorboard(out)
    wandb_run = _wandb(cfg)
    bar = step_bar(total, step, f"vae {cfg.stage}", progress)
    t0 = time.perf_counter()
    model.train()
    while step < total:
        epoch, skip = divmod(step, per_epoch)
        for batch in iterate_batches(dataset, cfg.optim.batch_size, True, cfg.seed, epoch, skip):
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, logs = model.compute_loss(batch["actions"], batch["pad_mask"], batch["dim_mask"], prior,
                                            cfg.kl_direction)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip_norm)
            optim.step()
            step += 1
            if not math.isfinite(logs["loss"]):
                raise RuntimeError(f"loss became {logs['loss']} at step {step}; lower optim.lr")
            history.append({"step": step, **logs})
            if step % cfg.log_every == 0 or step == total:
                for k, v in logs.items():
                    writer.add_scalar(f"vae_{cfg.stage}/{k}", v, step)
                if wandb_run:
                    wandb_run.log({f"vae_{cfg.stage}/{k}": v for k, v in logs.items()}, step=step)
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}", recon=f"{logs['recon']:.4f}")
            if step % cfg.save_every == 0 and step < total:
                save_checkpoint(out, step, model, optim, meta, history)
                saved_step = step
            if step >= total:
                break
    bar.close()
    elapsed = time.perf_counter() - t0

    fin = final_dir(out)
    fin.mkdir(parents=True, exist_ok=True)
    if step != saved_step:  # so an interruption during the statistics resumes without retraining
        save_checkpoint(out, step, model, optim, meta, history)
    model.save_pretrained(fin, meta)
    summary = {
        "stage": cfg.stage, "steps": step, "windows": len(dataset), "skipped_episodes": dataset.skipped_episodes,
        "held_out_episodes": len(val_eps), "final": {k: v for k, v in history[-1].items() if k != "step"},
        "seconds_this_run": round(elapsed, 2), "device": str(device),
        # Which stats each dataset was normalised with (the policy's fine-tuning checks them against its own).
        "normalization": meta["normalization"],
        **provenance(fp),
    }
    if cfg.stage == "pretrain":
        stats_ds = ChunkDataset(sources, cfg.chunk_len, cfg.model.action_dim, cfg.stats_stride or 1, train_eps)
        mu, sigma = compute_latent_stats(model, stats_ds, device=device)
        save_latent_stats(fin, mu, sigma)
        summary["latent_stats"] = {"chunks": len(stats_ds), "mu_norm": float(mu.norm()),
                                   "sigma_mean": float(sigma.mean())}
    (fin / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    writer.close()
    if wandb_run:
        wandb_run.finish()
    return fin


def read_summary(stage_final: str | Path) -> dict:
    return json.loads((Path(stage_final) / SUMMARY_FILE).read_text())


def _tensorboard(out: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"))


def _wandb(cfg: VAETrainConfig):
    if not cfg.wandb.enable:
        return None
    try:
        import wandb
    except ImportError as e:
        raise UserError("wandb.enable=true but wandb is not installed: pip install -e '.[wandb]'") from e
    return wandb.init(project=cfg.wandb.project, entity=cfg.wandb.entity, dir=str(cfg.out),
                      name=f"vae_{cfg.stage}", config=json.loads(json.dumps(_plain(cfg), default=str)))


def _plain(cfg):
    from ate_policy.config import to_dict

    return to_dict(cfg)


def step_bar(total: int, initial: int, desc: str, enable: bool):
    """The progress bar of a training loop (steps; shown on a terminal only; the policy stage uses it too)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=None if enable else True,
                dynamic_ncols=True)
