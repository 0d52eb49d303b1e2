"""Fixtures of the training tests: tiny random PI0 / Diffusion policies, a random Stage-2 InfoVAE, batches."""

from __future__ import annotations

import pytest
import torch

from ate_description import contract
from ate_policy.vae.configuration_vae import InfoVAEConfig
from ate_policy.vae.modeling_vae import InfoVAE

CHUNK = 8


def make_vae(chunk_len: int = CHUNK, seed: int = 0) -> InfoVAE:
    torch.manual_seed(seed)
    return InfoVAE(InfoVAEConfig(width=32, n_heads=4, ffn_dim=64, n_layers=1), chunk_len=chunk_len)


def make_batch(b: int = 2, chunk: int = CHUNK, seed: int = 0, tokens: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {
        contract.STATE_KEY: torch.randn(b, contract.STATE_DIM, generator=g),
        contract.ACTION_KEY: torch.randn(b, chunk, contract.ACTION_DIM, generator=g),
        "action_is_pad": torch.zeros(b, chunk, dtype=torch.bool),
    }
    batch["action_is_pad"][-1, -2:] = True  # the last sample's chunk runs past its episode's end
    for key in contract.IMAGE_KEYS:
        batch[key] = torch.rand(b, 3, 48, 64, generator=g)
    if tokens:
        batch["observation.language.tokens"] = torch.randint(3, 300, (b, 16), generator=g)
        mask = torch.zeros(b, 16, dtype=torch.bool)
        mask[:, :6] = True
        batch["observation.language.attention_mask"] = mask
    return batch


@pytest.fixture(name="make_batch")
def make_batch_fixture():
    return make_batch


@pytest.fixture
def vae() -> InfoVAE:
    return make_vae()


@pytest.fixture(scope="module")
def pi0_pair():
    """(ours, plain LeRobot PI0Policy) with identical random weights."""
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy

    from ate_policy.policies.pi0_ate import PI0ATEPolicy
    from ate_policy.policies.tiny import tiny_pi0_config, tiny_pi0_patches

    with tiny_pi0_patches():
        torch.manual_seed(0)
        ours = PI0ATEPolicy(tiny_pi0_config(chunk_size=CHUNK))
        plain = PI0Policy(tiny_pi0_config(chunk_size=CHUNK))
    plain.load_state_dict(ours.state_dict())
    return ours, plain


# --- the pipeline on demo data ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    from ate_policy.data.demo import DemoSpec, write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("demo"), DemoSpec(episodes=2, frames=30, pretrain_episodes=3,
                                                                     pretrain_frames=40, image_hw=(24, 32)))


def tiny_overrides(demo_data, output_dir, **extra) -> dict:
    """The shipped tiny recipe, shrunk to seconds, on the session's demo data."""
    over = {
        "output_dir": str(output_dir),
        "dataset": {"repo_id": "local/demo_dual", "root": str(demo_data["adaptation"])},
        "vae_stage1": {"datasets": [{"repo_id": "local/demo_pretrain", "root": str(demo_data["pretrain"])}],
                       "steps": 6, "save_every": 3, "log_every": 3},
        "vae_stage2": {"steps": 6, "save_every": 3, "log_every": 3},
        "policy": {"chunk_size": 8},
        "steps": 8, "save_every": 2, "batch_size": 4,
    }
    for k, v in extra.items():
        over[k] = {**over[k], **v} if isinstance(v, dict) and isinstance(over.get(k), dict) else v
    return over


@pytest.fixture(name="tiny_overrides")
def tiny_overrides_fixture():
    return tiny_overrides


@pytest.fixture(scope="session")
def reference_run(demo_data, tmp_path_factory):
    """One uninterrupted run of the whole pipeline (tiny PI0 + ATE), shared by the pipeline tests."""
    from ate_policy.config import load_yaml
    from ate_policy.train import ATETrainConfig, run

    out = tmp_path_factory.mktemp("ref") / "run"
    cfg = load_yaml(ATETrainConfig, "train_tiny", tiny_overrides(demo_data, out))
    return cfg, run(cfg, progress=False)
