"""Tiny, randomly initialised LeRobot PI0 / Diffusion policies and an offline tokenizer, for tests, benchmarks and
the CPU quick start (nothing is downloaded: docs/architecture.md (environment facts)).

PI0's sizes are fixed variants (``gemma_2b`` / ``gemma_300m``), so the tiny PI0 is the *unchanged* LeRobot
``PI0Policy`` built inside ``tiny_pi0_patches()``, which swaps, for the duration of the block:
- ``modeling_pi0.get_gemma_config`` -> one Gemma layer of width 64 with **8 heads** (LeRobot's attention reshape
  hard-codes 8 heads) of dim 8, for both the VLM and the action expert;
- the PaliGemma construction -> a 1-layer, width-32 SigLIP tower, a projector to the tiny width (the real one
  projects to 2048) and a vocabulary the size of the tiny tokenizer in the VLM and the expert (the real one has 257152 rows:
  66 MB each at width 64, for nothing).
Build, save and load (also with plain ``PI0Policy.from_pretrained``) inside that block.

The processor's tokenizer is the PaliGemma tokenizer from the hub in LeRobot; ``tiny_tokenizer(dir)`` writes a
small byte-level BPE tokenizer (``tokenizers`` library, trained on a few sentences, any text still encodes through
its 256 byte symbols) as a ``transformers`` tokenizer folder, which ``AutoTokenizer.from_pretrained`` and
therefore LeRobot's ``TokenizerProcessorStep`` read offline.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ate_description import contract

TINY_WIDTH = 64
TINY_HEADS = 8  # LeRobot's PI0 attention reshape assumes 8 heads (docs/architecture.md (environment facts))
TINY_VOCAB = 384
TINY_IMAGE = 32  # square input of the tiny SigLIP tower
TINY_PATCH = 8  # -> 16 image tokens per camera

_CORPUS = [
    "cook the bun: put the bun in the steamer and close the lid",
    "pick up the object", "place the cup on the plate", "open the drawer", "fold the towel",
    "move the left arm to the right", "grasp the handle and pull", "push the button",
]


def tiny_gemma_config(variant: str = "gemma_300m"):
    from lerobot.policies.pi0.modeling_pi0 import GemmaConfig

    # The variant name is ignored on purpose: VLM and action expert share one tiny shape.
    return GemmaConfig(width=TINY_WIDTH, depth=1, mlp_dim=2 * TINY_WIDTH, num_heads=TINY_HEADS, num_kv_heads=1,
                       head_dim=TINY_WIDTH // TINY_HEADS)


@contextlib.contextmanager
def tiny_pi0_patches():
    """Within this block every LeRobot PI0 built (or loaded) has the tiny architecture."""
    from unittest import mock

    import lerobot.policies.pi0.modeling_pi0 as m

    original, original_expert = m.PaliGemmaForConditionalGenerationWithPiGemma, m.PiGemmaForCausalLM

    def tiny_paligemma(config):
        vc = config.vision_config
        vc.hidden_size, vc.intermediate_size, vc.num_hidden_layers, vc.num_attention_heads = 32, 64, 1, 4
        vc.patch_size = TINY_PATCH
        # The real projector maps SigLIP features to 2048 (gemma_2b's width); ours to the tiny width.
        vc.projection_dim = config.text_config.hidden_size
        config.text_config.vocab_size = TINY_VOCAB
        return original(config)

    def tiny_expert(config):
        config.vocab_size = TINY_VOCAB  # the expert's unused lm_head is vocab x width too
        return original_expert(config=config)

    with mock.patch.object(m, "get_gemma_config", tiny_gemma_config), \
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
                    tokenizer_max_length: int = 16, **overrides):
    """A PI0Config for the dual-arm contract at toy scale (CPU, float32). Build the policy in tiny_pi0_patches()."""
    from lerobot.policies.pi0.configuration_pi0 import PI0Config

    inputs, outputs = _features(state_dim, action_dim, cameras, image_hw)
    # The cosine decay keeps PI0's 30k steps: LeRobot squeezes it into any shorter run (a fixed short decay left
    # every step after it at the floor learning rate, 1/400 of the peak: a long CPU run learned nothing more).
    kw = dict(chunk_size=chunk_size, n_action_steps=chunk_size, image_resolution=(TINY_IMAGE, TINY_IMAGE),
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
