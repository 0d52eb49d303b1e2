"""The `ate_policy` command line: help, clear errors with exit code 2, and the README's main job."""

import subprocess
import sys
from pathlib import Path

import pytest


def run(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "ate_policy.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_help_lists_every_command():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("quickstart", "demo-data", "vae"):
        assert cmd in r.stdout


def test_unknown_command_and_missing_config_are_clear_errors():
    r = run("fly")
    assert r.returncode == 2 and "unknown command 'fly'" in r.stderr
    r = run("vae", "pretrain", "--config", "no_such_recipe")
    assert r.returncode == 2 and "not found" in r.stderr and "vae_tiny_pretrain" in r.stderr
    assert "Traceback" not in r.stderr


def test_stage2_without_stage1_names_the_fix(tmp_path):
    r = run("vae", "adapt", "--config", "vae_tiny_adapt", f"--output_dir={tmp_path}/s2",
            f"--stage1_dir={tmp_path}/missing")
    assert r.returncode == 2 and "ate_policy vae pretrain" in r.stderr and "Traceback" not in r.stderr


def test_wrong_stage_for_the_command():
    r = run("vae", "adapt", "--config", "vae_tiny_pretrain")
    assert r.returncode == 2 and "vae pretrain" in r.stderr


@pytest.mark.slow
def test_quickstart_runs_end_to_end_and_says_where_everything_went(tmp_path):
    out = tmp_path / "qs"
    r = run("quickstart", "--output", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    for stage in ("[demo-data]", "[vae stage 1]", "[vae stage 2]", "[report]"):
        assert stage in r.stdout
    assert (out / "data" / "demo_dual" / "meta" / "info.json").exists()
    assert (out / "vae_stage1" / "final" / "latent_stats.safetensors").exists()
    assert (out / "vae_stage2" / "final" / "model.safetensors").exists()
    assert (out / "report" / "latent_space.png").exists()
    # A second run reuses everything that is complete.
    r2 = run("quickstart", "--output", str(out))
    assert r2.returncode == 0 and "reused" in r2.stdout
