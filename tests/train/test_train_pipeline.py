"""`ate_policy train` end to end on demo data: stages, skip/resume, checkpoints, logs, multi-process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ate_policy.config import load_yaml
from ate_description.errors import UserError
from ate_policy.train import ATETrainConfig, GlobalBatchSampler, build_policy, run, stage_configs

REPO = Path(__file__).resolve().parents[2]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "policy" / "metrics.jsonl").read_text().splitlines()]


def _cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# --- fast unit checks -----------------------------------------------------------------------------------------------
def test_global_batches_split_across_ranks_and_resume_where_they_stopped():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    r0 = take(GlobalBatchSampler(20, 4, rank=0, world=2, seed=1), 10)
    r1 = take(GlobalBatchSampler(20, 4, rank=1, world=2, seed=1), 10)
    for a, b in zip(r0, r1):
        assert len(a) == len(b) == 2 and not set(a) & set(b)  # each rank its own half of the global batch
    epoch0 = [i for batch in r0[:5] + r1[:5] for i in batch]
    assert sorted(epoch0) == list(range(20))  # one epoch = every sample once
    assert take(GlobalBatchSampler(20, 4, rank=0, world=2, seed=1, start_step=7), 3) == r0[7:10]
    with pytest.raises(UserError, match="divisible"):
        GlobalBatchSampler(20, 5, rank=0, world=2, seed=1)


def test_stage2_follows_the_policy_chunk_normalisation_and_dataset(tmp_path):
    cfg = load_yaml(ATETrainConfig, "train_tiny", {"output_dir": str(tmp_path), "policy": {"chunk_size": 12}})
    s1, s2 = stage_configs(cfg)
    assert s1.stage == "pretrain" and Path(s1.output_dir) == tmp_path / "vae_stage1"
    assert s2.stage == "adapt" and s2.chunk_len == 12 and s2.normalization == "mean_std"
    assert s2.stage1_dir == s1.output_dir and s2.datasets == [cfg.dataset]
    cfg = load_yaml(ATETrainConfig, "train_tiny", {"output_dir": str(tmp_path), "stage1_dir": "/elsewhere",
                                                   "policy": {"type": "diffusion", "chunk_size": 8}})
    s1, s2 = stage_configs(cfg)
    assert s1 is None and s2.stage1_dir == "/elsewhere"
    assert s2.normalization == "min_max"  # LeRobot's Diffusion Policy normalises actions to [-1, 1]


def test_bad_configs_are_refused_clearly(tmp_path):
    with pytest.raises(UserError, match="PolicySpec") as err:
        load_yaml(ATETrainConfig, "train_tiny", {"policy": {"type": "act"}})
    assert "policy.type must be one of ('pi0', 'diffusion')" in str(err.value.__cause__.__cause__)
    cfg = load_yaml(ATETrainConfig, "train_tiny", {"output_dir": str(tmp_path), "guidance": {"enable": False},
                                                   "dataset": {"repo_id": "", "root": None}})
    with pytest.raises(UserError, match="dataset"):
        run(cfg, progress=False)
    (tmp_path / "empty").mkdir()
    cfg.policy.pretrained_path = str(tmp_path / "empty")
    with pytest.raises(UserError, match="model.safetensors"):
        build_policy(cfg.policy, None)


# --- the pipeline -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pipeline_runs_every_stage_and_writes_a_plain_lerobot_checkpoint(reference_run):
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy
    from lerobot.processor import PolicyProcessorPipeline

    from ate_policy.policies.tiny import tiny_pi0_patches

    cfg, folders = reference_run
    out = cfg.out
    assert (out / "vae_stage1" / "final" / "latent_stats.safetensors").exists()
    assert (out / "vae_stage2" / "final" / "model.safetensors").exists()
    summary = json.loads((out / "policy" / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["guidance"] and summary["processes"] == 1
    ckpts = sorted(p.name for p in (out / "policy" / "checkpoints").glob("0*"))
    assert ckpts == ["00000002", "00000004", "00000006", "00000008"]
    assert (out / "policy" / "checkpoints" / "last").resolve().name == "00000008"
    rows = _metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 9))
    for r in rows:
        assert r["guidance_norm"] <= r["guidance_norm_raw"] + 1e-6 and 0 <= r["guidance_clamped_frac"] <= 1
        assert r["step_time_s"] > 0 and r["loss"] > 0
    assert list((out / "policy" / "tensorboard").glob("events.out.tfevents.*"))

    # Deployment reads the checkpoint with plain LeRobot (the tiny architecture patch only sets sizes).
    final = Path(summary["final_checkpoint"])
    with tiny_pi0_patches():
        policy = PI0Policy.from_pretrained(final)
    pre = PolicyProcessorPipeline.from_pretrained(final, config_filename="policy_preprocessor.json")
    batch = pre({"observation.state": torch.zeros(16), "task": "cook the bun",
                 **{f"observation.images.{c}": torch.rand(3, 24, 32)
                    for c in ("cam_high", "cam_left_wrist", "cam_right_wrist")}})
    chunk = policy.predict_action_chunk(batch)
    assert chunk.shape == (1, 8, 16) and torch.isfinite(chunk).all()


@pytest.mark.slow
def test_a_complete_run_is_skipped(reference_run):
    cfg, _ = reference_run
    stamp = (cfg.out / "policy" / "summary.json").stat().st_mtime_ns
    run(cfg, progress=False)
    assert (cfg.out / "policy" / "summary.json").stat().st_mtime_ns == stamp
    assert len(_metrics(cfg.out)) == 8


@pytest.mark.slow
def test_killed_run_resumes_and_continues_the_same_loss_curve(reference_run, demo_data, tiny_overrides, tmp_path):
    import yaml

    ref_cfg, _ = reference_run
    out = tmp_path / "run"
    out.mkdir()
    for stage in ("vae_stage1", "vae_stage2"):  # the VAE stages are done: only the policy runs
        shutil.copytree(ref_cfg.out / stage, out / stage)
    cfg_file = tmp_path / "cfg.yaml"
    from ate_policy.config import dump_yaml

    dump_yaml(load_yaml(ATETrainConfig, "train_tiny", tiny_overrides(demo_data, out)), cfg_file)
    cmd = [sys.executable, "-m", "ate_policy.cli", "train", "--config", str(cfg_file)]
    proc = subprocess.Popen(cmd, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not (out / "policy" / "checkpoints" / "00000004").exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "policy" / "summary.json").exists()

    done = subprocess.run(cmd, env=_cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming from step" in done.stdout
    summary = json.loads((out / "policy" / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["steps_this_run"] < 8
    rows = _metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 9))  # every step once, no gap
    # Same data order, RNG and optimizer state: the interrupted run's curve is the uninterrupted one's.
    ref = _metrics(ref_cfg.out)
    for a, b in zip(rows, ref):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
        assert a["guidance_norm"] == pytest.approx(b["guidance_norm"], rel=1e-5)
    assert yaml.safe_load((out / "train_config.yaml").read_text())["steps"] == 8


@pytest.mark.slow
def test_two_processes_with_accelerate_read_different_data_and_write_one_checkpoint(
        reference_run, demo_data, tiny_overrides, tmp_path):
    ref_cfg, _ = reference_run
    out = tmp_path / "run"
    out.mkdir()
    for stage in ("vae_stage1", "vae_stage2"):
        shutil.copytree(ref_cfg.out / stage, out / stage)
    from ate_policy.config import dump_yaml

    cfg_file = tmp_path / "cfg.yaml"
    dump_yaml(load_yaml(ATETrainConfig, "train_tiny", tiny_overrides(
        demo_data, out, steps=2, save_every=2, record_sample_indices=True)), cfg_file)
    accelerate = Path(sys.executable).parent / "accelerate"
    # `--multi_gpu` selects Accelerate's torchrun launcher; without a GPU the processes join over gloo (MULTI_CPU).
    # (`--cpu` would start a single process.)
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "ate_policy.cli", "train", "--config", str(cfg_file)]
    done = subprocess.run(cmd, env=_cli_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "policy" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    ranks = [[set(map(int, ln.split())) for ln in (out / "policy" / f"sample_indices_rank{r}.txt")
              .read_text().splitlines()] for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 2
    for a, b in zip(*ranks):
        assert len(a) == len(b) == 2 and not a & b  # each step: two halves of one global batch of 4
    assert sorted(p.name for p in (out / "policy" / "checkpoints").iterdir()) == ["00000002", "last"]
    assert len(_metrics(out)) == 2  # one log writer: the main process


@pytest.mark.slow
def test_diffusion_policy_pipeline_reuses_stage1_and_loads_with_plain_lerobot(reference_run, demo_data,
                                                                              tiny_overrides, tmp_path):
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    ref_cfg, _ = reference_run
    over = tiny_overrides(demo_data, tmp_path / "run", steps=2, save_every=2,
                          stage1_dir=str(ref_cfg.out / "vae_stage1"), policy={"type": "diffusion"})
    cfg = load_yaml(ATETrainConfig, "train_tiny", over)
    folders = run(cfg, progress=False)
    assert not (cfg.out / "vae_stage1").exists()  # the given Stage 1 was used, not retrained
    vae_meta = json.loads((folders["vae_stage2"] / "vae_config.json").read_text())
    assert vae_meta["chunk_len"] == 8
    assert all(n["mode"] == "min_max" for n in vae_meta["normalization"].values())
    rows = _metrics(cfg.out)
    assert len(rows) == 2 and all("guidance_norm" in r for r in rows)
    final = Path(json.loads((cfg.out / "policy" / "summary.json").read_text())["final_checkpoint"])
    policy = DiffusionPolicy.from_pretrained(final)
    assert policy.config.horizon == 8
