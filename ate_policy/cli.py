"""The ``ate_policy`` command line.

Each sub-command lives in its own module and is imported only when called, so ``ate_policy --help`` is instant
and a robot PC without the training extra can still use the light commands. Sub-commands that take a config
parse it with draccus (LeRobot's config library): ``--config FILE`` (or ``--config_path FILE``) plus dotted
overrides such as ``--model.width=64``.
"""

from __future__ import annotations

import importlib
import sys

from ate_description.errors import UserError

# name -> ("module:function", one-line help). The function takes argv (list[str]) and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("ate_policy.quickstart:main", "the main job on embedded defaults: demo data -> Stage 1 -> Stage 2 -> report -> PI0 + ATE"),
    "demo-data": ("ate_policy.data.demo:main", "write synthetic LeRobot v3.0 datasets (dual-arm + pre-training)"),
    "sim-video": ("ate_policy.data.sim_demos:video_main", "MP4/PNG frames of one scripted episode in the MuJoCo cell (3 cameras)"),
    "vae": ("ate_policy.vae.cli:main", "action InfoVAE: `vae pretrain`, `vae adapt`, `vae report`"),
    "convert": ("ate_policy.data.convert:main", "rosbag2 bags (MCAP/sqlite3) -> LeRobot v3.0 dataset, cached"),
    "inspect": ("ate_policy.data.inspect:main", "audit a dataset: per-episode sync, stale/dropped frames, outliers, videos, plots"),
    "dataset": ("ate_policy.data.curate:main", "LeRobot's editor keeping our episode records: `dataset delete`, `dataset merge`"),
    "train": ("ate_policy.train:main", "the ATE pipeline: Stage 1 VAE -> stats -> Stage 2 VAE -> PI0/Diffusion fine-tuning with guidance"),
    "eval": ("ate_policy.evaluation:main", "a checkpoint in the sim cell through the runtime: success, times, jerk, wrench peaks"),
    "viz": ("ate_policy.viz.dataset:main", "one dataset episode in Rerun: cameras, joints vs targets, 3D model, the audit's flags"),
}


def usage() -> str:
    lines = ["usage: ate_policy <command> [options]", "", "commands:"]
    width = max(len(n) for n in COMMANDS)
    for name, (_, help_text) in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {help_text}")
    lines += ["", "`ate_policy <command> --help` describes each command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ate_policy: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    from ate_policy.quiet import quiet_libraries

    quiet_libraries()
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(rest) or 0)
    except KeyboardInterrupt:
        print("\nate_policy: interrupted; a re-run resumes from the last checkpoint", file=sys.stderr)
        return 130
    except UserError as e:
        print(f"ate_policy {name}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
