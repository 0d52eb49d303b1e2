"""PI0 steered by ATE latent guidance: LeRobot's ``PI0Policy`` with only the training loss changed.

Nothing of LeRobot is copied or changed (docs/architecture.md (ATE as implemented)). With ``x_t = t*eps + (1-t)*a`` and ``u = eps - a``,
passing ``noise' = eps + (1-t)*lambda*G`` and ``actions' = a - t*lambda*G`` with the same ``t`` to LeRobot's model
forward leaves ``x_t`` unchanged and makes the regression target ``u + lambda*G``: the paper's Eq. 10 in LeRobot's
convention. The subclass has no extra parameters, so a checkpoint it saves is a plain LeRobot PI0 checkpoint
(``type: pi0``) and inference pays nothing for the guidance. The frozen encoder is kept out of the module tree
(not in ``state_dict``, not moved by ``.to``): the trainer places it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lerobot.policies.pi0.modeling_pi0 import PI0Policy
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

from ate_policy.guidance import GuidanceConfig, flow_factor, freeze_encoder, latent_guidance


class PI0ATEPolicy(PI0Policy):
    """``PI0Policy`` whose ``forward`` (the training loss) adds the ATE guidance when one is attached."""

    def attach_guidance(self, encoder: torch.nn.Module | None, cfg: GuidanceConfig) -> "PI0ATEPolicy":
        """Use ``encoder`` (the Stage-2 InfoVAE, frozen here) with ``cfg``; None or cfg.enable=False = plain PI0."""
        self.__dict__["_ate_encoder"] = None if encoder is None else freeze_encoder(encoder)
        self.__dict__["_ate_cfg"] = cfg
        return self

    @property
    def guidance_active(self) -> bool:
        cfg = self.__dict__.get("_ate_cfg")
        return bool(cfg is not None and cfg.enable and self.__dict__.get("_ate_encoder") is not None)

    def forward(self, batch: dict[str, Tensor], reduction: str = "mean", noise: Tensor | None = None,
                time: Tensor | None = None, xi: Tensor | None = None) -> tuple[Tensor, dict]:
        """LeRobot's PI0 loss with target ``u + lambda*G``; ``noise``/``time``/``xi`` may be given (tests)."""
        if not self.guidance_active:
            if noise is None and time is None:
                return super().forward(batch, reduction)
        images, img_masks = self._preprocess_images(batch)
        lang_tokens, lang_masks = batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK]
        state = self.prepare_state(batch)
        actions = self.prepare_action(batch)
        # Same draws in the same order as PI0Policy.forward: with lambda = 0 the loss is LeRobot's, bit for bit.
        if noise is None:
            noise = self.model.sample_noise(actions.shape, actions.device)
        if time is None:
            time = self.model.sample_time(actions.shape[0], actions.device)
        original_action_dim = self.config.output_features[ACTION].shape[0]

        stats: dict[str, float] = {}
        if self.guidance_active:
            cfg: GuidanceConfig = self.__dict__["_ate_cfg"]
            t = time[:, None, None]
            x_t = t * noise + (1 - t) * actions
            # PI0 pads actions to max_action_dim and draws noise over all of it: x_t holds t*eps on the padded
            # dims, which latent_guidance zeroes (dim_mask) so the encoder reads what it was trained on.
            dim_mask = torch.arange(actions.shape[-1], device=actions.device) < original_action_dim
            G, stats = latent_guidance(self.__dict__["_ate_encoder"], x_t, actions, flow_factor(time),
                                       clip=cfg.clip, reduction=cfg.reduction, dim_mask=dim_mask,
                                       pad_mask=batch.get("action_is_pad"), xi=xi)
            shift = cfg.lam * G
            noise, actions = noise + (1 - t) * shift, actions - t * shift

        losses = self.model.forward(images, img_masks, lang_tokens, lang_masks, state, actions, noise, time)
        losses = losses[:, :, :original_action_dim]
        loss_dict = {"loss_per_dim": losses.mean(dim=[0, 1]).detach().cpu().numpy().tolist(), **stats}
        if reduction == "none":
            per_sample = losses.mean(dim=(1, 2))
            loss_dict["loss"] = per_sample.mean().item()
            return per_sample, loss_dict
        loss = losses.mean()
        loss_dict["loss"] = loss.item()
        return loss, loss_dict
