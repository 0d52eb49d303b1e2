"""Tiny, randomly initialised LeRobot PI0 / Diffusion policies and an offline tokenizer, for tests, benchmarks and
the CPU quick start (nothing is downloaded: docs/architecture.md (environment facts)).

PI0's sizes are fixed variants (``gemma_2b`` / ``gemma_300m``), so the tiny PI0 is the *unchanged* LeRobot
``PI0Policy`` built inside ``tiny_pi0_patches(size)``, which swaps, for the duration of the block:
- ``modeling_pi0.get_gemma_config`` -> ``size.depth`` Gemma layers of width ``size.width`` (default one layer of
  64) with **8 heads** (LeRobot's attention reshape hard-codes 8 heads) of dim width / 8, for both the VLM and
  the action expert;
- the PaliGemma construction -> a ``size.vision_depth``-layer, width-``size.vision_width`` SigLIP tower (default 1
  x 32) reading ``size.image`` square pixels in ``size.patch`` patches, a projector to the tiny width (the real one
  projects to 2048) and a vocabulary the size of the tiny tokenizer in the VLM and the expert (the real one has 257152 rows:
  66 MB each at width 64, for nothing).
Build, save and load (also with plain ``PI0Policy.from_pretrained``) inside that block, with the same size:
``ate_policy train`` saves it as ``policy.tiny_size`` in the checkpoint's ``ate_train_config.yaml`` and the
runtime's loader reads it back (a checkpoint without it has the default size).

The processor's tokenizer is the PaliGemma tokenizer from the hub in LeRobot; ``tiny_tokenizer(dir)`` writes a
small byte-level BPE tokenizer (``tokenizers`` library, trained on a few sentences, any text still encodes through
its 256 byte symbols) as a ``transformers`` tokenizer folder, which ``AutoTokenizer.from_pretrained`` and
therefore LeRobot's ``TokenizerProcessorStep`` read offline.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from ate_description import contract

TINY_HEADS = 8  # LeRobot's PI0 attention reshape assumes 8 heads (docs/architecture.md (environment facts))
TINY_VISION_HEADS = 4
TINY_VOCAB = 384


@dataclass
class TinySize:
    """The tiny PI0's shape (``policy.tiny_size`` of a training recipe). The default is the 0.7 MB network the
    tests and the quick start use; a larger one learns longer tasks at more CPU time per step
    (docs/sim_success.md)."""

    # Width of the Gemma layers, VLM and action expert alike (8 heads of width / 8; a multiple of 16, RoPE needs
    # an even head dim).
    width: int = 64
    # Gemma layers of the VLM and of the action expert (each).
    depth: int = 1
    # Width of the SigLIP vision tower (4 heads) and its layers.
    vision_width: int = 32
    vision_depth: int = 1
    # Square input of the vision tower (PI0 resizes every camera to it, keeping the aspect with padding) and its
    # patch: (image / patch)^2 tokens per camera, 16 by default.
    image: int = 32
    patch: int = 8

    def __post_init__(self):
        if self.width < 16 or self.width % 16:
            raise ValueError(f"policy.tiny_size.width must be a positive multiple of 16, got {self.width}")
        if self.vision_width < TINY_VISION_HEADS or self.vision_width % TINY_VISION_HEADS:
            raise ValueError("policy.tiny_size.vision_width must be a positive multiple of "
                             f"{TINY_VISION_HEADS}, got {self.vision_width}")
        for name in ("depth", "vision_depth", "patch"):
            if getattr(self, name) < 1:
                raise ValueError(f"policy.tiny_size.{name} must be >= 1, got {getattr(self, name)}")
        if self.image < self.patch or self.image % self.patch:
            raise ValueError(f"policy.tiny_size.image ({self.image}) must be a multiple of its patch "
                             f"({self.patch})")

    @classmethod
    def saved(cls, train_config: dict) -> "TinySize | None":
        """The shape a checkpoint's ``ate_train_config.yaml`` (as a dict) records for its tiny PI0 (its
        ``policy.tiny_size``; absent in older checkpoints: the default), or None when it is no tiny PI0."""
        spec = train_config.get("policy") or {}
        if not spec.get("tiny") or spec.get("type", "pi0") != "pi0":
            return None
        return cls(**(spec.get("tiny_size") or {}))

_CORPUS = [
    "cook the bun: put the bun in the steamer and close the lid",
    "pick up the object", "place the cup on the plate", "open the drawer", "fold the towel",
    "move the left arm to the right", "grasp the handle and pull", "push the button",
]


def tiny_gemma_config(variant: str = "gemma_300m", size: TinySize | None = None):
    from lerobot.policies.pi0.modeling_pi0 import GemmaConfig

    # The variant name is ignored on purpose: VLM and action expert share one tiny shape.
    size = size or TinySize()
    return GemmaConfig(width=size.width, depth=size.depth, mlp_dim=2 * size.width, num_heads=TINY_HEADS,
                       num_kv_heads=1, head_dim=size.width // TINY_HEADS)


@contextlib.contextmanager
def tiny_pi0_patches(size: TinySize | None = None):
    """Within this block every LeRobot PI0 built (or loaded) has the tiny architecture of ``size`` (default
    ``TinySize()``)."""
    from unittest import mock

    import lerobot.policies.pi0.modeling_pi0 as m

    size = size or TinySize()
    original, original_expert = m.PaliGemmaForConditionalGenerationWithPiGemma, m.PiGemmaForCausalLM

    def tiny_paligemma(config):
        vc = config.vision_config
        vc.hidden_size, vc.intermediate_size = size.vision_width, 2 * size.vision_width
        vc.num_hidden_layers, vc.num_attention_heads = size.vision_depth, TINY_VISION_HEADS
        vc.patch_size = size.patch
        # The real projector maps SigLIP features to 2048 (gemma_2b's width); ours to the tiny width.
        vc.projection_dim = config.text_config.hidden_size
        config.text_config.vocab_size = TINY_VOCAB
        return original(config)

    def tiny_expert(config):
        config.vocab_size = TINY_VOCAB  # the expert's unused lm_head is vocab x width too
        return original_expert(config=config)

    with mock.patch.object(m, "get_gemma_config", lambda variant: tiny_gemma_config(variant, size)), \
            mock.patch.object(m, "PaliGemmaForConditionalGenerationWithPiGemma", tiny_paligemma), \
            mock.patch.object(m, "PiGemmaForCausalLM", tiny_expert):
        yield


def tiny_tokenizer(directory: str | Path) -> Path:
    """Write (once) a tiny offline tokenizer folder usable as ``tokenizer_name`` by LeRobot; returns it."""
    directory = Path(directory)
    if (directory / "tokenizer.json").exists():
        return directory
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
    directory.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(directory)
    return directory


def _features(state_dim: int, action_dim: int, cameras: tuple[str, ...], image_hw: tuple[int, int]):
    from lerobot.configs import FeatureType, PolicyFeature

    inputs = {contract.STATE_KEY: PolicyFeature(FeatureType.STATE, (state_dim,))}
    for cam in cameras:
        inputs[f"observation.images.{cam}"] = PolicyFeature(FeatureType.VISUAL, (3, *image_hw))
    outputs = {contract.ACTION_KEY: PolicyFeature(FeatureType.ACTION, (action_dim,))}
    return inputs, outputs


def tiny_pi0_config(chunk_size: int = 8, state_dim: int = contract.STATE_DIM, action_dim: int = contract.ACTION_DIM,
                    cameras: tuple[str, ...] = contract.CAMERA_NAMES, image_hw: tuple[int, int] = (48, 64),
                    tokenizer_max_length: int = 16, size: TinySize | None = None, **overrides):
    """A PI0Config for the dual-arm contract at toy scale (CPU, float32). Build the policy in
    ``tiny_pi0_patches(size)`` with the same ``size``."""
    from lerobot.policies.pi0.configuration_pi0 import PI0Config

    inputs, outputs = _features(state_dim, action_dim, cameras, image_hw)
    image = (size or TinySize()).image
    # The cosine decay keeps PI0's 30k steps: LeRobot squeezes it into any shorter run (a fixed short decay left
    # every step after it at the floor learning rate, 1/400 of the peak: a long CPU run learned nothing more).
    kw = dict(chunk_size=chunk_size, n_action_steps=chunk_size, image_resolution=(image, image),
              tokenizer_max_length=tokenizer_max_length, num_inference_steps=2, dtype="float32", device="cpu",
              scheduler_warmup_steps=2, push_to_hub=False,
              input_features=inputs, output_features=outputs)
    kw.update(overrides)
    return PI0Config(**kw)


def tiny_diffusion_config(horizon: int = 8, n_obs_steps: int = 1, state_dim: int = contract.STATE_DIM,
                          action_dim: int = contract.ACTION_DIM, cameras: tuple[str, ...] = contract.CAMERA_NAMES,
                          image_hw: tuple[int, int] = (48, 64), **overrides):
    """A DiffusionConfig (epsilon prediction) at toy scale: 2-stage width-32/64 U-Net, untrained ResNet18."""
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

    inputs, outputs = _features(state_dim, action_dim, cameras, image_hw)
    n_action_steps = horizon // 2
    kw = dict(horizon=horizon, n_obs_steps=n_obs_steps, n_action_steps=n_action_steps,
              drop_n_last_frames=horizon - n_action_steps - n_obs_steps + 1,
              pretrained_backbone_weights=None, use_group_norm=True, spatial_softmax_num_keypoints=8,
              down_dims=(32, 64), kernel_size=3, n_groups=4, diffusion_step_embed_dim=32,
              num_train_timesteps=50, num_inference_steps=4, device="cpu", push_to_hub=False,
              input_features=inputs, output_features=outputs)
    kw.update(overrides)
    return DiffusionConfig(**kw)
