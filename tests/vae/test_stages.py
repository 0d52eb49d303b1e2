"""Stage 1, latent statistics, Stage 2 on real LeRobot datasets: alignment, resume after kill -9, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ate_policy.config import load_yaml
from ate_policy.data.chunks import ChunkDataset
from ate_description.errors import UserError
from ate_policy.vae.configuration_vae import VAETrainConfig
from ate_policy.vae.modeling_vae import InfoVAE
from ate_policy.vae.report import latent_report
from ate_policy.vae.train import (latest_checkpoint, load_latent_stats, load_sources,
                                  read_summary, train_stage)

TINY_MODEL = {"width": 16, "n_heads": 4, "ffn_dim": 32, "n_layers": 1, "dropout": 0.0}


def stage1_cfg(demo_data, out: Path, **kw) -> VAETrainConfig:
    over = {"output_dir": str(out), "device": "cpu", "steps": 60, "save_every": 1000, "log_every": 10,
            "datasets": [{"repo_id": "local/demo_pretrain", "root": str(demo_data["pretrain"])}],
            "chunk_len": 12, "stride": 2, "model": dict(TINY_MODEL), "optim": {"batch_size": 16, "lr": 2e-3}}
    over.update(kw)
    return load_yaml(VAETrainConfig, "vae_tiny_pretrain", over)


def stage2_cfg(demo_data, out: Path, stage1: Path, **kw) -> VAETrainConfig:
    over = {"output_dir": str(out), "device": "cpu", "steps": 80, "save_every": 1000, "log_every": 10,
            "stage1_dir": str(stage1), "val_fraction": 0.25,
            "datasets": [{"repo_id": "local/demo_dual", "root": str(demo_data["adaptation"])}],
            "chunk_len": 8, "stride": 1, "model": dict(TINY_MODEL), "optim": {"batch_size": 16, "lr": 2e-3}}
    for k, v in kw.items():
        if isinstance(v, dict):
            over[k] = {**over.get(k, {}), **v}
        else:
            over[k] = v
    return load_yaml(VAETrainConfig, "vae_tiny_adapt", over)


@pytest.fixture(scope="module")
def stage1(demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    train_stage(stage1_cfg(demo_data, out), progress=False)
    return out


def test_stage1_writes_model_and_latent_statistics(stage1, demo_data):
    cfg = stage1_cfg(demo_data, stage1)
    summary = read_summary(stage1 / "final")
    assert summary["steps"] == 60 and summary["stage"] == "pretrain"
    mu, sigma = load_latent_stats(stage1)
    assert mu.shape == sigma.shape == (16,) and (sigma > 0).all()
    # The statistics are the dataset means of the per-chunk encoder means and stds (stride-1 windows).
    model = InfoVAE.from_pretrained(stage1 / "final")
    train_eps = {(s.name, e.episode_index) for s in load_sources(cfg) for e in s.episodes} - {
        tuple(k) for k in model.meta["val_episodes"]}
    ds = ChunkDataset(load_sources(cfg), 12, 32, 1, train_eps)
    model.eval()
    with torch.no_grad():
        m, lv = model.encode(torch.stack([ds[i]["actions"] for i in range(len(ds))]))
    assert torch.allclose(mu, m.mean(0), atol=1e-5)
    assert torch.allclose(sigma, (0.5 * lv).exp().mean(0), atol=1e-5)
    assert model.meta["normalization"]["local/demo_pretrain"]["action_dim"] == 7


def test_a_complete_stage_is_skipped(stage1, demo_data):
    before = (stage1 / "final" / "model.safetensors").stat().st_mtime_ns
    train_stage(stage1_cfg(demo_data, stage1), progress=False)
    assert (stage1 / "final" / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.slow
def test_reverse_kl_pulls_adaptation_latents_towards_stage1(stage1, demo_data, tmp_path):
    """Same Stage-2 run with the alignment term on vs off, measured on held-out episodes by the report."""
    on = train_stage(stage2_cfg(demo_data, tmp_path / "on", stage1, model={"w_kl": 0.5}), progress=False).parent
    off = train_stage(stage2_cfg(demo_data, tmp_path / "off", stage1, model={"w_kl": 0.0}), progress=False).parent
    r_on = latent_report(stage1, on, tmp_path / "r_on")
    r_off = latent_report(stage1, off, tmp_path / "r_off")
    assert r_on["n_adapt"] > 0 and Path(r_on["plot"]).stat().st_size > 1000
    # Encoder means sit clearly closer to mu_phi, and the sampled latents the guidance uses follow.
    assert r_on["mahalanobis_adapt_mean_latent"] < 0.8 * r_off["mahalanobis_adapt_mean_latent"], (r_on, r_off)
    assert r_on["mahalanobis_adapt"] < r_off["mahalanobis_adapt"], (r_on, r_off)
    assert json.loads((tmp_path / "r_on" / "report.json").read_text())["mahalanobis_adapt"] == r_on["mahalanobis_adapt"]


def test_forward_kl_option_trains(stage1, demo_data, tmp_path):
    fin = train_stage(stage2_cfg(demo_data, tmp_path / "fwd", stage1, kl_direction="forward", steps=5), progress=False)
    assert InfoVAE.from_pretrained(fin).meta["kl_direction"] == "forward"


def test_stage2_errors_name_the_fix(stage1, demo_data, tmp_path):
    with pytest.raises(UserError, match="stage1_dir"):
        train_stage(stage2_cfg(demo_data, tmp_path / "a", stage1, stage1_dir=None))
    with pytest.raises(UserError, match="vae pretrain"):
        train_stage(stage2_cfg(demo_data, tmp_path / "b", tmp_path / "no_stage1"))
    with pytest.raises(UserError, match="same width"):
        train_stage(stage2_cfg(demo_data, tmp_path / "c", stage1, model={"width": 32}))


@pytest.mark.slow
def test_resume_after_kill_continues_step_count_and_loss_curve(demo_data, tmp_path):
    """kill -9 a training process after its first checkpoint; the re-run resumes and matches an uninterrupted run."""
    ref = stage1_cfg(demo_data, tmp_path / "ref", steps=40, save_every=10)
    train_stage(ref, progress=False)
    ref_hist = torch.load(latest_checkpoint(ref.out) / "training_state.pt", weights_only=False)["history"]

    out = tmp_path / "killed"
    args = [sys.executable, "-m", "ate_policy.cli", "vae", "pretrain", "--config", "vae_tiny_pretrain",
            f"--output_dir={out}", "--device=cpu", "--steps=40", "--save_every=10", "--log_every=10",
            "--chunk_len=12", "--stride=2", f"--datasets=[{{repo_id: local/demo_pretrain, root: {demo_data['pretrain']}}}]",
            *[f"--model.{k}={v}" for k, v in TINY_MODEL.items()], "--optim.batch_size=16", "--optim.lr=2e-3"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while latest_checkpoint(out) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = latest_checkpoint(out)
    assert first is not None and not (out / "final" / "summary.json").exists()
    resumed_from = torch.load(first / "training_state.pt", weights_only=False)["step"]
    assert 10 <= resumed_from < 40

    train_stage(stage1_cfg(demo_data, out, steps=40, save_every=10), progress=False)
    hist = torch.load(latest_checkpoint(out) / "training_state.pt", weights_only=False)["history"]
    assert [h["step"] for h in hist] == list(range(1, 41))
    for a, b in zip(hist, ref_hist):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6), (a, b)
    assert read_summary(out / "final")["steps"] == 40


def _copy_with_action_mean_scaled(src: Path, dst: Path, factor: float) -> Path:
    """A copy of a LeRobot dataset whose meta/stats.json action mean is edited by hand (the data stay the same)."""
    import shutil

    shutil.copytree(src, dst)
    stats_file = dst / "meta" / "stats.json"
    stats = json.loads(stats_file.read_text())
    stats["action"]["mean"] = [m * factor for m in stats["action"]["mean"]]
    stats_file.write_text(json.dumps(stats))
    return dst


def test_a_stage_made_by_another_config_or_data_is_refused_and_fresh_retrains_it(stage1, demo_data, tmp_path):
    import re
    import shutil

    out = tmp_path / "s1"
    shutil.copytree(stage1, out)  # a stage folder may move: the fingerprint holds no paths
    stamp = (out / "final" / "model.safetensors").stat().st_mtime_ns
    # Length, logging and device do not change what the stage computes: the complete stage is reused.
    train_stage(stage1_cfg(demo_data, out, steps=90, log_every=7, save_every=9), progress=False)
    assert (out / "final" / "model.safetensors").stat().st_mtime_ns == stamp
    # Another optimiser setting or model weight: refused, naming what changed and the way out.
    with pytest.raises(UserError, match=r"optim\.lr: 0\.002 -> 0\.003.*--fresh"):
        train_stage(stage1_cfg(demo_data, out, optim={"batch_size": 16, "lr": 3e-3}), progress=False)
    with pytest.raises(UserError, match=r"model\.w_kl"):
        train_stage(stage1_cfg(demo_data, out, model={**TINY_MODEL, "w_kl": 0.5}), progress=False)
    # The same dataset id whose stats were recomputed (edited here by 1 %): refused on the stats hash.
    changed = _copy_with_action_mean_scaled(demo_data["pretrain"], tmp_path / "changed", 1.01)
    changed_cfg = stage1_cfg(demo_data, out, steps=4,
                             datasets=[{"repo_id": "local/demo_pretrain", "root": str(changed)}])
    with pytest.raises(UserError, match=r"inputs\.datasets\[0\]\.stats_sha256"):
        train_stage(changed_cfg, progress=False)
    assert (out / "final" / "model.safetensors").stat().st_mtime_ns == stamp
    # --fresh retrains it; the summary records what produced it.
    train_stage(changed_cfg, progress=False, fresh=True)
    summary = read_summary(out / "final")
    assert summary["steps"] == 4
    recorded = json.loads((out / "fingerprint.json").read_text())
    assert summary["fingerprint"] == recorded["fingerprint"]
    assert recorded["inputs"]["config"]["optim"]["lr"] == 2e-3 and "steps" not in recorded["inputs"]["config"]
    import torch as _torch

    assert summary["versions"]["torch"] == _torch.__version__.split("+")[0] or \
        summary["versions"]["torch"] == _torch.__version__
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", summary["git_commit"])
    assert summary["normalization"]["local/demo_pretrain"]["mode"] == "mean_std"
