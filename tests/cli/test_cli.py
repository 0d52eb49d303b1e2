"""The `ate_policy` command line: help, clear errors with exit code 2, and the README's main job."""

import subprocess
import sys
from pathlib import Path

import pytest


def run(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "ate_policy.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


# Every sub-command the README and docs name (written out here, not read from ate_policy.cli).
COMMANDS = ("quickstart", "demo-data", "sim-video", "vae", "convert", "inspect", "train", "eval")


def test_help_lists_every_command_and_each_answers_its_own_help(capsys):
    from ate_policy.cli import main

    r = run("--help")
    assert r.returncode == 0
    listed = [ln.split()[0] for ln in r.stdout.splitlines() if ln.startswith("  ") and ln.split()]
    assert set(COMMANDS) <= set(listed), r.stdout
    # Each listed command's own --help works (in this process: one import of each module, no subprocess each).
    for cmd in listed:
        capsys.readouterr()
        try:
            code = main([cmd, "--help"])
        except SystemExit as e:  # argparse / draccus exit after printing help
            code = e.code
        out = capsys.readouterr()
        assert code in (0, None), (cmd, out.err[-2000:])
        assert "usage" in (out.out + out.err).lower(), (cmd, out.out[-500:])
        assert "Traceback" not in out.err, cmd


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


def test_vae_adapt_without_a_config_trains_stage_2(demo_data, tmp_path, capsys):
    """No --config: the defaults of the sub-command's own stage (it used to fail on the pretrain default)."""
    from ate_policy.cli import main

    data = f"--datasets=[{{repo_id: local/demo_dual, root: {demo_data['adaptation']}}}]"
    code = main(["vae", "adapt", f"--output_dir={tmp_path}/s2", f"--stage1_dir={tmp_path}/missing", data])
    err = capsys.readouterr().err
    # It got as far as Stage 2's own requirement: the Stage-1 statistics.
    assert code == 2 and "no Stage-1 latent statistics" in err and "ate_policy vae pretrain" in err, err
    assert "describes stage" not in err


@pytest.mark.slow
def test_quickstart_runs_end_to_end_and_says_where_everything_went(tmp_path):
    import json

    import torch
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy

    from ate_policy.policies.tiny import tiny_pi0_patches

    out = tmp_path / "qs"
    # Few policy steps keep the test short; the stages are the README's main job unchanged.
    r = run("quickstart", "--output", str(out), "--policy-steps", "4", "--eval-seconds", "2", "--sim-episodes", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    for stage in ("[demo-data]", "[vae stage 1]", "[vae stage 2]", "[report]", "[policy]", "[sim eval]",
                  "[sim policy]"):
        assert stage in r.stdout
    # the last stage: the shipped sim-trained policy on an unseen lift_lid scene, its outcome from eval.json
    sim = json.loads((out / "sim_policy" / "eval.json").read_text())
    assert sim["task"] == "lift_lid" and sim["episodes"] == 1 and sim["seed"] == 1000
    assert f"success {sim['successes']}/1" in r.stdout.split("[sim policy]")[1]
    assert (out / "data" / "demo_dual" / "meta" / "info.json").exists()
    assert (out / "vae_stage1" / "final" / "latent_stats.safetensors").exists()
    assert (out / "vae_stage2" / "final" / "model.safetensors").exists()
    assert (out / "report" / "latent_space.png").exists()

    # The policy stage fine-tuned with guidance from this run's own Stage 2 (not a second one of its own).
    summary = json.loads((out / "policy" / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["guidance"] and summary["lambda"] == 2.0
    rows = [json.loads(ln) for ln in (out / "policy" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert all(row["guidance_norm"] > 0 for row in rows)
    assert sorted(p.name for p in out.glob("vae*")) == ["vae_stage1", "vae_stage2"]
    final = Path(summary["final_checkpoint"])
    assert str(final) in r.stdout and "loss" in r.stdout.split("[policy]")[1]

    # A plain LeRobot PI0 loads the checkpoint (the tiny patch only sets sizes) and predicts a chunk.
    with tiny_pi0_patches():
        policy = PI0Policy.from_pretrained(final)
    assert type(policy) is PI0Policy and json.loads((final / "config.json").read_text())["type"] == "pi0"
    batch = {"observation.state": torch.zeros(1, 16),
             "observation.language.tokens": torch.ones(1, 16, dtype=torch.long),
             "observation.language.attention_mask": torch.ones(1, 16, dtype=torch.bool),
             **{f"observation.images.{c}": torch.rand(1, 3, 48, 64)
                for c in ("cam_high", "cam_left_wrist", "cam_right_wrist")}}
    chunk = policy.predict_action_chunk(batch)
    assert chunk.shape == (1, 10, 16) and torch.isfinite(chunk).all()

    # The sim evaluation ran that checkpoint in the cook_bun cell through the runtime (it produced chunks, no tick
    # missed in lockstep) and the drivers' safety layer, until the 2 s limit (40 ticks of 20 Hz) or until a refusal
    # held the cell (a failure, never resumed), whose cause is then recorded.
    ev = json.loads((out / "eval" / "eval.json").read_text())
    ep = ev["per_episode"][0]
    assert ev["checkpoint"] == str(final) and ev["sim_task"] == "cook_bun" and ev["episodes"] == 1
    assert ep["chunks"] >= 1 and ev["missed_ticks"] == 0
    assert ep["ticks"] == 40 or (ep["held"] and ep["held"]["reason"] and 0 < ep["ticks"] < 40), ep
    # ... and its line says what happened: this episode's ticks and every refusal eval.json counts, by name.
    line = r.stdout.split("[sim eval]")[1].splitlines()[0]
    refused = ev["safety_refusals"]
    assert refused == ep["safety_refusals"]
    assert f"{ep['ticks']} ticks" in line and f"{sum(refused.values())} command(s) refused" in line, line
    if refused:
        assert f"mostly {max(refused, key=refused.get)}" in line, line
    assert (out / "eval" / "report.md").exists() and str(out / "eval" / "report.md") in r.stdout

    # A second run reuses everything that is complete.
    stamp = (out / "policy" / "summary.json").stat().st_mtime_ns
    r2 = run("quickstart", "--output", str(out))
    assert r2.returncode == 0, r2.stderr[-3000:]
    for stage in ("[demo-data] reused", "[vae stage 1] reused", "[vae stage 2] reused", "[report] reused",
                  "[policy] reused", "[sim eval] reused", "[sim policy] reused"):
        assert stage in r2.stdout
    assert (out / "policy" / "summary.json").stat().st_mtime_ns == stamp
