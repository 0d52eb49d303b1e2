"""The training recipes shipped in ``ate_policy/configs/``, over the one config system (``ate_description.config``).

``parse_cli(Cls, argv)`` and ``load_yaml(Cls, path, overrides)`` accept a recipe's name without a path
(``--config vae_tiny_pretrain``); everything else (draccus parsing, YAML dumping) is ``ate_description.config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from ate_description import config as _config
from ate_description.config import dump_yaml, to_dict  # noqa: F401  (re-exported for the trainers)

T = TypeVar("T")

CONFIG_DIR = Path(__file__).parent / "configs"


def resolve_config_path(name: str) -> Path:
    """A path, or the name of a recipe in ate_policy/configs (with or without .yaml)."""
    return _config.resolve_config_path(name, (CONFIG_DIR,))


def parse_cli(cls: type[T], argv: list[str], prog: str | None = None) -> T:
    return _config.parse_cli(cls, argv, prog, search_dirs=(CONFIG_DIR,))


def load_yaml(cls: type[T], path: str | Path | None = None, overrides: dict | None = None) -> T:
    return _config.load_yaml(cls, path, overrides, search_dirs=(CONFIG_DIR,))


# What `ate_policy train` saves beside a checkpoint's weights: the run's config, read back by the runtime's
# loader and by a fine-tune from that checkpoint.
ATE_TRAIN_CONFIG = "ate_train_config.yaml"


def read_train_config(model_dir: str | Path) -> dict:
    """``ate_train_config.yaml`` beside the weights (written by ``ate_policy train``), as a dict, or {} for other
    checkpoints."""
    import yaml

    f = Path(model_dir) / ATE_TRAIN_CONFIG
    return (yaml.safe_load(f.read_text()) or {}) if f.is_file() else {}
