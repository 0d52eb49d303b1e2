"""The InfoVAE loss terms against hand-computed values and torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ate_policy.vae.losses import (imq_c_default, imq_kernel, kl_diag_gaussians, kl_standard_normal, kl_to_prior,
                                   masked_smooth_l1, mmd_imq)


def test_kl_to_standard_normal_matches_hand_value():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * [(1 + 1 - 1 - 0) + (0 + 2 - 1 - ln 2)] = 1 - ln(2) / 2
    assert kl_standard_normal(mu, logvar).item() == pytest.approx(1.0 - math.log(2.0) / 2, abs=1e-6)


def test_kl_of_identical_gaussians_is_zero():
    mu, logvar = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.allclose(kl_diag_gaussians(mu, logvar, mu, logvar), torch.zeros(4), atol=1e-6)


@pytest.mark.parametrize("direction", ["reverse", "forward"])
def test_kl_to_prior_both_directions_match_torch(direction):
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 6), torch.randn(5, 6) * 0.5
    prior_mu, prior_sigma = torch.randn(6), torch.rand(6) + 0.2
    q, p = Normal(mu, (0.5 * logvar).exp()), Normal(prior_mu.expand(5, 6), prior_sigma.expand(5, 6))
    expected = (kl_divergence(q, p) if direction == "reverse" else kl_divergence(p, q)).sum(-1)
    got = kl_to_prior(mu, logvar, prior_mu, prior_sigma, direction)
    assert torch.allclose(got, expected, atol=1e-5)


def test_reverse_and_forward_kl_differ_and_standard_prior_reduces_to_plain_kl():
    torch.manual_seed(1)
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4)
    zeros, ones = torch.zeros(4), torch.ones(4)
    assert torch.allclose(kl_to_prior(mu, logvar, zeros, ones, "reverse"), kl_standard_normal(mu, logvar), atol=1e-5)
    assert not torch.allclose(kl_to_prior(mu, logvar, zeros, ones, "reverse"),
                              kl_to_prior(mu, logvar, zeros, ones, "forward"))
    with pytest.raises(ValueError, match="reverse"):
        kl_to_prior(mu, logvar, zeros, ones, "sideways")


def test_imq_kernel_and_default_constant():
    x, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    assert imq_kernel(x, y, 4.0).item() == pytest.approx(4.0 / (4.0 + 2.0))
    assert imq_c_default(512) == 2048.0  # the authors' C = 2 * D * 2


def test_mmd_matches_hand_computed_unbiased_estimate():
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [2.0]])
    # k = 1 / (1 + d^2): xx off-diag 0.5, yy off-diag 0.2, xy mean (1 + 0.2 + 0.5 + 0.5) / 4 = 0.55
    assert mmd_imq(x, y, c=1.0).item() == pytest.approx(0.5 + 0.2 - 2 * 0.55, abs=1e-6)


def test_mmd_separates_distributions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    shifted = torch.randn(400, 8, generator=g) + 1.5
    assert abs(mmd_imq(a, b).item()) < 0.01
    assert mmd_imq(a, shifted).item() > 0.1
    with pytest.raises(ValueError):
        mmd_imq(a[:1], b)


def test_masked_smooth_l1_ignores_masked_elements():
    recon, target = torch.zeros(1, 2, 2), torch.tensor([[[0.5, 100.0], [0.5, 100.0]]])
    mask = torch.tensor([[[True, False], [True, False]]])
    assert masked_smooth_l1(recon, target, mask).item() == pytest.approx(0.5 * 0.5 ** 2)
    assert masked_smooth_l1(recon, target).item() > 10
