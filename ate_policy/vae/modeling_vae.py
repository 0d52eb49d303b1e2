"""The action InfoVAE (paper appendix C, docs/architecture.md (ATE as implemented)).

Encoder: a Transformer over the action chunk with two learnable tokens prepended whose outputs are the
mean and log-variance of one chunk-level latent (dim = model width). Decoder: L zero queries plus a learned
positional embedding cross-attend to z, then a Linear maps back to the action dim. Padding masks let one
model read chunks shorter than its max length (``pad_mask`` True = padded time step).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ate_policy.vae.configuration_vae import InfoVAEConfig
from ate_policy.vae.losses import imq_c_default, kl_standard_normal, kl_to_prior, masked_smooth_l1, mmd_imq

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "vae_config.json"


class InfoVAE(nn.Module):
    def __init__(self, config: InfoVAEConfig, chunk_len: int):
        super().__init__()
        self.config = config
        self.chunk_len = chunk_len
        d = config.width
        self.latent_dim = d
        self.in_proj = nn.Linear(config.action_dim, d)
        self.mu_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.logvar_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.enc_pos = nn.Parameter(torch.randn(1, chunk_len + 2, d) * 0.02)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, config.n_heads, config.ffn_dim, config.dropout, activation="gelu",
                                       batch_first=True, norm_first=True),
            config.n_layers, enable_nested_tensor=False,
        )
        self.enc_norm = nn.LayerNorm(d)
        self.dec_pos = nn.Parameter(torch.randn(1, chunk_len, d) * 0.02)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d, config.n_heads, config.ffn_dim, config.dropout, activation="gelu",
                                       batch_first=True, norm_first=True),
            config.n_layers,
        )
        self.dec_norm = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, config.action_dim)

    # --- encoder / decoder -----------------------------------------------------------------------------------
    def _check(self, actions: torch.Tensor) -> None:
        if actions.ndim != 3 or actions.shape[-1] != self.config.action_dim:
            raise ValueError(f"actions must be (B, L, {self.config.action_dim}), got {tuple(actions.shape)}")
        if actions.shape[1] > self.chunk_len:
            raise ValueError(f"chunk of length {actions.shape[1]} is longer than the VAE's {self.chunk_len}")

    def encode(self, actions: torch.Tensor, pad_mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """actions (B, L, A), pad_mask (B, L) True where padded -> mu, logvar (B, D)."""
        self._check(actions)
        b, length, _ = actions.shape
        x = self.in_proj(actions)
        tokens = torch.cat([self.mu_token.expand(b, -1, -1), self.logvar_token.expand(b, -1, -1), x], dim=1)
        tokens = tokens + self.enc_pos[:, : length + 2]
        key_pad = None
        if pad_mask is not None:
            key_pad = torch.cat([torch.zeros(b, 2, dtype=torch.bool, device=pad_mask.device), pad_mask.bool()], 1)
        h = self.enc_norm(self.encoder(tokens, src_key_padding_mask=key_pad))
        return h[:, 0], h[:, 1]

    def decode(self, z: torch.Tensor, length: int | None = None, pad_mask: torch.Tensor | None = None
               ) -> torch.Tensor:
        """z (B, D) -> reconstructed chunk (B, length, A)."""
        length = self.chunk_len if length is None else length
        b = z.shape[0]
        queries = torch.zeros(b, length, self.latent_dim, device=z.device, dtype=z.dtype) + self.dec_pos[:, :length]
        h = self.decoder(queries, z.unsqueeze(1), tgt_key_padding_mask=None if pad_mask is None else pad_mask.bool())
        return self.out_proj(self.dec_norm(h))

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn_like(mu)
        return mu + (0.5 * logvar).exp() * noise

    def forward(self, actions: torch.Tensor, pad_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(actions, pad_mask)
        z = self.reparameterize(mu, logvar)
        recon = self.decode(z, actions.shape[1], pad_mask)
        return {"mu": mu, "logvar": logvar, "z": z, "recon": recon}

    # --- loss ------------------------------------------------------------------------------------------------
    def compute_loss(self, actions: torch.Tensor, pad_mask: torch.Tensor | None = None,
                     dim_mask: torch.Tensor | None = None, prior: tuple[torch.Tensor, torch.Tensor] | None = None,
                     kl_direction: str = "reverse") -> tuple[torch.Tensor, dict[str, float]]:
        """InfoVAE loss: SmoothL1 + w_kl * KL + w_mmd * MMD(z, N(0, I)).

        ``prior`` = (mu_phi, sigma_phi) switches the KL to Stage 2's alignment term; None = KL to N(0, I).
        ``dim_mask`` (B, A) True on real action dims: padded dims don't count in the reconstruction.
        """
        out = self(actions, pad_mask)
        mask = torch.ones_like(actions, dtype=torch.bool)
        if pad_mask is not None:
            mask = mask & ~pad_mask.bool()[:, :, None]
        if dim_mask is not None:
            mask = mask & dim_mask.bool()[:, None, :]
        recon = masked_smooth_l1(out["recon"], actions, mask, beta=self.config.smooth_l1_beta)
        if prior is None:
            kl = kl_standard_normal(out["mu"], out["logvar"]).mean()
        else:
            kl = kl_to_prior(out["mu"], out["logvar"], prior[0], prior[1], kl_direction).mean()
        c = self.config.imq_c if self.config.imq_c is not None else imq_c_default(self.latent_dim)
        mmd = mmd_imq(out["z"], torch.randn_like(out["z"]), c)
        loss = recon + self.config.w_kl * kl + self.config.w_mmd * mmd
        logs = {
            "loss": loss.item(), "recon": recon.item(), "kl": kl.item(), "mmd": mmd.item(),
            "latent_mu_norm": out["mu"].norm(dim=-1).mean().item(),
            "latent_sigma_mean": (0.5 * out["logvar"]).exp().mean().item(),
        }
        return loss, logs

    # --- persistence -----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, extra: dict | None = None) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, directory / MODEL_FILE)
        meta = {"model": asdict(self.config), "chunk_len": self.chunk_len, **(extra or {})}
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "InfoVAE":
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / CONFIG_FILE).exists():
            raise FileNotFoundError(f"{directory} holds no InfoVAE ({CONFIG_FILE} missing); train one with "
                                    "`ate_policy vae pretrain` or `ate_policy vae adapt`")
        meta = json.loads((directory / CONFIG_FILE).read_text())
        model = cls(InfoVAEConfig(**meta["model"]), meta["chunk_len"])
        model.load_state_dict(load_file(directory / MODEL_FILE, device=str(map_location)))
        model.meta = meta
        return model
