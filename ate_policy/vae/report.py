"""``ate_policy vae report``: did Stage 2 embed the adaptation actions into the Stage-1 latent space?

Encodes pre-training chunks with the Stage-1 encoder and adaptation chunks with the Stage-2 encoder (each
stage's own datasets and normalisation, held-out episodes by default), then writes

* ``latent_space.png``: a 2-D projection (PCA, or t-SNE when scikit-learn is installed and asked for) of both
  sets, like the paper's Figure 15;
* ``report.json``: the numbers behind it:
  - ``mahalanobis_adapt``: mean Mahalanobis distance of the adaptation latents under N(mu_phi, sigma_phi^2)
    (sampled latents z = mu + sigma * xi, what the guidance sees; ``*_mean_latent`` uses the encoder means);
  - ``mahalanobis_pretrain``: the same for held-out pre-training latents, the reference a well-aligned Stage 2
    approaches;
  - ``mmd_adapt_vs_pretrain``: IMQ-kernel MMD^2 between the two latent sets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ate_policy.config import load_yaml
from ate_policy.data.chunks import ChunkDataset
from ate_description.errors import UserError
from ate_policy.vae.configuration_vae import VAETrainConfig
from ate_policy.vae.losses import imq_c_default, mmd_imq
from ate_policy.vae.modeling_vae import InfoVAE
from ate_policy.vae.train import final_dir, iterate_batches, load_latent_stats, load_sources


@dataclass
class Latents:
    mu: torch.Tensor      # (N, D) encoder means
    z: torch.Tensor       # (N, D) sampled latents with a fixed xi


def _stage(run_dir: str | Path) -> tuple[VAETrainConfig, InfoVAE]:
    run_dir = Path(run_dir)
    cfg_path = run_dir / "train_config.yaml"
    if not cfg_path.exists():
        raise UserError(f"{run_dir} is not a VAE stage folder (no train_config.yaml)")
    if not (final_dir(run_dir) / "model.safetensors").exists():
        raise UserError(f"stage in {run_dir} has not finished (no final/model.safetensors); re-run it to finish")
    return load_yaml(VAETrainConfig, cfg_path), InfoVAE.from_pretrained(final_dir(run_dir))


@torch.no_grad()
def encode_stage(cfg: VAETrainConfig, model: InfoVAE, split: str, max_chunks: int, seed: int) -> Latents:
    sources = load_sources(cfg)
    episodes = None
    if split == "val":
        val = {tuple(k) for k in model.meta.get("val_episodes", [])}
        episodes = val or None  # no held-out episodes: fall back to all
    ds = ChunkDataset(sources, cfg.chunk_len, cfg.model.action_dim, cfg.stride, episodes)
    model.eval()
    g = torch.Generator().manual_seed(seed)
    mus, zs, n = [], [], 0
    for batch in iterate_batches(ds, 256, shuffle=False):
        mu, logvar = model.encode(batch["actions"], batch["pad_mask"])
        xi = torch.randn(mu.shape, generator=g)
        mus.append(mu)
        zs.append(mu + (0.5 * logvar).exp() * xi)
        n += len(mu)
        if n >= max_chunks:
            break
    return Latents(torch.cat(mus)[:max_chunks], torch.cat(zs)[:max_chunks])


def mahalanobis(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-row Mahalanobis distance under the diagonal Gaussian N(mu, sigma^2)."""
    return (((z - mu) / sigma) ** 2).sum(-1).sqrt()


def project_2d(points: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError as e:
            raise UserError("--method tsne needs scikit-learn (pip install scikit-learn); --method pca needs nothing") from e
        return TSNE(n_components=2, random_state=seed, init="pca",
                    perplexity=min(30.0, max(5.0, len(points) / 4))).fit_transform(points)
    centred = points - points.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def latent_report(stage1_dir: str | Path, stage2_dir: str | Path, output: str | Path, split: str = "val",
                  method: str = "pca", max_chunks: int = 2000, seed: int = 0) -> dict:
    cfg1, vae1 = _stage(stage1_dir)
    cfg2, vae2 = _stage(stage2_dir)
    if vae1.latent_dim != vae2.latent_dim:
        raise UserError(f"the stages have different latent dims ({vae1.latent_dim} vs {vae2.latent_dim})")
    mu_phi, sigma_phi = load_latent_stats(stage1_dir)
    pre = encode_stage(cfg1, vae1, split, max_chunks, seed)
    ada = encode_stage(cfg2, vae2, split, max_chunks, seed + 1)
    c = imq_c_default(vae1.latent_dim)
    result = {
        "stage1_dir": str(stage1_dir), "stage2_dir": str(stage2_dir), "split": split,
        "latent_dim": vae1.latent_dim, "n_pretrain": len(pre.z), "n_adapt": len(ada.z),
        "mahalanobis_adapt": float(mahalanobis(ada.z, mu_phi, sigma_phi).mean()),
        "mahalanobis_pretrain": float(mahalanobis(pre.z, mu_phi, sigma_phi).mean()),
        "mahalanobis_adapt_mean_latent": float(mahalanobis(ada.mu, mu_phi, sigma_phi).mean()),
        "mahalanobis_pretrain_mean_latent": float(mahalanobis(pre.mu, mu_phi, sigma_phi).mean()),
        "mmd_adapt_vs_pretrain": float(mmd_imq(ada.z, pre.z, c)) if min(len(ada.z), len(pre.z)) >= 2 else None,
        "method": method,
    }
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    _plot(pre.z.numpy(), ada.z.numpy(), output / "latent_space.png", method, seed, result)
    result["plot"] = str(output / "latent_space.png")
    (output / "report.json").write_text(json.dumps(result, indent=2))
    return result


def _plot(pre: np.ndarray, ada: np.ndarray, path: Path, method: str, seed: int, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy = project_2d(np.concatenate([pre, ada]), method, seed)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    ax.scatter(*xy[: len(pre)].T, s=6, alpha=0.5, label=f"pre-training (Stage 1), n={len(pre)}")
    ax.scatter(*xy[len(pre):].T, s=6, alpha=0.7, label=f"adaptation (Stage 2), n={len(ada)}")
    ax.set_title(f"Action latents ({method.upper()})\nMahalanobis adapt {result['mahalanobis_adapt']:.2f} vs "
                 f"pre-train {result['mahalanobis_pretrain']:.2f}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
