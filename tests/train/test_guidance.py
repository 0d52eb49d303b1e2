"""ATE guidance G (docs/architecture.md (ATE as implemented)) on cases whose answer can be worked out by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ate_policy.guidance import GuidanceConfig, diffusion_factor, flow_factor, freeze_encoder, latent_guidance
from ate_policy.vae.configuration_vae import InfoVAEConfig
from ate_policy.vae.modeling_vae import InfoVAE


class LinearEncoder(nn.Module):
    """mu = s * x flattened, logvar constant: the shared xi cancels, z_t - z_0 = s (x_t - a), so
    g = grad_x -mean_D(s^2 (x - a)^2) = -2 s^2 (x - a) / D with D = L*A."""

    def __init__(self, length: int, action_dim: int, s: float = 1.0, log_s2: float = 0.0):
        super().__init__()
        self.config = SimpleNamespace(action_dim=action_dim)
        self.scale = nn.Parameter(torch.tensor(s))
        self.log_s2 = log_s2
        self.calls = []

    def encode(self, actions, pad_mask=None):
        self.calls.append(self.training)
        mu = self.scale * actions.flatten(1)
        return mu, torch.full_like(mu, self.log_s2)


def test_linear_encoder_gradient_matches_closed_form():
    b, length, a_dim = 2, 3, 4
    enc = LinearEncoder(length, a_dim, s=2.0, log_s2=math.log(9.0))  # sigma = 3 cancels out
    a = torch.zeros(b, length, a_dim)
    x_t = torch.full((b, length, a_dim), 0.3)
    G, stats = latent_guidance(enc, x_t, a, factor=torch.ones(b), clip=10.0)
    expected = -2 * 4.0 * 0.3 / (length * a_dim)  # -0.2 everywhere
    torch.testing.assert_close(G, torch.full_like(G, expected))
    assert stats["guidance_clamped_frac"] == 0.0
    assert stats["guidance_norm"] == pytest.approx(abs(expected) * math.sqrt(length * a_dim), rel=1e-5)
    # g points from x_t back towards the clean chunk: one small step along it lowers the latent distance.
    assert (G * (x_t - a)).sum() < 0


def test_factor_scales_and_clamp_bounds_elementwise():
    b, length, a_dim = 2, 2, 3
    enc = LinearEncoder(length, a_dim)
    a = torch.zeros(b, length, a_dim)
    x_t = torch.zeros(b, length, a_dim)
    x_t[0, 0, 0] = 0.6  # g = -2 * 0.6 / 6 = -0.2
    x_t[1, 1, 2] = -0.03  # g = +0.01
    factor = flow_factor(torch.tensor([0.75, 0.5]))  # c = 3 and 1
    G, stats = latent_guidance(enc, x_t, a, factor, clip=0.1)
    assert G[0, 0, 0].item() == pytest.approx(-0.1)  # c*g = -0.6, clamped to -clip
    assert G[1, 1, 2].item() == pytest.approx(0.01)  # c*g = 0.01, inside the clamp
    assert stats["guidance_clamped_frac"] == pytest.approx(1 / 12)
    assert stats["guidance_norm_raw"] == pytest.approx((0.6 + 0.01) / 2, rel=1e-5)
    assert stats["guidance_norm"] == pytest.approx((0.1 + 0.01) / 2, rel=1e-5)


def test_padded_dims_and_padded_chunks_get_zero_guidance():
    b, length, a_dim = 3, 4, 6
    enc = LinearEncoder(length, a_dim)
    x_t, a = torch.randn(b, length, a_dim), torch.zeros(b, length, a_dim)
    dim_mask = torch.tensor([True] * 4 + [False] * 2)
    pad_mask = torch.zeros(b, length, dtype=torch.bool)
    pad_mask[1, 2:] = True  # sample 1's chunk runs past its episode's end
    G, stats = latent_guidance(enc, x_t, a, torch.ones(b), clip=10.0, dim_mask=dim_mask, pad_mask=pad_mask)
    assert (G[..., 4:] == 0).all()
    # The InfoVAEs train on whole windows only: a padded chunk gets no guidance at all, not even on its real steps.
    assert (G[1] == 0).all()
    assert (G[0, :, :4] != 0).all() and (G[2, :, :4] != 0).all()
    assert stats["guidance_unguided_frac"] == pytest.approx(1 / 3)
    # The other samples' guidance is what they get on their own (closed form of LinearEncoder, D = 24 inputs).
    expected = -2 * x_t[[0, 2], :, :4] / (length * a_dim)
    torch.testing.assert_close(G[[0, 2], :, :4], expected)


def test_encoder_reads_zeros_on_padded_dims_whatever_the_noise_there():
    """PI0 draws its flow noise over all 32 dims; the VAE was trained with zeros on the dims past the robot's 16."""
    torch.manual_seed(0)
    vae = InfoVAE(InfoVAEConfig(width=32, n_heads=4, ffn_dim=64, n_layers=1), chunk_len=5)
    dim_mask = torch.arange(32) < 16
    a = torch.nn.functional.pad(torch.randn(3, 5, 16), (0, 16))
    x_t = a + 0.5 * torch.randn_like(a)
    xi, c = torch.randn(3, 32), torch.full((3,), 2.0)
    noisy_pad = x_t.clone()
    noisy_pad[..., 16:] = torch.randn(3, 5, 16)  # differs from x_t only on the padded dims
    G1, s1 = latent_guidance(vae, x_t, a, c, clip=1e9, dim_mask=dim_mask, xi=xi)
    G2, s2 = latent_guidance(vae, noisy_pad, a, c, clip=1e9, dim_mask=dim_mask, xi=xi)
    torch.testing.assert_close(G1, G2, rtol=0, atol=0)
    # Expected value built by hand: the same chunk with its padded dims zeroed, no mask given.
    hand = x_t.clone()
    hand[..., 16:] = 0
    G3, _ = latent_guidance(vae, hand, a, c, clip=1e9, xi=xi)
    torch.testing.assert_close(G1[..., :16], G3[..., :16], rtol=0, atol=0)
    # x_t equal to a on the real dims: z_t == z_0 exactly, so no guidance whatever sits on the padded dims.
    same = a.clone()
    same[..., 16:] = 3.0 * torch.randn(3, 5, 16)
    G0, s0 = latent_guidance(vae, same, a, c, clip=1e9, dim_mask=dim_mask, xi=xi)
    assert G0.abs().max() == 0 and s0["guidance_norm_raw"] == 0


def test_clamped_fraction_counts_only_real_elements():
    enc = LinearEncoder(2, 4)
    a = torch.zeros(1, 2, 4)
    x_t = torch.full((1, 2, 4), 100.0)  # every element saturates
    G, stats = latent_guidance(enc, x_t, a, torch.ones(1), clip=0.1, dim_mask=torch.tensor([1, 1, 0, 0]).bool())
    assert stats["guidance_clamped_frac"] == 1.0
    assert stats["guidance_norm"] == pytest.approx(0.1 * 2)  # 4 real elements at 0.1


def test_sample_reduction_is_independent_of_batch_and_batch_reduction_divides_by_it():
    torch.manual_seed(0)
    vae = InfoVAE(InfoVAEConfig(width=32, n_heads=4, ffn_dim=64, n_layers=1), chunk_len=5)
    x_t, a = torch.randn(4, 5, 32), torch.randn(4, 5, 32)
    xi, c = torch.randn(4, 32), torch.ones(4)
    full, _ = latent_guidance(vae, x_t, a, c, clip=1e9, xi=xi)
    half, _ = latent_guidance(vae, x_t[:2], a[:2], c[:2], clip=1e9, xi=xi[:2])
    torch.testing.assert_close(full[:2], half)  # splitting a batch across GPUs changes nothing
    batch, _ = latent_guidance(vae, x_t, a, c, clip=1e9, xi=xi, reduction="batch")
    torch.testing.assert_close(batch, full / 4)


def test_real_infovae_frozen_eval_shared_xi_and_detached():
    torch.manual_seed(0)
    vae = InfoVAE(InfoVAEConfig(width=32, n_heads=4, ffn_dim=64, n_layers=1, dropout=0.5), chunk_len=6)
    vae.train()  # a caller forgetting eval(): guidance must still be deterministic (dropout off)
    a = torch.randn(3, 6, 32)
    x_t = (a + 0.5 * torch.randn_like(a)).requires_grad_(True)
    xi = torch.randn(3, 32)
    G1, _ = latent_guidance(vae, x_t, a, torch.ones(3), clip=1e9, xi=xi)
    G2, _ = latent_guidance(vae, x_t, a, torch.ones(3), clip=1e9, xi=xi)
    torch.testing.assert_close(G1, G2)
    assert not vae.training
    assert not G1.requires_grad and x_t.grad is None
    assert all(p.grad is None for p in vae.parameters())
    # With x_t = a the shared xi makes z_t = z_0 exactly: G = 0, whatever xi is.
    G0, _ = latent_guidance(vae, a, a, torch.ones(3), clip=1e9)
    assert G0.abs().max() == 0
    # g ascends -distance: a small step along it brings z(x_t) closer to z(a).
    def dist(x):
        with torch.no_grad():
            mu_x, lv_x = vae.encode(x)
            mu_a, lv_a = vae.encode(a)
            return ((mu_x + (0.5 * lv_x).exp() * xi - mu_a - (0.5 * lv_a).exp() * xi) ** 2).mean(-1)
    x0 = x_t.detach()
    assert (dist(x0 + 1e-2 * G1 / G1.flatten(1).norm(dim=1)[:, None, None]) < dist(x0)).all()


def test_unpadded_actions_are_padded_for_the_encoder():
    torch.manual_seed(0)
    vae = freeze_encoder(InfoVAE(InfoVAEConfig(width=32, n_heads=4, ffn_dim=64, n_layers=1), chunk_len=4))
    a16 = torch.randn(2, 4, 16)
    x16 = a16 + torch.randn_like(a16)
    xi = torch.randn(2, 32)
    G16, _ = latent_guidance(vae, x16, a16, torch.ones(2), clip=1e9, xi=xi)
    pad = lambda x: torch.nn.functional.pad(x, (0, 16))  # noqa: E731
    G32, _ = latent_guidance(vae, pad(x16), pad(a16), torch.ones(2), clip=1e9, xi=xi)
    assert G16.shape == (2, 4, 16)
    torch.testing.assert_close(G16, G32[..., :16])


def test_one_euler_step_moves_against_g_and_the_clean_estimate_towards_x_t():
    """Pins what the regression target ``u + lambda*G`` does at sampling (paper Eq. 10, the authors' code).

    LinearEncoder makes it exact: x_t - a = t*u, g = -2 (x_t - a) / D, so G = -k*u with k = 2*c*t/D > 0 and an Euler
    step of LeRobot's sampler (``x <- x + dt*v``, dt = -1/N) from x_t with the learned v = u + lambda*G lands at
    a + (t + dt + |dt|*lambda*k) * u: lambda > 0 ends farther from the clean chunk (and its latent) than plain flow
    matching, lambda < 0 (the "towards" variant) closer.
    """
    length, a_dim, t, dt = 4, 3, 0.6, -0.1
    enc = LinearEncoder(length, a_dim)
    g = torch.Generator().manual_seed(0)
    a, eps = torch.randn(1, length, a_dim, generator=g), torch.randn(1, length, a_dim, generator=g)
    x_t = t * eps + (1 - t) * a
    u = eps - a
    factor = flow_factor(torch.tensor([t]))
    G, _ = latent_guidance(enc, x_t, a, factor, clip=1e9)
    k = 2 * (t / (1 - t)) * t / (length * a_dim)
    torch.testing.assert_close(G, -k * u)  # G points from x_t back towards a

    def latent_distance(x):  # the encoder's own distance: mu = x flattened
        return (x - a).pow(2).mean().item()

    dist = {}
    for lam in (2.0, 0.0, -2.0):
        v = u + lam * G  # what the fine-tuned network learns to predict at (x_t, t)
        x_next = x_t + dt * v
        torch.testing.assert_close(x_next - a, (t + dt - dt * lam * k) * u)
        # The clean estimate implied by v is pulled back towards x_t for lambda > 0: a - t*lambda*G.
        torch.testing.assert_close(x_t - t * v, a - t * lam * G)
        dist[lam] = latent_distance(x_next)
    assert dist[2.0] > dist[0.0] > dist[-2.0]


def test_factors():
    c = flow_factor(torch.tensor([0.25, 0.5, 1.0]))
    assert c[0].item() == pytest.approx(1 / 3) and c[1].item() == pytest.approx(1.0)
    assert math.isfinite(c[2].item())  # t = 1 (pure noise) stays finite; the clamp bounds G
    abar = torch.tensor([0.99, 0.75, 0.0])
    torch.testing.assert_close(diffusion_factor(abar, torch.tensor([1, 2, 0])), torch.tensor([0.5, 1.0, 0.1]))


def test_bad_input_is_refused_clearly():
    enc = LinearEncoder(2, 4)
    with pytest.raises(ValueError, match="reduction"):
        GuidanceConfig(reduction="mean")
    with pytest.raises(ValueError, match="exceeds the encoder"):
        latent_guidance(enc, torch.zeros(1, 2, 5), torch.zeros(1, 2, 5), torch.ones(1))
    with pytest.raises(ValueError, match="factor"):
        latent_guidance(enc, torch.zeros(2, 2, 4), torch.zeros(2, 2, 4), torch.ones(3))
