"""Diffusion Policy + ATE: epsilon target eps + lambda*G with c_k = sqrt(1 - abar_k); nothing else changes."""

from __future__ import annotations

import pytest
import torch

from ate_policy.guidance import GuidanceConfig, diffusion_factor, latent_guidance
from ate_policy.policies.tiny import tiny_diffusion_config

HORIZON = 8


@pytest.fixture(scope="module")
def diffusion_pair():
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    from ate_policy.policies.diffusion_ate import DiffusionATEPolicy

    torch.manual_seed(0)
    ours = DiffusionATEPolicy(tiny_diffusion_config(horizon=HORIZON))
    plain = DiffusionPolicy(tiny_diffusion_config(horizon=HORIZON))
    plain.load_state_dict(ours.state_dict())
    return ours, plain


def _batch(make_batch):
    batch = make_batch(chunk=HORIZON, tokens=False)
    batch["observation.state"] = batch["observation.state"][:, None]  # n_obs_steps = 1
    return batch


def test_lambda_zero_gives_lerobots_own_loss_bit_for_bit(diffusion_pair, vae, make_batch):
    ours, plain = diffusion_pair
    ours.attach_guidance(vae, GuidanceConfig(lam=0.0))
    batch = _batch(make_batch)
    torch.manual_seed(7)
    ref, _ = plain.forward(batch)
    torch.manual_seed(7)
    loss, logs = ours.forward(batch)
    assert torch.equal(loss, ref)
    assert "guidance_clamped_frac" in logs


def test_positive_lambda_regresses_eps_plus_lambda_g(diffusion_pair, vae, make_batch):
    ours, _ = diffusion_pair
    ours.attach_guidance(vae, GuidanceConfig(lam=2.0, clip=0.1))
    batch = _batch(make_batch)
    a = batch["action"]
    eps, k, xi = torch.randn_like(a), torch.tensor([3, 40]), torch.randn(2, vae.latent_dim)
    seen = {}
    hook = ours.diffusion.unet.register_forward_hook(lambda m, i, o: seen.update(x=i[0].detach(), pred=o.detach()))
    try:
        loss, _ = ours.forward(batch, eps=eps, timesteps=k, xi=xi)
    finally:
        hook.remove()
    abar = ours.diffusion.noise_scheduler.alphas_cumprod[k][:, None, None]
    x_k = abar.sqrt() * a + (1 - abar).sqrt() * eps
    torch.testing.assert_close(seen["x"], x_k)
    G, _ = latent_guidance(vae, x_k, a, diffusion_factor(ours.diffusion.noise_scheduler.alphas_cumprod, k),
                           clip=0.1, pad_mask=batch["action_is_pad"], xi=xi)
    assert G.abs().max() > 0
    assert not ours.config.do_mask_loss_for_padding  # LeRobot's default: every step counts (G is 0 on padding)
    assert (G[-1, -2:] == 0).all()
    expected = ((seen["pred"] - eps - 2.0 * G) ** 2).mean()
    torch.testing.assert_close(loss, expected)


def test_checkpoint_loads_with_plain_lerobot_diffusion(diffusion_pair, vae, tmp_path):
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    ours, _ = diffusion_pair
    ours.attach_guidance(vae, GuidanceConfig())
    ours.save_pretrained(tmp_path / "pretrained_model")
    loaded = DiffusionPolicy.from_pretrained(tmp_path / "pretrained_model")
    assert type(loaded) is DiffusionPolicy and loaded.config.type == "diffusion"
    for key, value in ours.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_sample_prediction_is_refused(vae):
    from ate_policy.policies.diffusion_ate import DiffusionATEPolicy

    policy = DiffusionATEPolicy(tiny_diffusion_config(horizon=HORIZON, prediction_type="sample"))
    with pytest.raises(ValueError, match="epsilon"):
        policy.attach_guidance(vae, GuidanceConfig())
