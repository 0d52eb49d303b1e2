"""`ate_policy train` end to end on demo data: stages, skip/resume, checkpoints, logs, multi-process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
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


def _copy_with_action_mean_scaled(src: Path, dst: Path, factor: float) -> Path:
    """A copy of a LeRobot dataset whose meta/stats.json action mean is edited by hand (the data stay the same)."""
    shutil.copytree(src, dst)
    stats_file = dst / "meta" / "stats.json"
    stats = json.loads(stats_file.read_text())
    stats["action"]["mean"] = [m * factor for m in stats["action"]["mean"]]
    stats_file.write_text(json.dumps(stats))
    return dst


def test_guidance_contract_names_each_mismatch(demo_data):
    """The Stage-2 encoder must read the policy's chunks as it was trained: stats, mode, dims, padding, length."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    from ate_policy.policies.tiny import tiny_pi0_config
    from ate_policy.train import check_guidance_contract
    from ate_policy.vae.configuration_vae import InfoVAEConfig
    from ate_policy.vae.modeling_vae import InfoVAE

    root = demo_data["adaptation"]
    meta = LeRobotDatasetMetadata("local/demo_dual", root=root)
    # The stats as stored on disk, read independently of the trainer and of LeRobot.
    on_disk = json.loads((Path(root) / "meta" / "stats.json").read_text())["action"]

    def encoder(chunk=8, action_dim=32, mode="mean_std", dim=16, scale=1.0, name="local/demo_dual", floor=1e-3):
        vae = InfoVAE(InfoVAEConfig(action_dim=action_dim, width=16, n_heads=4, ffn_dim=32, n_layers=1), chunk)
        stats = {"mean": [m * scale for m in on_disk["mean"]], "std": on_disk["std"]} if mode == "mean_std" \
            else {"min": on_disk["min"], "max": on_disk["max"]}
        entry = {"mode": mode, "stats": stats, "action_dim": dim}
        if floor is not None:
            entry["std_floor"] = floor
        vae.meta = {"normalization": {name: entry}}
        return vae

    pcfg = tiny_pi0_config(chunk_size=8)
    where = Path("run/vae_stage2/final")
    check_guidance_contract(encoder(), where, pcfg, meta, "local/demo_dual")  # what ate_policy train writes
    check_guidance_contract(encoder(scale=1 + 1e-8), where, pcfg, meta, "local/demo_dual")  # float noise passes
    cases = [
        (encoder(scale=1.01), r"other 'mean' stats .* relative difference 9\.9e-03"),  # |a-b| / max(|a|, |b|)
        (encoder(scale=1.0 + 1e-5), r"other 'mean' stats"),
        (encoder(mode="min_max"), r"normalised min_max, the policy normalises them mean_std"),
        (encoder(dim=14), r"14-dim actions .* has 16"),
        (encoder(chunk=10), r"chunks of 10 steps, the policy's are 8"),
        (encoder(action_dim=24), r"padded to 24 dims, the policy pads them to 32"),
        (encoder(floor=None), r"std floor of 0 \(0 = trained before the floor existed\), the policy floors at 0.001"),
        (encoder(floor=1e-2), r"std floor of 0.01"),
    ]
    for vae, message in cases:
        with pytest.raises(UserError, match=message) as err:
            check_guidance_contract(vae, where, pcfg, meta, "local/demo_dual")
        assert "--fresh" in str(err.value) or "retrain" in str(err.value)
    # Diffusion Policy: chunk = horizon, min/max normalisation, unpadded actions (the encoder pads with zeros).
    from ate_policy.policies.tiny import tiny_diffusion_config

    dcfg = tiny_diffusion_config(horizon=8)
    check_guidance_contract(encoder(mode="min_max"), where, dcfg, meta, "local/demo_dual")
    with pytest.raises(UserError, match="normalised mean_std, the policy normalises them min_max"):
        check_guidance_contract(encoder(), where, dcfg, meta, "local/demo_dual")
    several = encoder()
    several.meta["normalization"]["local/other"] = several.meta["normalization"]["local/demo_dual"]
    del several.meta["normalization"]["local/demo_dual"]
    several.meta["normalization"]["local/third"] = several.meta["normalization"]["local/other"]
    with pytest.raises(UserError, match="trained on local/other, local/third, not on the policy's dataset"):
        check_guidance_contract(several, where, pcfg, meta, "local/demo_dual")


def test_the_readme_training_line_names_the_key_it_needs(demo_data, tmp_path):
    """The paper recipe's Stage-1 data is a placeholder: the error names the key, before anything runs."""
    cfg = load_yaml(ATETrainConfig, "train_paper_pi0", {"output_dir": str(tmp_path / "run"),
                                                        "dataset": {"root": str(demo_data["adaptation"])}})
    with pytest.raises(UserError, match=r"vae_stage1\.datasets\[0\]\.root: data/pretrain_mixture does not exist.*"
                                        r"--vae_stage1\.datasets=.*--stage1_dir"):
        run(cfg, progress=False)
    assert not (tmp_path / "run").exists()
    cfg = load_yaml(ATETrainConfig, "train_paper_pi0", {"output_dir": str(tmp_path / "run")})
    with pytest.raises(UserError, match=r"dataset\.root: data/realman_cook_bun does not exist: set --dataset\.root"):
        run(cfg, progress=False)


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
def test_a_complete_run_is_skipped(reference_run, caplog):
    """... also when asked for more steps (not extended: it says so)."""
    import dataclasses

    cfg, _ = reference_run
    stamp = (cfg.out / "policy" / "summary.json").stat().st_mtime_ns
    run(cfg, progress=False)
    with caplog.at_level("WARNING", logger="ate_policy.train"):
        run(dataclasses.replace(cfg, steps=cfg.steps + 4), progress=False)
    assert (cfg.out / "policy" / "summary.json").stat().st_mtime_ns == stamp
    assert len(_metrics(cfg.out)) == 8
    assert f"asks for {cfg.steps + 4} but is not extended" in caplog.text
    final = json.loads((cfg.out / "policy" / "summary.json").read_text())["final_checkpoint"]
    assert f"--policy.pretrained_path={final}" in caplog.text   # how to train further


_KILLED_AFTER_STEP_4 = """
import os, signal, sys

import ate_policy.train as train
from ate_policy.cli import main

save = train.save_policy_checkpoint


def save_then_die(policy_dir, step, *args, **kwargs):
    save(policy_dir, step, *args, **kwargs)
    if step == 4:
        os.kill(os.getpid(), signal.SIGKILL)


train.save_policy_checkpoint = save_then_die
sys.exit(main(["train", "--config", sys.argv[1]]))
"""


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
    # The first run is killed (SIGKILL, as by the OOM killer) right after it saved step 4: a test that polled for the
    # checkpoint and then killed raced the run, which (frames in memory) finished the 4 other steps first now and then.
    killed = subprocess.run([sys.executable, "-c", _KILLED_AFTER_STEP_4, str(cfg_file)], env=_cli_env(),
                            capture_output=True, text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert (out / "policy" / "checkpoints" / "00000004").is_dir()
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
    # Stage 1 is reused; Stage 2 is trained by the main process while the other waits for it outside any
    # collective (on_main_process_while_others_wait), then both fine-tune.
    shutil.copytree(ref_cfg.out / "vae_stage1", out / "vae_stage1")
    from ate_policy.config import dump_yaml

    cfg_file = tmp_path / "cfg.yaml"
    dump_yaml(load_yaml(ATETrainConfig, "train_tiny", tiny_overrides(
        demo_data, out, steps=2, save_every=2, record_sample_indices=True, process_group_timeout_s=120)), cfg_file)
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
    assert json.loads((out / "vae_stage2" / "final" / "summary.json").read_text())["steps"] == 6  # trained once
    assert not (out / ".sync").exists()


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


def test_a_tiny_pi0_of_another_size_trains_saves_its_size_and_loads_back_with_it(reference_run, demo_data,
                                                                               tiny_overrides, tmp_path):
    """policy.tiny_size shapes the tiny PI0; the checkpoint carries it, so the runtime's loader (which builds the
    network before reading the weights) rebuilds that shape, and a fine-tune from it must ask for the same."""
    import numpy as np

    from ate_description import contract
    from ate_policy.policies.tiny import TinySize
    from ate_policy.runtime.observation import Observation
    from ate_policy.runtime.policy import load_policy

    ref_cfg, _ = reference_run
    size = {"width": 32, "depth": 2, "vision_width": 16, "vision_depth": 2, "image": 24, "patch": 8}
    over = tiny_overrides(demo_data, tmp_path / "run", steps=2, save_every=2,
                          stage1_dir=str(ref_cfg.out / "vae_stage1"), policy={"tiny_size": size})
    cfg = load_yaml(ATETrainConfig, "train_tiny", over)
    run(cfg, progress=False)
    final = Path(json.loads((cfg.out / "policy" / "summary.json").read_text())["final_checkpoint"])
    pol = load_policy(final)
    model = pol.policy.model.paligemma_with_expert
    text, vision = model.paligemma.config.text_config, model.paligemma.config.vision_config
    assert (text.hidden_size, text.num_hidden_layers) == (32, 2)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size) == (16, 2, 24)
    assert model.gemma_expert.config.hidden_size == 32 and tuple(pol.policy.config.image_resolution) == (24, 24)
    obs = Observation.dummy((24, 32), task="t", state=np.zeros(contract.STATE_DIM))
    assert pol(obs).shape == (8, contract.ACTION_DIM)
    # fine-tuning from it with the default (smaller) size is refused before anything is built
    ft = load_yaml(ATETrainConfig, "train_tiny", tiny_overrides(
        demo_data, tmp_path / "ft", steps=2, stage1_dir=str(ref_cfg.out / "vae_stage1"),
        policy={"pretrained_path": str(final)}))
    with pytest.raises(UserError, match=r"policy.tiny_size .* differs from the shape of the tiny checkpoint"):
        run(ft, progress=False)
    # with its size it fine-tunes, reading the token ids its weights learned: the checkpoint's own tokenizer (here
    # with two ids swapped), not one built anew
    tok = final / "tokenizer" / "tokenizer.json"
    doc = json.loads(tok.read_text())
    vocab = doc["model"]["vocab"]
    a, b = list(vocab)[10:12]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    tok.write_text(json.dumps(doc))
    ft = load_yaml(ATETrainConfig, "train_tiny", tiny_overrides(
        demo_data, tmp_path / "ft2", steps=2, stage1_dir=str(ref_cfg.out / "vae_stage1"),
        policy={"pretrained_path": str(final), "tiny_size": size}))
    run(ft, progress=False)
    assert json.loads((ft.out / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"] == vocab
    with pytest.raises(ValueError, match="multiple of its patch"):
        TinySize(image=30, patch=8)
    with pytest.raises(ValueError, match="multiple of 16"):
        TinySize(width=40)


@pytest.mark.slow
def test_fine_tuning_refuses_a_dataset_whose_stats_changed_by_one_percent(reference_run, demo_data,
                                                                          tiny_overrides, tmp_path):
    """Stage 2 (and its fingerprint) on the original data; the policy on a copy whose action mean was edited by hand:
    the frozen encoder would read differently scaled chunks, so fine-tuning stops before it starts."""
    ref_cfg, _ = reference_run
    out = tmp_path / "run"
    out.mkdir()
    for stage in ("vae_stage1", "vae_stage2"):
        shutil.copytree(ref_cfg.out / stage, out / stage)
    changed = _copy_with_action_mean_scaled(demo_data["adaptation"], tmp_path / "changed", 1.01)
    over = tiny_overrides(demo_data, out, dataset={"root": str(changed)}, vae_stage2={
        "datasets": [{"repo_id": "local/demo_dual", "root": str(demo_data["adaptation"])}]})
    with pytest.raises(UserError, match=r"other 'mean' stats than the policy's dataset local/demo_dual has .*"
                                        r"relative difference 9\.9e-03.*--fresh"):  # 0.01 / 1.01
        run(load_yaml(ATETrainConfig, "train_tiny", over), progress=False)
    assert not (out / "policy" / "checkpoints").exists()


@pytest.mark.slow
def test_another_lambda_is_refused_raised_steps_reuse_and_fresh_retrains_only_the_policy(
        reference_run, demo_data, tiny_overrides, tmp_path):
    ref_cfg, _ = reference_run
    out = tmp_path / "run"
    shutil.copytree(ref_cfg.out, out)
    ref_summary = json.loads((out / "policy" / "summary.json").read_text())
    stamps = {p: p.stat().st_mtime_ns for p in (out / "vae_stage1" / "final" / "model.safetensors",
                                               out / "vae_stage2" / "final" / "model.safetensors",
                                               out / "policy" / "summary.json")}
    # More steps, other logging/saving/workers: what the stages compute is unchanged, the complete run is reused.
    run(load_yaml(ATETrainConfig, "train_tiny", tiny_overrides(demo_data, out, steps=12, log_every=3, save_every=5,
                                                               num_workers=1)), progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    written = (out / "train_config.yaml").read_text()
    # Another lambda into the same folder: refused up front, naming the change; nothing is rewritten.
    lam3 = load_yaml(ATETrainConfig, "train_tiny", tiny_overrides(demo_data, out, guidance={"lam": 3.0}, steps=2,
                                                                  save_every=2))
    with pytest.raises(UserError, match=r"the policy stage in .*guidance\.lam: 2\.0 -> 3\.0.*--fresh"):
        run(lam3, progress=False)
    assert (out / "train_config.yaml").read_text() == written
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # --fresh retrains what changed (the policy) and reuses the VAE stages, whose inputs did not change.
    run(lam3, progress=False, fresh=True)
    summary = json.loads((out / "policy" / "summary.json").read_text())
    assert summary["lambda"] == 3.0 and summary["steps"] == 2 and summary["steps_this_run"] == 2
    assert [p.stat().st_mtime_ns for p in list(stamps)[:2]] == list(stamps.values())[:2]
    recorded = json.loads((out / "policy" / "fingerprint.json").read_text())
    assert summary["fingerprint"] == recorded["fingerprint"] != ref_summary["fingerprint"]
    assert recorded["inputs"]["inputs"]["stage2"] == json.loads(
        (out / "vae_stage2" / "fingerprint.json").read_text())["fingerprint"]
    assert summary["versions"]["lerobot"] == "0.6.1" and summary["git_commit"]


_WAITING_WORKER = '''
import sys, time
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs

from ate_policy.train import on_main_process_while_others_wait

out, timeout_s, work_s = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
acc = Accelerator(cpu=True, kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=timeout_s))])
t0 = time.monotonic()
on_main_process_while_others_wait(acc, lambda: time.sleep(work_s), out, poll_s=0.2)
waited = time.monotonic() - t0
total = acc.reduce(torch.ones(1), "sum").item()  # the process group still works after the long stage
(out / f"rank{acc.process_index}.txt").write_text(f"{acc.num_processes} {waited} {total}")
acc.end_training()  # as train does: without it gloo aborted at exit now and then ('terminate called', -6)
'''


@pytest.mark.slow
def test_a_main_process_stage_longer_than_the_process_group_timeout_does_not_abort_the_run(tmp_path):
    """2 processes over gloo with a 10 s process-group timeout; the main process works 22 s (as Stage 1 does for
    hours under NCCL's 10 minutes): the other waits outside any collective and both finish with the group intact.
    (The 'terminate called' aborts this test saw now and then came from the exit without destroying the process
    group, not from the timeout.)"""
    script = tmp_path / "worker.py"
    script.write_text(_WAITING_WORKER)
    out = tmp_path / "out"
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(script), str(out), "10", "22"]
    done = subprocess.run(cmd, env=_cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for rank in (0, 1):
        world, waited, total = (out / f"rank{rank}.txt").read_text().split()
        assert int(world) == 2 and float(total) == 2.0
        assert float(waited) >= 22.0  # the non-main process really waited more than two timeouts' worth
    assert not (out / ".sync").exists()  # the markers are cleaned up
