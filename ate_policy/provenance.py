"""What produced a stage of a run folder: a fingerprint of its config and input data, package versions, git commit.

A stage (Stage 1, Stage 2, the policy) is keyed on ``fingerprint(doc)``, where ``doc`` holds the stage's config
section without the fields that do not change what it computes (``IGNORED``: length, logging, workers, W&B,
where it writes, which device) and digests of its inputs: each dataset's id, action column and the SHA-256 of its
``meta/info.json`` and ``meta/stats.json``, the Stage-1 latent statistics a Stage 2 is aligned to, the Stage-2
fingerprint a policy is steered by. ``claim_stage`` compares it with the one recorded in the stage folder
(``fingerprint.json``): equal resumes or skips, different refuses with the differing keys (or, with ``fresh``,
deletes the stage so it is retrained). Raising ``steps`` therefore still resumes; another lambda, dataset or
optimiser does not silently reuse a stale stage.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from ate_description.errors import UserError

FINGERPRINT_FILE = "fingerprint.json"
# Config fields that do not change what a stage computes: how long it runs (a longer run resumes the shorter
# one), how often it saves and logs, data-loader workers, W&B, where it writes, which device it runs on, and the
# multi-process plumbing.
IGNORED = frozenset({"steps", "epochs", "save_every", "log_every", "num_workers", "wandb", "output_dir", "device",
                     "record_sample_indices", "process_group_timeout_s", "cache_frames_gib"})
PACKAGES = ("torch", "lerobot", "accelerate", "transformers", "numpy", "ate-realman")
_REPO = Path(__file__).resolve().parents[1]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dataset_root(repo_id: str, root: str | None) -> Path:
    """The local folder of a LeRobot dataset (``root``, or LeRobot's cache for a hub id, fetched if needed)."""
    if root is not None:
        return Path(root)
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    try:
        return Path(LeRobotDatasetMetadata(repo_id).root)
    except Exception as e:  # LeRobot raises several types for a missing dataset
        raise UserError(f"cannot open dataset {repo_id}: {e}") from e


def dataset_digest(repo_id: str, root: str | None, action_key: str = "action") -> dict:
    """Identity of a dataset's content as far as training reads it: id, action column, info and stats hashes."""
    folder = dataset_root(repo_id, root)
    digest = {"repo_id": repo_id, "action_key": action_key}
    for name in ("info", "stats"):
        f = folder / "meta" / f"{name}.json"
        if not f.is_file():
            raise UserError(f"dataset {repo_id or root} has no meta/{name}.json under {folder}: not a LeRobot v3.0 "
                            "dataset (or still being written)")
        digest[f"{name}_sha256"] = file_sha256(f)
    return digest


def config_section(section: dict, drop: tuple[str, ...] = ()) -> dict:
    """``section`` (a config as a plain dict) without the ignored fields, at every level, nor ``drop``."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in IGNORED}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return {k: v for k, v in strip(section).items() if k not in drop}


def fingerprint(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flat(x, prefix: str = "") -> dict:
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(x, list):
        out = {}
        for i, v in enumerate(x):
            out.update(_flat(v, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: x}


def differences(old: dict, new: dict, limit: int = 6) -> str:
    """The dotted keys where two fingerprint documents differ, old -> new, at most ``limit`` of them."""
    a, b = _flat(old), _flat(new)
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, "<unset>") != b.get(k, "<unset>"))
    shown = [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in keys[:limit]]
    return "; ".join(shown) + (f"; and {len(keys) - limit} more" if len(keys) > limit else "")


def recorded(folder: Path) -> dict | None:
    f = folder / FINGERPRINT_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def claim_stage(folder: Path, doc: dict, name: str, started, fresh: bool = False, write: bool = True) -> str:
    """Check that ``folder`` (a stage) was made from ``doc``; record it for a new stage; returns the fingerprint.

    ``started(folder)`` says whether the stage holds work (a checkpoint or a final result). A started stage made
    from another config or other data is refused with the differences, or deleted when ``fresh``. ``write=False``
    only checks (the non-main processes of a multi-process run).
    """
    fp = fingerprint(doc)
    if started(folder):
        rec = recorded(folder)
        if rec is not None and rec.get("fingerprint") == fp:
            return fp
        why = (differences(rec.get("inputs", {}), doc) if rec is not None
               else f"no {FINGERPRINT_FILE}: made before stages recorded what produced them")
        if not fresh:
            raise UserError(f"{name} in {folder} was made by a different config or data ({why}); re-run with "
                            f"--fresh to retrain it and what depends on it, or choose a new output_dir")
        if write:
            shutil.rmtree(folder)
    if write:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / FINGERPRINT_FILE).write_text(json.dumps({"fingerprint": fp, "inputs": doc}, indent=2,
                                                          default=str))
    return fp


def versions() -> dict[str, str]:
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def git_commit() -> str:
    """The commit of the source tree this package runs from (``-dirty`` with local changes); "unknown" when it is
    installed from a wheel or git is missing."""
    if not (_REPO / ".git").exists():
        return "unknown"
    try:
        head = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def provenance(fp: str) -> dict:
    """What every stage summary records about what produced it."""
    return {"fingerprint": fp, "versions": versions(), "git_commit": git_commit()}
