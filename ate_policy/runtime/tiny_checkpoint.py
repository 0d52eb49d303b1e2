"""A tiny, randomly initialised PI0 checkpoint saved exactly as ``ate_policy train`` saves one (tests,
benchmarks, the policy node's tests): ``pretrained_model/`` with ``config.json``, ``model.safetensors``, the
pre/post-processors (offline tiny tokenizer, normalisation statistics) and ``ate_train_config.yaml`` saying
``policy.tiny: true``.

The statistics decide what the random policy's outputs look like once unnormalised: centre them on a posture
(``action_mean``) with a small spread (``action_std``) and the random targets stay near it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ate_description import contract


def write_tiny_checkpoint(directory: str | Path, chunk_size: int = 10, image_hw: tuple[int, int] = (48, 64),
                          seed: int = 0, action_mean: np.ndarray | None = None, action_std: float = 1.0,
                          num_inference_steps: int = 2) -> Path:
    """Write ``directory/pretrained_model`` (and the run's ``tokenizer/``); returns the pretrained_model
    folder."""
    import torch

    from ate_policy.config import ATE_TRAIN_CONFIG, dump_yaml
    from ate_policy.policies.pi0_ate import PI0ATEPolicy
    from ate_policy.policies.tiny import tiny_pi0_config, tiny_pi0_patches
    from ate_policy.train import ATETrainConfig, PolicySpec, build_processors

    directory = Path(directory)
    spec = PolicySpec(type="pi0", tiny=True, chunk_size=chunk_size)
    with tiny_pi0_patches():
        torch.manual_seed(seed)
        pcfg = tiny_pi0_config(chunk_size=chunk_size, image_hw=tuple(image_hw),
                               num_inference_steps=num_inference_steps)
        policy = PI0ATEPolicy(pcfg)
    mean = np.zeros(contract.ACTION_DIM, np.float32) if action_mean is None else \
        np.asarray(action_mean, np.float32).reshape(contract.ACTION_DIM)
    std = np.full(contract.ACTION_DIM, action_std, np.float32)
    stats = {key: {"mean": mean, "std": std, "min": mean - 3 * std, "max": mean + 3 * std}
             for key in (contract.STATE_KEY, contract.ACTION_KEY)}
    pre, post = build_processors(spec, pcfg, stats, directory)
    out = directory / "pretrained_model"
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    dump_yaml(ATETrainConfig(output_dir=str(directory), policy=spec), out / ATE_TRAIN_CONFIG)
    return out
