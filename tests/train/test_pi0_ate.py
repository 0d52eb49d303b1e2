"""PI0 + ATE: only the loss changes, through the identity noise' = eps + (1-t)*lambda*G, actions' = a - t*lambda*G."""

from __future__ import annotations

import torch

from ate_policy.guidance import GuidanceConfig, flow_factor, latent_guidance
from ate_policy.policies.tiny import tiny_pi0_patches

CHUNK = 8  # tests/train/conftest.py builds the tiny PI0 with this chunk size


def test_lambda_zero_gives_lerobots_own_loss_bit_for_bit(pi0_pair, vae, make_batch):
    ours, plain = pi0_pair
    ours.attach_guidance(vae, GuidanceConfig(lam=0.0))
    assert ours.guidance_active  # the guidance code runs, it just adds 0
    batch = make_batch()
    torch.manual_seed(123)
    ref, _ = plain.forward(batch)
    torch.manual_seed(123)
    loss, logs = ours.forward(batch)
    assert torch.equal(loss, ref)
    assert {"guidance_norm", "guidance_norm_raw", "guidance_clamped_frac"} <= set(logs)


def test_positive_lambda_regresses_u_plus_lambda_g_at_the_same_x_t(pi0_pair, vae, make_batch):
    ours, _ = pi0_pair
    cfg = GuidanceConfig(lam=2.0, clip=0.1)
    ours.attach_guidance(vae, cfg)
    batch = make_batch()
    a = torch.nn.functional.pad(batch["action"], (0, 16))  # PI0 pads to max_action_dim 32
    eps = torch.randn_like(a)
    t = torch.tensor([0.3, 0.9])
    xi = torch.randn(2, vae.latent_dim)
    seen = {}
    hooks = [
        ours.model.action_in_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("x_t", i[0].detach())),
        ours.model.action_out_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("v", o.detach())),
    ]
    try:
        loss, _ = ours.forward(batch, noise=eps, time=t, xi=xi)
    finally:
        for h in hooks:
            h.remove()
    x_t = t[:, None, None] * eps + (1 - t[:, None, None]) * a
    torch.testing.assert_close(seen["x_t"], x_t)  # the network sees the unchanged x_t
    dim_mask = torch.arange(32) < 16
    G, _ = latent_guidance(vae, x_t, a, flow_factor(t), clip=0.1, dim_mask=dim_mask, pad_mask=batch["action_is_pad"],
                           xi=xi)
    assert G.abs().max() > 0 and G.abs().max() <= 0.1 + 1e-7
    target = (eps - a) + 2.0 * G
    expected = ((seen["v"] - target) ** 2)[..., :16].mean()
    torch.testing.assert_close(loss, expected)
    unguided = ((seen["v"] - (eps - a)) ** 2)[..., :16].mean()
    assert not torch.allclose(loss, unguided)


def test_frozen_encoder_reads_zeros_on_pi0s_padded_dims(pi0_pair, vae, make_batch):
    """PI0 pads actions to 32 dims and draws noise over all 32: the encoder must still see zeros past dim 16."""
    ours, _ = pi0_pair
    ours.attach_guidance(vae, GuidanceConfig(lam=2.0, clip=1e9))
    batch = make_batch()
    batch["action_is_pad"][:] = False
    a = torch.nn.functional.pad(batch["action"], (0, 16))
    g = torch.Generator().manual_seed(1)
    eps = torch.randn(a.shape, generator=g)
    eps_other = eps.clone()
    eps_other[..., 16:] = torch.randn(2, CHUNK, 16, generator=g)  # the same draw except on the padded dims
    t, xi = torch.tensor([0.3, 0.8]), torch.randn(2, vae.latent_dim, generator=g)
    seen = []
    encode = vae.encode
    vae.encode = lambda x, pad_mask=None: (seen.append(x.detach().clone()), encode(x, pad_mask))[1]
    try:
        _, logs = ours.forward(batch, noise=eps, time=t, xi=xi)
        _, logs_other = ours.forward(batch, noise=eps_other, time=t, xi=xi)
        # x_t equal to a on the real dims (eps = a there; t = 0.5 keeps t*a + (1-t)*a == a exact in floats),
        # anything on the padded dims: z_t == z_0, no guidance.
        eps_same = eps.clone()
        eps_same[..., :16] = a[..., :16]
        _, logs_same = ours.forward(batch, noise=eps_same, time=torch.tensor([0.5, 0.5]), xi=xi)
    finally:
        del vae.encode
    # What the encoder read for x_t, against a hand-built x_t with its padded dims zeroed.
    hand = t[:, None, None] * eps + (1 - t[:, None, None]) * a
    hand[..., 16:] = 0
    torch.testing.assert_close(seen[0][:2], hand)
    torch.testing.assert_close(seen[1][:2], hand)
    assert logs["guidance_norm_raw"] > 0
    assert logs_other["guidance_norm_raw"] == logs["guidance_norm_raw"]  # G is blind to the padded-dim noise
    assert logs_same["guidance_norm_raw"] == 0.0


def test_guidance_gradient_trains_only_the_policy(pi0_pair, vae, make_batch):
    ours, _ = pi0_pair
    ours.attach_guidance(vae, GuidanceConfig(lam=2.0))
    ours.zero_grad()
    loss, _ = ours.forward(make_batch())
    loss.backward()
    assert ours.model.action_out_proj.weight.grad is not None
    assert all(p.grad is None for p in vae.parameters())
    assert not any(n.startswith("_ate") for n in ours.state_dict())


def test_checkpoint_loads_with_plain_lerobot_pi0(pi0_pair, vae, tmp_path, make_batch):
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy

    ours, _ = pi0_pair
    ours.attach_guidance(vae, GuidanceConfig(lam=2.0))
    ours.save_pretrained(tmp_path / "pretrained_model")
    with tiny_pi0_patches():
        loaded = PI0Policy.from_pretrained(tmp_path / "pretrained_model")
    assert type(loaded) is PI0Policy and loaded.config.type == "pi0" and loaded.config.chunk_size == CHUNK
    for k, v in ours.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    batch = make_batch()
    del batch["action"]
    ours.eval()
    torch.manual_seed(5)
    a1 = ours.predict_action_chunk(batch)
    torch.manual_seed(5)
    a2 = loaded.predict_action_chunk(batch)
    assert a1.shape == (2, CHUNK, 16)
    torch.testing.assert_close(a1, a2)
    ours.train()


def test_no_encoder_or_disabled_is_plain_pi0(pi0_pair, vae, make_batch):
    ours, plain = pi0_pair
    batch = make_batch()
    for enc, cfg in ((None, GuidanceConfig()), (vae, GuidanceConfig(enable=False))):
        ours.attach_guidance(enc, cfg)
        assert not ours.guidance_active
        torch.manual_seed(9)
        ref, _ = plain.forward(batch)
        torch.manual_seed(9)
        loss, _ = ours.forward(batch)
        assert torch.equal(loss, ref)
