"""A deployment task: ``ros2_ws/src/ate_bringup/config/tasks/<task>.yaml`` as a typed dataclass.

One file per task holds what the policy node and ``ate_policy eval`` need: the language instruction, the
checkpoint, the image size the policy sees, the 20 Hz runtime (chunk threshold, merging strategy, freshness
limit, episode time limit, lockstep latency) and the inference device options (dtype, compile, CUDA graphs).

``load_task("cook_bun")`` finds the shipped file by name; a path works too; ``overrides`` is a nested dict
(launch arguments such as ``checkpoint:=...``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ate_description.config import config_dir, source_config_dir
from ate_policy.config import load_yaml
from ate_description.errors import UserError
from ate_policy.runtime.configuration_runtime import DeviceOptions, RuntimeConfig

TASKS_DIR_ENV = "ATE_TASKS_DIR"
"""Extra folder searched first for ``<task>.yaml`` (a robot PC's own task files)."""


@dataclass
class TaskConfig:
    # Task name (the file's stem); also the sim scene `ate_policy eval` runs unless sim_task says otherwise.
    name: str = ""
    # The language instruction given to the policy, word for word as in the episodes it was trained on (the
    # recorder writes this same string into every episode, see docs/data.md): another wording is another
    # input.
    instruction: str = ""
    # The task in the paper's words (appendix D.3), for people and reports; never given to the policy.
    description: str = ""
    # LeRobot checkpoint: a local `pretrained_model` folder, a checkpoint folder holding one, or a training
    # run folder (its policy/checkpoints/last is used). Nothing is ever downloaded.
    checkpoint: str = ""
    # Image size (height, width) the policy is given, after resizing the camera frames; null = the size the
    # checkpoint was trained on (its config's input features), which is what it should see.
    image_hw: list[int] | None = None
    # Sim scene for `ate_policy eval` (ate_sim.scenes); null = name.
    sim_task: str | None = None
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    device: DeviceOptions = field(default_factory=DeviceOptions)
    # This task's overrides of drivers.yaml's `safety` section (the one per-task override of the cell's limits),
    # e.g. {coupling: independent} for a task whose arms never work together. The bring-up hands them to every
    # driver node and to the cell supervisor; `ate_policy eval` applies them too.
    safety: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.image_hw is not None:
            if len(self.image_hw) != 2 or min(self.image_hw) < 1:
                raise ValueError(f"image_hw must be [height, width] with both >= 1, got {self.image_hw}")
            self.image_hw = [int(v) for v in self.image_hw]


def task_dirs() -> list[Path]:
    """Folders searched for ``<task>.yaml``, in order."""
    dirs: list[Path] = []
    if os.environ.get(TASKS_DIR_ENV):
        dirs.append(Path(os.environ[TASKS_DIR_ENV]))
    # The cell's config folder ($ATE_CONFIG_DIR, the bring-up's share folder through the ament index, or the
    # source tree), then a pip install's share folder and this checkout's source tree.
    dirs.append(config_dir() / "tasks")
    dirs.append(Path(sys.prefix) / "share" / "ate_bringup" / "config" / "tasks")
    dirs.append(source_config_dir() / "tasks")
    dirs.append(Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "ate_bringup" / "config" / "tasks")
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def resolve_task_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise UserError(f"task file {p} not found")
        return p
    for d in task_dirs():
        cand = d / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    known = sorted({f.stem for d in task_dirs() if d.is_dir() for f in d.glob("*.yaml")})
    raise UserError(f"task {str(name_or_path)!r} not found (searched "
                    f"{', '.join(str(d) for d in task_dirs())}); known tasks: {', '.join(known) or 'none'}")


def load_task(name_or_path: str | Path, overrides: dict | None = None) -> TaskConfig:
    """The task YAML (by name or path) with ``overrides`` (nested dict) applied; ``name`` defaults to the
    stem."""
    path = resolve_task_path(name_or_path)
    cfg = load_yaml(TaskConfig, path, overrides)
    if not cfg.name:
        cfg.name = path.stem
    if not cfg.instruction:
        raise UserError(f"{path}: `instruction` is empty; the policy needs the task's language instruction")
    return cfg
