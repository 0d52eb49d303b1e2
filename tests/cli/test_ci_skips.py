"""CI (CI=true, as .ci/run sets) fails a test that skips because a required dependency is missing; outside CI it
skips. Runs pytest on a throw-away test folder that uses this suite's tests/conftest.py."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

SAMPLE = '''
import pytest


def test_needs_a_missing_core_library():
    pytest.importorskip("no_such_core_library_xyz")


def test_needs_an_optional_one():
    pytest.importorskip("wandb.no_such_module_xyz")


def test_a_tool_skip():
    pytest.skip("colcon_missing_xyz is not installed (dev extra)")


def test_skips_for_another_reason():
    pytest.skip("needs a GPU")
'''

MODULE_SKIP = '''
import pytest

pytest.importorskip("no_such_module_level_library_xyz")


def test_never_runs():
    pass
'''


def _pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "--continue-on-collection-errors", str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_required_dependency_fails_in_ci_and_skips_elsewhere(tmp_path):
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)

    local = _pytest(tmp_path, None)
    assert local.returncode == 0, local.stdout[-3000:]
    assert "5 skipped" in local.stdout and "failed" not in local.stdout  # 4 tests + 1 module

    ci = _pytest(tmp_path, "true")
    out = ci.stdout
    assert ci.returncode == 1, out[-3000:]
    assert "FAILED test_sample.py::test_needs_a_missing_core_library" in out
    assert "FAILED test_sample.py::test_a_tool_skip" in out
    assert "ERROR test_module_skip.py" in out and "no_such_module_level_library_xyz" in out
    assert "SKIPPED" in out and "test_needs_an_optional_one" not in " ".join(
        ln for ln in out.splitlines() if ln.startswith("FAILED"))
    assert "2 failed" in out and "2 skipped" in out and "1 error" in out
