"""The InfoVAE network: shapes, masks, errors, persistence, and input gradients for the guidance."""

import pytest
import torch

from ate_policy.vae.configuration_vae import InfoVAEConfig
from ate_policy.vae.modeling_vae import InfoVAE


def tiny(chunk_len=8, **kw) -> InfoVAE:
    torch.manual_seed(0)
    cfg = InfoVAEConfig(action_dim=6, width=16, n_heads=4, ffn_dim=32, n_layers=2, dropout=0.0, **kw)
    return InfoVAE(cfg, chunk_len)


def test_defaults_are_the_authors():
    c = InfoVAEConfig()
    assert (c.width, c.n_heads, c.ffn_dim, c.n_layers, c.w_kl, c.w_mmd, c.action_dim) == (
        512, 4, 1024, 9, 7.5e-5, 1.0, 32)


def test_shapes():
    m = tiny()
    x = torch.randn(3, 8, 6)
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (3, 16)
    assert m.decode(mu).shape == (3, 8, 6)
    assert m.decode(mu, length=5).shape == (3, 5, 6)
    out = m(x)
    assert out["recon"].shape == x.shape and out["z"].shape == (3, 16)


def test_padded_steps_do_not_change_the_latent():
    m = tiny().eval()
    x = torch.randn(2, 8, 6)
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[:, 5:] = True
    y = x.clone()
    y[:, 5:] = 1000.0  # garbage in the padded tail
    mu_x, lv_x = m.encode(x, pad)
    mu_y, lv_y = m.encode(y, pad)
    assert torch.allclose(mu_x, mu_y, atol=1e-5) and torch.allclose(lv_x, lv_y, atol=1e-5)
    # ... while without the mask the tail does matter
    assert not torch.allclose(m.encode(x)[0], m.encode(y)[0], atol=1e-3)


def test_bad_shapes_are_refused():
    m = tiny()
    with pytest.raises(ValueError, match="longer"):
        m.encode(torch.randn(1, 9, 6))
    with pytest.raises(ValueError, match=r"\(B, L, 6\)"):
        m.encode(torch.randn(1, 8, 5))
    with pytest.raises(ValueError, match="divisible"):
        InfoVAEConfig(width=10, n_heads=4)


def test_loss_is_masked_smooth_l1_when_the_regularisers_are_off():
    m = tiny(w_kl=0.0, w_mmd=0.0)
    x = torch.randn(4, 8, 6)
    pad = torch.zeros(4, 8, dtype=torch.bool)
    pad[:, 6:] = True
    dim_mask = torch.tensor([[True] * 4 + [False] * 2] * 4)
    torch.manual_seed(3)
    loss, logs = m.compute_loss(x, pad_mask=pad, dim_mask=dim_mask)
    torch.manual_seed(3)
    recon = m(x, pad)["recon"]  # same reparameterisation noise
    expected = torch.nn.functional.smooth_l1_loss(recon[:, :6, :4], x[:, :6, :4])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert logs["recon"] == pytest.approx(expected.item(), rel=1e-5)


def test_standard_prior_equals_stage1_kl():
    m = tiny(w_kl=1.0, w_mmd=0.0).eval()
    x = torch.randn(4, 8, 6)
    torch.manual_seed(5)
    _, a = m.compute_loss(x)
    torch.manual_seed(5)
    _, b = m.compute_loss(x, prior=(torch.zeros(16), torch.ones(16)), kl_direction="reverse")
    assert a["kl"] == pytest.approx(b["kl"], rel=1e-5)


def test_save_and_load_round_trip(tmp_path):
    m = tiny().eval()
    m.save_pretrained(tmp_path, {"stage": "adapt"})
    n = InfoVAE.from_pretrained(tmp_path).eval()
    x = torch.randn(2, 8, 6)
    assert torch.equal(m.encode(x)[0], n.encode(x)[0])
    assert n.meta["stage"] == "adapt" and n.chunk_len == 8
    with pytest.raises(FileNotFoundError, match="vae pretrain"):
        InfoVAE.from_pretrained(tmp_path / "nothing")


def test_frozen_encoder_in_eval_mode_gives_input_gradients():
    """What the ATE guidance needs: d latent / d noisy chunk through a frozen, eval-mode encoder."""
    m = tiny().eval().requires_grad_(False)
    x = torch.randn(2, 8, 6, requires_grad=True)
    mu, logvar = m.encode(x)
    (mu.pow(2).sum() + logvar.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
