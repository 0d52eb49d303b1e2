"""ATE latent guidance (the "Steer" half; docs/architecture.md (ATE as implemented), paper Eq. 7 / Eq. 10, appendix F Alg. 2-3).

During fine-tuning only, a frozen Stage-2 action encoder ``E`` (eval mode) compares the noisy chunk ``x_t`` with
the clean chunk ``a`` in its latent space. With one perturbation ``xi ~ N(0, I)`` shared by both encodings:

    z_t = mu(x_t) + sigma(x_t) * xi,   z_0 = mu(a) + sigma(a) * xi
    g   = grad_{x_t} [ -mean_latent((z_t - z_0)^2) ]        (detached: no graph through it)
    G   = clamp(c * g, -clip, clip)                         (elementwise; zero on padded dims)

with ``c = t / (1 - t)`` for flow matching in LeRobot's convention (``x_t = t*eps + (1-t)*a``, t = 1 is noise)
and ``c = sqrt(1 - abar_k)`` for epsilon-prediction diffusion. ``g`` itself points from ``x_t`` towards the clean
chunk's latent (a step along it lowers the latent distance). The policy then regresses ``u + lambda*G`` (flow) or
``eps + lambda*G`` (diffusion), as the paper's Eq. 10 / Eq. 7 and the authors' code do. What that means for the
sampler, in LeRobot's flow convention (Euler steps ``x <- x + dt * v`` with ``dt = -1/N``): with ``lambda > 0``
the learned velocity carries ``+lambda*G``, so each step moves ``x`` *against* G, away from the clean chunk's
latent, and the implied clean estimate ``x_t - t*v = a - t*lambda*G`` is pulled back towards ``x_t``. A negative
``lambda`` is the "towards" variant (each step moves along G) for the sign ablation; tests pin both
(tests/train/test_guidance.py, one Euler step). Nothing here runs at inference time.

What the frozen encoder reads is exactly what it was trained on (``ate_policy.data.chunks``): the real action dims,
zeros on padded dims (``dim_mask``; PI0 draws its flow noise over all 32 dims, so ``x_t`` is zeroed there first),
and whole windows only: a sample whose chunk runs past its episode (any ``pad_mask`` step) gets ``G = 0`` on every
element, because the InfoVAEs never see such chunks; it still trains with the plain flow/diffusion loss.

``reduction``: ``sample`` (default) takes the latent mean per sample, so g does not depend on the batch size or
on how a batch is split across GPUs; ``batch`` also averages over the (per-device) batch as the authors'
RDT/DP code does, which divides g by that batch size, so lambda values are not comparable between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

REDUCTIONS = ("sample", "batch")

# 1 - t is floored here so t = 1 (pure noise, reachable through LeRobot's time offset/scale in float32) gives a
# large finite c instead of inf (inf * 0 = nan on elements whose gradient is exactly zero); the clamp bounds G.
_MIN_ONE_MINUS_T = 1e-6


@dataclass
class GuidanceConfig:
    # Off = plain LeRobot loss (the guidance code does not run at all).
    enable: bool = True
    # lambda: weight of the guidance in the regression target u + lambda*G (paper's best 2.0; the authors' code
    # uses 3.0). > 0 is the paper's sign: sampling moves against G; < 0 is the "towards" variant (module doc).
    lam: float = 2.0
    # Elementwise clamp of c*g: keeps the target shift bounded where c = t/(1-t) explodes near pure noise.
    clip: float = 0.1
    # "sample" (g independent of batch size / GPU split) or "batch" (authors' code: also / per-device batch).
    reduction: str = "sample"

    def __post_init__(self):
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"guidance.reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.clip <= 0:
            raise ValueError(f"guidance.clip must be > 0, got {self.clip}")


def flow_factor(t: Tensor) -> Tensor:
    """c(t) = t / (1 - t) for LeRobot's flow convention; t (B,)."""
    return t / (1.0 - t).clamp_min(_MIN_ONE_MINUS_T)


def diffusion_factor(alphas_cumprod: Tensor, timesteps: Tensor) -> Tensor:
    """c_k = sqrt(1 - abar_k) for epsilon prediction; ``alphas_cumprod`` (K,), ``timesteps`` (B,) long."""
    abar = alphas_cumprod.to(timesteps.device)[timesteps]
    return (1.0 - abar).clamp_min(0.0).sqrt()


def freeze_encoder(vae: nn.Module) -> nn.Module:
    """Eval mode (dropout off: the same chunk must always map to the same latent) and no parameter grads."""
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    return vae


@torch.no_grad()
def _zero_masked(x: Tensor, dim_mask: Tensor | None, sample_mask: Tensor | None) -> Tensor:
    """``x`` (B, L, A) with the non-real dims (``dim_mask`` False) and unguided samples (``sample_mask`` False)
    zeroed."""
    if dim_mask is not None:
        x = x * dim_mask.to(x.dtype).reshape(-1 if dim_mask.ndim == 2 else 1, 1, x.shape[-1])
    if sample_mask is not None:
        x = x * sample_mask.to(x.dtype)[:, None, None]
    return x


def latent_guidance(
    encoder: nn.Module,
    x_t: Tensor,
    actions: Tensor,
    factor: Tensor,
    clip: float = 0.1,
    reduction: str = "sample",
    dim_mask: Tensor | None = None,
    pad_mask: Tensor | None = None,
    xi: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The guidance G (B, L, A) at ``x_t`` for clean chunks ``actions``, plus logging stats.

    encoder: an InfoVAE (anything with ``encode(actions, pad_mask) -> (mu, logvar)`` and ``config.action_dim``);
        it is put in eval mode here, and its parameters receive no gradient.
    x_t, actions: (B, L, A) normalised chunks; A may be smaller than the encoder's action dim (e.g. Diffusion
        Policy's unpadded 16-dim actions): they are zero-padded for the encoder as the VAE saw them in training.
    factor: (B,) c(t) or c_k (``flow_factor`` / ``diffusion_factor``).
    dim_mask: (A,) or (B, A) bool, True on real action dims. The encoder reads ``x_t`` and ``actions`` with the
        other dims zeroed (as in its training data, whatever noise the policy drew there), and G is zero there.
        None = all real.
    pad_mask: (B, L) bool, True on padded time steps (past an episode's end). A sample with any padded step gets
        G = 0 everywhere: the encoder was trained on whole windows only. None = none.
    xi: (B, D) shared perturbation; drawn from N(0, I) when None.

    Stats (floats): ``guidance_norm_raw`` / ``guidance_norm`` = mean over samples of the L2 norm of c*g before /
    G after the clamp; ``guidance_clamped_frac`` = fraction of guided elements the clamp changed;
    ``guidance_unguided_frac`` = fraction of samples left unguided because their chunk is padded.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if x_t.shape != actions.shape or x_t.ndim != 3:
        raise ValueError(f"x_t and actions must both be (B, L, A); got {tuple(x_t.shape)} and {tuple(actions.shape)}")
    b, length, a_dim = x_t.shape
    if factor.shape != (b,):
        raise ValueError(f"factor must be (B,) = ({b},), got {tuple(factor.shape)}")
    enc_dim = encoder.config.action_dim
    if a_dim > enc_dim:
        raise ValueError(f"action dim {a_dim} exceeds the encoder's {enc_dim}: train the VAE on padded chunks")
    if pad_mask is not None and pad_mask.shape != (b, length):
        raise ValueError(f"pad_mask must be (B, L) = ({b}, {length}), got {tuple(pad_mask.shape)}")

    encoder.eval()
    enc_param = next(encoder.parameters())
    dtype, device = enc_param.dtype, enc_param.device
    dims = None if dim_mask is None else dim_mask.to(device).bool()
    guided = None if pad_mask is None else ~pad_mask.to(device).bool().any(dim=1)  # (B,) whole windows only

    def encoder_input(x: Tensor) -> Tensor:
        x = _zero_masked(x.detach().to(device=device, dtype=dtype), dims, None)
        return torch.nn.functional.pad(x, (0, enc_dim - a_dim)) if a_dim < enc_dim else x

    with torch.enable_grad():
        x = encoder_input(x_t).requires_grad_(True)
        # One encoder pass over [x_t; a] (the clean half carries no gradient): cheaper than two, and both halves
        # take the same kernels, so x_t = a gives exactly z_t = z_0 (no fast-path rounding differences).
        mu, logvar = encoder.encode(torch.cat([x, encoder_input(actions)]))
        mu_t, mu0, logvar_t, logvar0 = mu[:b], mu[b:].detach(), logvar[:b], logvar[b:].detach()
        xi = torch.randn_like(mu0) if xi is None else xi.to(device=device, dtype=dtype)
        z_t = mu_t + (0.5 * logvar_t).exp() * xi
        z_0 = mu0 + (0.5 * logvar0).exp() * xi
        objective = -(z_t - z_0).pow(2).mean(dim=-1)  # (B,): mean over latent dims, per sample
        total = objective.sum() if reduction == "sample" else objective.mean()
        (g,) = torch.autograd.grad(total, x)
    g = g[..., :a_dim].detach()

    raw = _zero_masked(factor.to(device=device, dtype=dtype)[:, None, None] * g, dims, guided)
    G = raw.clamp(-clip, clip)
    real = _zero_masked(torch.ones_like(raw), dims, guided)
    stats = {
        "guidance_norm_raw": raw.flatten(1).norm(dim=1).mean().item(),
        "guidance_norm": G.flatten(1).norm(dim=1).mean().item(),
        "guidance_clamped_frac": ((raw.abs() > clip).to(dtype) * real).sum().item() / max(real.sum().item(), 1.0),
        "guidance_unguided_frac": 0.0 if guided is None else 1.0 - guided.float().mean().item(),
    }
    return G.to(device=x_t.device, dtype=x_t.dtype), stats
