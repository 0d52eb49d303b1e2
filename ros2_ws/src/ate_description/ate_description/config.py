"""The one configuration system: typed dataclasses, YAML files, draccus (LeRobot's config library).

``parse_cli(Cls, argv)`` reads ``--config FILE`` / ``--config_path FILE`` and dotted overrides
(``--optim.lr=3e-4``); ``load_yaml(Cls, path, overrides)`` does the same from code (the ROS nodes, tests);
``dump_yaml(cfg, path)`` writes a config back so every run folder holds the exact config it ran with.
A name that is not a file is looked up in ``search_dirs`` (with or without ``.yaml``): ``ate_policy.config``
passes its shipped training recipes that way, so ``--config vae_tiny_pretrain`` works without a path.

``config_dir()`` is where the cell's YAML lives (``drivers.yaml``, ``teleop.yaml``, ``calibration.yaml``,
``tasks/``): ``$ATE_CONFIG_DIR`` when set, else the bring-up package's installed share folder found through the
ament index (a file lookup by package name, no import), else the source tree.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import draccus
import yaml

from ate_description.errors import UserError

T = TypeVar("T")

CONFIG_DIR_ENV = "ATE_CONFIG_DIR"
BRINGUP_PACKAGE = "ate_bringup"


def config_dir() -> Path:
    """The cell's config folder: $ATE_CONFIG_DIR, the bring-up's installed share/config, else the source tree's."""
    if os.environ.get(CONFIG_DIR_ENV):
        return Path(os.environ[CONFIG_DIR_ENV])
    try:
        from ament_index_python.packages import get_package_share_directory
        p = Path(get_package_share_directory(BRINGUP_PACKAGE)) / "config"
        if p.is_dir():
            return p
    except Exception:  # no ament index (plain venv): the source tree
        pass
    return source_config_dir()


def source_config_dir() -> Path:
    """ros2_ws/src/ate_bringup/config of the source tree this package sits in."""
    return Path(__file__).resolve().parents[2] / BRINGUP_PACKAGE / "config"


def resolve_config_path(name: str, search_dirs: Sequence[Path] = ()) -> Path:
    """A path, or the name of a YAML file in one of ``search_dirs`` (with or without .yaml)."""
    p = Path(name)
    if p.exists():
        return p
    for d in search_dirs:
        for cand in (Path(d) / name, Path(d) / f"{name}.yaml"):
            if cand.exists():
                return cand
    shipped = ", ".join(sorted({f.stem for d in search_dirs for f in Path(d).glob("*.yaml")}))
    where = f" (not a file, not a shipped recipe; shipped: {shipped})" if shipped else " (no such file)"
    raise UserError(f"config {name!r} not found{where}")


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


def parse_cli(cls: type[T], argv: list[str], prog: str | None = None, search_dirs: Sequence[Path] = ()) -> T:
    """Parse ``--config FILE`` plus dotted overrides into ``cls``; ``--help`` lists every field."""
    config, rest = _split_config_arg(argv)
    path = str(resolve_config_path(config, search_dirs)) if config else None
    old_argv = sys.argv
    try:
        if prog:
            sys.argv = [prog]
        return draccus.parse(config_class=cls, config_path=path, args=rest)
    except (ValueError, TypeError, draccus.utils.ParsingError if hasattr(draccus, "utils") else ValueError) as e:
        raise UserError(f"bad config: {e}") from e
    finally:
        sys.argv = old_argv


def load_yaml(cls: type[T], path: str | Path | None = None, overrides: dict | None = None,
              search_dirs: Sequence[Path] = ()) -> T:
    """Load a YAML file (or nothing) into ``cls``, then apply a nested dict of overrides."""
    data: dict = {}
    if path is not None:
        p = resolve_config_path(str(path), search_dirs)
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
