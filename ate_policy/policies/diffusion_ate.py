"""Diffusion Policy (epsilon prediction) steered by ATE latent guidance: LeRobot's ``DiffusionPolicy`` with only the
training loss changed (paper Eq. 7): ``mean((eps_theta(x_k) - lambda*G - eps)^2)`` with ``c_k = sqrt(1 - abar_k)``.

Unlike PI0's flow, the epsilon target cannot be shifted through the model's inputs alone, so ``forward`` re-states
LeRobot's ``DiffusionModel.compute_loss`` (same draws in the same order, same padding mask) with the target
``eps + lambda*G``; a test checks that with lambda = 0 it equals LeRobot's loss exactly. No parameters are added: a
saved checkpoint is a plain LeRobot Diffusion checkpoint (``type: diffusion``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
from lerobot.utils.constants import ACTION, OBS_IMAGES

from ate_policy.guidance import GuidanceConfig, diffusion_factor, freeze_encoder, latent_guidance


class DiffusionATEPolicy(DiffusionPolicy):
    """``DiffusionPolicy`` whose ``forward`` (the training loss) adds the ATE guidance when one is attached."""

    def attach_guidance(self, encoder: torch.nn.Module | None, cfg: GuidanceConfig) -> "DiffusionATEPolicy":
        if self.config.prediction_type != "epsilon":
            raise ValueError("ATE guidance for Diffusion Policy needs prediction_type='epsilon' (paper Eq. 7), "
                             f"got {self.config.prediction_type!r}")
        self.__dict__["_ate_encoder"] = None if encoder is None else freeze_encoder(encoder)
        self.__dict__["_ate_cfg"] = cfg
        return self

    @property
    def guidance_active(self) -> bool:
        cfg = self.__dict__.get("_ate_cfg")
        return bool(cfg is not None and cfg.enable and self.__dict__.get("_ate_encoder") is not None)

    def forward(self, batch: dict[str, Tensor], eps: Tensor | None = None, timesteps: Tensor | None = None,
                xi: Tensor | None = None) -> tuple[Tensor, dict | None]:
        if not self.guidance_active and eps is None and timesteps is None:
            return super().forward(batch)
        if self.config.image_features:  # as DiffusionPolicy.forward: stack the cameras
            batch = dict(batch)
            for key in self.config.image_features:
                if self.config.n_obs_steps == 1 and batch[key].ndim == 4:
                    batch[key] = batch[key].unsqueeze(1)
            batch[OBS_IMAGES] = torch.stack([batch[key] for key in self.config.image_features], dim=-4)
        model = self.diffusion
        global_cond = model._prepare_global_conditioning(batch)
        trajectory = batch[ACTION]
        if eps is None:
            eps = torch.randn(trajectory.shape, device=trajectory.device)
        if timesteps is None:
            timesteps = torch.randint(0, model.noise_scheduler.config.num_train_timesteps, (trajectory.shape[0],),
                                      device=trajectory.device).long()
        noisy = model.noise_scheduler.add_noise(trajectory, eps, timesteps)
        target, stats = eps, None
        if self.guidance_active:
            cfg: GuidanceConfig = self.__dict__["_ate_cfg"]
            factor = diffusion_factor(model.noise_scheduler.alphas_cumprod, timesteps)
            G, stats = latent_guidance(self.__dict__["_ate_encoder"], noisy, trajectory, factor, clip=cfg.clip,
                                       reduction=cfg.reduction, pad_mask=batch.get("action_is_pad"), xi=xi)
            target = eps + cfg.lam * G
        pred = model.unet(noisy, timesteps, global_cond=global_cond)
        loss = F.mse_loss(pred, target, reduction="none")
        if self.config.do_mask_loss_for_padding:
            if "action_is_pad" not in batch:
                raise ValueError("do_mask_loss_for_padding needs 'action_is_pad' in the batch")
            mask = (~batch["action_is_pad"]).unsqueeze(-1)
            loss = (loss * mask).sum() / (mask.sum() * loss.shape[-1]).clamp_min(1)
        else:
            loss = loss.mean()
        return loss, stats
