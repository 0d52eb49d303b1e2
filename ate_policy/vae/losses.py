"""Loss terms of the action InfoVAE (docs/architecture.md (ATE as implemented)): reconstruction, KL in both directions, IMQ-kernel MMD.

Every KL returns one value per sample (summed over latent dims); the caller averages over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_smooth_l1(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                     beta: float = 1.0) -> torch.Tensor:
    """SmoothL1 averaged over the elements where ``mask`` is True (all elements when ``mask`` is None).

    recon, target: (B, L, A); mask: broadcastable to (B, L, A), True = counts.
    """
    loss = F.smooth_l1_loss(recon, target, reduction="none", beta=beta)
    if mask is None:
        return loss.mean()
    mask = mask.expand_as(loss).to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample: 0.5 * sum(mu^2 + var - 1 - logvar)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def kl_diag_gaussians(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor,
                      logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) for diagonal Gaussians, per sample (summed over the last dim)."""
    var_q, var_p = logvar_q.exp(), logvar_p.exp()
    return 0.5 * (logvar_p - logvar_q + (var_q + (mu_q - mu_p).pow(2)) / var_p - 1.0).sum(-1)


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor, prior_mu: torch.Tensor, prior_sigma: torch.Tensor,
                direction: str = "reverse") -> torch.Tensor:
    """Stage-2 alignment term towards the Stage-1 latent distribution N(prior_mu, prior_sigma^2).

    ``reverse`` (paper Eq. 5, mode-seeking): KL(q_psi(z|a) || N(mu_phi, sigma_phi^2)).
    ``forward`` (the argument order of the authors' public code): KL(N(mu_phi, sigma_phi^2) || q_psi(z|a)).
    """
    prior_mu = prior_mu.expand_as(mu)
    prior_logvar = (2.0 * prior_sigma.log()).expand_as(logvar)
    if direction == "reverse":
        return kl_diag_gaussians(mu, logvar, prior_mu, prior_logvar)
    if direction == "forward":
        return kl_diag_gaussians(prior_mu, prior_logvar, mu, logvar)
    raise ValueError(f"kl_direction must be 'reverse' or 'forward', got {direction!r}")


def imq_kernel(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """Inverse multiquadric kernel k(x, y) = C / (C + ||x - y||^2), all pairs: (N, M)."""
    return c / (c + torch.cdist(x, y, p=2.0).pow(2))


def imq_c_default(latent_dim: int) -> float:
    """The authors' IMQ constant C = 2 * D * sigma^2 with sigma^2 = 2."""
    return 2.0 * latent_dim * 2.0


def mmd_imq(x: torch.Tensor, y: torch.Tensor, c: float | None = None) -> torch.Tensor:
    """Unbiased MMD^2 estimate between samples x (N, D) and y (M, D) with the IMQ kernel."""
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("MMD needs at least two samples on each side")
    if c is None:
        c = imq_c_default(x.shape[1])
    kxx, kyy, kxy = imq_kernel(x, x, c), imq_kernel(y, y, c), imq_kernel(x, y, c)
    sum_xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    sum_yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return sum_xx + sum_yy - 2.0 * kxy.mean()
