"""The house's layers hold (import-linter's `layers` contract in pyproject.toml), the contract catches an upward import,
and nothing in the repository cites a file outside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"ate_policy": REPO / "ate_policy", "teleop": REPO / "teleop", "calibration": REPO / "calibration",
            **{p.name: p / p.name for p in (REPO / "ros2_ws" / "src").iterdir() if (p / p.name).is_dir()}}


def _lint_imports(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail("lint-imports (import-linter, a dev dependency) is not installed: run scripts/setup.sh")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_every_layer_imports_only_from_layers_below():
    r = _lint_imports(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "one-way layers KEPT" in r.stdout


def test_the_contract_fails_on_an_upward_import(tmp_path):
    """A copy of the packages with one module of the bottom layer importing the ML package breaks the build."""
    for name, src in PACKAGES.items():
        shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "ate_description" / "upward_probe.py").write_text("import ate_policy.train  # noqa: F401\n")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    r = _lint_imports(tmp_path, {"PYTHONPATH": str(tmp_path)})
    assert r.returncode != 0, r.stdout
    assert "one-way layers BROKEN" in r.stdout
    assert "ate_description.upward_probe -> ate_policy.train" in r.stdout


def test_no_file_cites_a_document_outside_the_repository():
    bad = []
    for f in REPO.rglob("*"):
        if f.suffix not in (".py", ".md", ".yaml", ".toml", ".sh", ".xml", ".cfg") or not f.is_file():
            continue
        if {".venv", ".git", "build", "install", "log", "outputs"} & set(f.relative_to(REPO).parts):
            continue
        text = f.read_text(errors="replace")
        bad += [f"{f.relative_to(REPO)}: {s}" for s in ("DESIGN.md", "../shared", "STYLE.md") if s in text
                and f.name != "test_architecture.py"]
    assert not bad, bad
