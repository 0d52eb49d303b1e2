"""The one configuration system: typed dataclasses, YAML files, draccus (LeRobot's config library).

``parse_cli(Cls, argv)`` reads ``--config FILE`` / ``--config_path FILE`` and dotted overrides
(``--optim.lr=3e-4``); ``load_yaml(Cls, path, overrides)`` does the same from code (the ROS nodes, tests);
``dump_yaml(cfg, path)`` writes a config back so every run folder holds the exact config it ran with.
Recipes shipped with the package live in ``ate_policy/configs/`` and can be named without a path
(``--config vae_tiny_pretrain``).
"""

from __future__ import annotations

import dataclasses
import io
import sys
from pathlib import Path
from typing import TypeVar

import draccus
import yaml

from ate_policy.errors import UserError

T = TypeVar("T")

CONFIG_DIR = Path(__file__).parent / "configs"


def resolve_config_path(name: str) -> Path:
    """A path, or the name of a recipe in ate_policy/configs (with or without .yaml)."""
    p = Path(name)
    if p.exists():
        return p
    for cand in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if cand.exists():
            return cand
    shipped = ", ".join(sorted(f.stem for f in CONFIG_DIR.glob("*.yaml")))
    raise UserError(f"config {name!r} not found (not a file, not a shipped recipe; shipped: {shipped})")


def _split_config_arg(argv: list[str]) -> tuple[str | None, list[str]]:
    config, rest, it = None, [], iter(argv)
    for a in it:
        if a in ("--config", "--config_path"):
            config = next(it, None)
            if config is None:
                raise UserError(f"{a} needs a file")
        elif a.startswith("--config=") or a.startswith("--config_path="):
            config = a.split("=", 1)[1]
        else:
            rest.append(a)
    return config, rest


def parse_cli(cls: type[T], argv: list[str], prog: str | None = None) -> T:
    """Parse ``--config FILE`` plus dotted overrides into ``cls``; ``--help`` lists every field."""
    config, rest = _split_config_arg(argv)
    path = str(resolve_config_path(config)) if config else None
    old_argv = sys.argv
    try:
        if prog:
            sys.argv = [prog]
        return draccus.parse(config_class=cls, config_path=path, args=rest)
    except (ValueError, TypeError, draccus.utils.ParsingError if hasattr(draccus, "utils") else ValueError) as e:
        raise UserError(f"bad config: {e}") from e
    finally:
        sys.argv = old_argv


def load_yaml(cls: type[T], path: str | Path | None = None, overrides: dict | None = None) -> T:
    """Load a YAML file (or nothing) into ``cls``, then apply a nested dict of overrides."""
    data: dict = {}
    if path is not None:
        p = resolve_config_path(str(path))
        data = yaml.safe_load(p.read_text()) or {}
    if overrides:
        data = _merge(data, overrides)
    try:
        return draccus.decode(cls, data)
    except Exception as e:  # draccus raises several types for bad fields
        raise UserError(f"bad config {path or ''}: {e}") from e


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def to_dict(cfg) -> dict:
    return draccus.encode(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


def dump_yaml(cfg, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    yaml.safe_dump(to_dict(cfg), buf, sort_keys=False)
    path.write_text(buf.getvalue())
