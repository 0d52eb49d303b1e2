"""Loading LeRobot checkpoints as the runtime's select_chunk: a tiny random PI0 saved as the trainer saves it,
real LeRobot classes and processors, device fallbacks and the compiled-vs-eager check."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from ate_runtime_testkit import PERIOD, UNLIMITED, obs_at

from ate_description import contract
from ate_description.errors import UserError
from ate_policy.runtime import (BlendConfig, DeviceOptions, Observation, PolicyRuntime, RTCRequest,
                                RuntimeConfig)
from ate_policy.runtime.acceleration import plan_acceleration, resolve_device, verify_compiled
from ate_policy.runtime.policy import _check_weights_loaded, load_policy, resolve_checkpoint
from ate_policy.runtime.tiny_checkpoint import write_tiny_checkpoint

CHUNK, HW = 8, (24, 32)
TASK = "cook the bun: put the bun in the steamer and close the lid"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A run folder as `ate_policy train` leaves it: <run>/tokenizer and <run>/pretrained_model (random tiny
    PI0)."""
    mean = np.linspace(-0.5, 0.5, contract.ACTION_DIM)
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "run", chunk_size=CHUNK, image_hw=HW,
                                 action_mean=mean, action_std=0.1)


@pytest.fixture(scope="module")
def policy(ckpt):
    return load_policy(ckpt, instruction=TASK)


def camera_obs(seed: int = 0, hw=HW) -> Observation:
    rng = np.random.default_rng(seed)
    o = Observation.dummy(hw, task=TASK, state=rng.normal(0, 0.1, contract.STATE_DIM))
    for cam in contract.CAMERA_NAMES:
        o.images[cam] = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    return o


def test_the_wrapper_is_lerobots_own_inference_path(ckpt, policy):
    """Same checkpoint through plain LeRobot (PI0Policy + its saved processors) with the same noise: same
    chunk."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy

    from ate_policy.policies.tiny import tiny_pi0_patches

    with tiny_pi0_patches():
        plain = PI0Policy.from_pretrained(ckpt)
    pre, post = make_pre_post_processors(PreTrainedConfig.from_pretrained(ckpt), pretrained_path=str(ckpt))
    obs = camera_obs(1)
    batch = {contract.STATE_KEY: torch.tensor(obs.state, dtype=torch.float32), "task": TASK,
             **{f"observation.images.{c}": torch.tensor(obs.images[c]).permute(2, 0, 1).float() / 255
                for c in contract.CAMERA_NAMES}}
    torch.manual_seed(7)
    ref = post(plain.predict_action_chunk(pre(batch)))[0].numpy()
    torch.manual_seed(7)
    ours = policy(obs)
    assert ours.shape == (CHUNK, contract.ACTION_DIM) and np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    # unnormalised with the checkpoint's statistics: mean + 0.1 * N(0, 1)-ish
    assert np.abs(ours.mean(0) - np.linspace(-0.5, 0.5, 16)).max() < 0.5
    info = policy.info
    assert info["policy_type"] == "pi0" and info["device"] == "cpu" and info["dtype"] == "float32"
    assert not info["compiled_in_use"] and any("compile skipped" in n for n in info["notes"])


def test_tiny_pi0_drives_the_runtime_with_finite_chunks_and_no_missed_tick(policy):
    cfg = RuntimeConfig(**UNLIMITED, clock="lockstep", lockstep_delay_ticks=2, queue_threshold_ticks=3, warmup_runs=1)
    rt = PolicyRuntime(policy, cfg, instruction=TASK)
    rt.warmup()                                          # a grey frame at the policy's image size
    rt.start()
    res = [rt.tick(obs_at(k * PERIOD, hw=(48, 64)), k * PERIOD) for k in range(30)]  # frames get resized
    assert [r.reason for r in res[:2]] == ["warming_up"] * 2
    ok = [r for r in res[2:] if r.reason == "ok"]
    assert len(ok) == 28 and all(r.action.shape == (16,) and np.all(np.isfinite(r.action)) for r in ok)
    s = rt.stats()
    assert s["missed_ticks"] == 0 and s["chunk_len"] == CHUNK and s["inference_ms"]["n"] == s["chunks"]
    rt.close()


def test_real_time_chunking_pulls_the_new_chunk_onto_the_old_plan(ckpt):
    pol = load_policy(ckpt, blending=BlendConfig("rtc", rtc_execution_horizon=6))
    assert pol.supports_rtc
    obs = camera_obs(2)
    leftover = np.tile(np.linspace(-0.5, 0.5, 16), (6, 1)) + 0.3   # a plan away from the policy's own guess
    torch.manual_seed(3)
    free = pol(obs)
    torch.manual_seed(3)
    guided = pol(obs, rtc=RTCRequest(leftover, inference_delay_ticks=3, execution_horizon_ticks=6))
    err_free = np.abs(free[:3] - leftover[:3]).mean()
    err_guided = np.abs(guided[:3] - leftover[:3]).mean()
    assert err_guided < 0.2 * err_free
    rt = PolicyRuntime(pol, RuntimeConfig(**UNLIMITED,
                                          clock="lockstep", lockstep_delay_ticks=2, queue_threshold_ticks=3,
                                          warmup_runs=2, blending=BlendConfig("rtc")))
    rt.warmup(camera_obs(3))
    rt.start()
    res = [rt.tick(obs_at(k * PERIOD, hw=HW), k * PERIOD) for k in range(16)]
    assert all(np.all(np.isfinite(r.action)) for r in res[2:]) and rt.stats()["missed_ticks"] == 0


def test_checkpoints_are_found_from_run_and_checkpoint_folders_and_never_downloaded(ckpt, tmp_path):
    run = ckpt.parent
    assert resolve_checkpoint(ckpt) == ckpt and resolve_checkpoint(run) == ckpt
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no LeRobot checkpoint"):
        resolve_checkpoint(tmp_path / "empty")
    with pytest.raises(UserError, match="never downloads"):
        resolve_checkpoint("lerobot/pi0_base_not_cached_here")
    with pytest.raises(UserError, match="not found"):
        resolve_checkpoint(tmp_path / "nowhere" / "pretrained_model")


def test_weights_that_did_not_load_are_refused(ckpt, policy):
    with torch.no_grad():
        next(policy.policy.parameters()).add_(1.0)
    try:
        with pytest.raises(UserError, match="weights are not those"):
            _check_weights_loaded(policy.policy, ckpt / "model.safetensors", max_keys=10_000)
    finally:
        with torch.no_grad():
            next(policy.policy.parameters()).sub_(1.0)


def test_a_checkpoint_that_breaks_the_data_contract_is_refused(ckpt, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["output_features"]["action"]["shape"] = [14]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="data contract"):
        load_policy(bad)


def test_gpu_options_fall_back_cleanly_on_a_cpu():
    cpu = torch.device("cpu")
    a = plan_acceleration(DeviceOptions(dtype="bfloat16", compile=True, cuda_graphs=True), cpu)
    assert (a.dtype, a.compile, a.compile_mode) == ("float32", False, None) and len(a.notes) == 2
    a = plan_acceleration(DeviceOptions(dtype="bfloat16", compile=True, cuda_graphs=True, apply_on_cpu=True),
                          cpu)
    assert (a.dtype, a.compile, a.compile_mode) == ("bfloat16", True, "default")   # no CUDA graphs on a CPU
    a = plan_acceleration(DeviceOptions(compile=True, cuda_graphs=True), torch.device("cuda"))
    assert a.compile_mode == "reduce-overhead" and a.dtype == "bfloat16" and not a.notes
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(UserError, match="no CUDA"):
            resolve_device("cuda")


def test_bf16_weights_on_cpu_when_asked_give_finite_chunks_close_to_float32(ckpt, policy):
    pol16 = load_policy(ckpt, DeviceOptions(dtype="bfloat16", compile=False, apply_on_cpu=True))
    assert pol16.info["dtype"] == "bfloat16"
    assert any(p.dtype == torch.bfloat16 for p in pol16.policy.parameters())   # LeRobot's PI0 bf16 path
    obs = camera_obs(4)
    torch.manual_seed(5)
    a16 = pol16(obs)
    torch.manual_seed(5)
    a32 = policy(obs)
    assert np.all(np.isfinite(a16)) and np.abs(a16 - a32).max() < 0.25   # 0.1 std: bf16 rounding only


def test_compiled_outputs_are_checked_against_eager():
    def eager(x, noise=None):
        return x * 2 + noise

    def make_args():
        return (torch.ones(3),), {"noise": torch.full((3,), 0.5)}

    assert verify_compiled(eager, eager, make_args, atol=1e-6).ok
    off = verify_compiled(eager, lambda x, noise=None: eager(x, noise) + 1e-2, make_args, atol=1e-3)
    assert not off.ok and "differs from eager by 0.01" in off.detail
    nan = verify_compiled(eager, lambda x, noise=None: eager(x, noise) * torch.nan, make_args, atol=1.0)
    assert not nan.ok and "NaN/inf" in nan.detail

    def broken(x, noise=None):
        raise RuntimeError("inductor failed")

    res = verify_compiled(eager, broken, make_args, atol=1.0)
    assert not res.ok and "inductor failed" in res.detail
    shape = verify_compiled(eager, lambda x, noise=None: eager(x, noise)[:2], make_args, atol=1.0)
    assert not shape.ok and "shape" in shape.detail


@pytest.mark.parametrize("compiled_is_good", [True, False])
def test_a_compiled_policy_that_disagrees_with_eager_falls_back_to_eager(ckpt, policy, monkeypatch, caplog,
                                                                          compiled_is_good):
    """torch.compile is stood in for by a function that is (not) eager: the policy must use it only if it
    matches."""
    def fake_compile(fn, mode=None):
        if compiled_is_good:
            return fn

        def wrong(batch, **kw):
            return fn(batch, **kw) * float("nan")
        return wrong

    monkeypatch.setattr(torch, "compile", fake_compile)
    with caplog.at_level(logging.WARNING):
        pol = load_policy(ckpt, DeviceOptions(compile=True, apply_on_cpu=True, dtype="float32"))
    assert pol.info["compiled_in_use"] is compiled_is_good
    assert pol.info["compile_verify"]["ok"] is compiled_is_good
    obs = camera_obs(6)
    torch.manual_seed(1)
    out = pol(obs)
    torch.manual_seed(1)
    np.testing.assert_allclose(out, policy(obs), atol=1e-5)        # eager's answer either way
    if not compiled_is_good:
        assert "torch.compile output rejected, using eager" in caplog.text
        assert any("eager in use" in n for n in pol.info["notes"])


def test_any_lerobot_policy_type_loads_a_diffusion_policy_with_an_observation_history(tmp_path):
    """A tiny Diffusion Policy (2 observation steps) saved as the trainer saves it: chunks of
    n_action_steps."""
    from ate_policy.config import dump_yaml
    from ate_policy.policies.diffusion_ate import DiffusionATEPolicy
    from ate_policy.policies.tiny import tiny_diffusion_config
    from ate_policy.train import ATETrainConfig, PolicySpec, build_processors

    spec = PolicySpec(type="diffusion", tiny=True, chunk_size=8)
    pcfg = tiny_diffusion_config(horizon=8, n_obs_steps=2, image_hw=HW)
    torch.manual_seed(0)
    diff = DiffusionATEPolicy(pcfg)
    vec = {"mean": np.zeros(16, np.float32), "std": np.ones(16, np.float32),
           "min": -np.ones(16, np.float32), "max": np.ones(16, np.float32)}
    img = {"mean": np.full((3, 1, 1), 0.5, np.float32), "std": np.full((3, 1, 1), 0.25, np.float32),
           "min": np.zeros((3, 1, 1), np.float32), "max": np.ones((3, 1, 1), np.float32)}
    stats = {contract.STATE_KEY: vec, contract.ACTION_KEY: vec, **{k: img for k in contract.IMAGE_KEYS}}
    pre, post = build_processors(spec, pcfg, stats, tmp_path)
    out = tmp_path / "pretrained_model"
    for obj in (diff, pre, post):
        obj.save_pretrained(out)
    dump_yaml(ATETrainConfig(policy=spec), out / "ate_train_config.yaml")

    pol = load_policy(out)
    assert pol.info["policy_type"] == "diffusion" and not pol.supports_rtc and pol.n_obs_steps == 2
    chunk = pol(camera_obs(8))
    assert chunk.shape == (pcfg.n_action_steps, 16) and np.all(np.isfinite(chunk))
    # min-max unnormalised into the stats' range
    assert np.all(chunk >= -1 - 1e-5) and np.all(chunk <= 1 + 1e-5)
    with pytest.raises(UserError, match="no real-time chunking"):
        load_policy(out, blending=BlendConfig("rtc"))


def test_with_real_time_chunking_the_guided_compiled_path_is_checked_too(ckpt, monkeypatch):
    """A compiled function that is right without RTC but wrong on the guided path must be rejected."""
    def fake_compile(fn, mode=None):
        def wrong_when_guided(batch, **kw):
            out = fn(batch, **kw)
            return out + 1.0 if "prev_chunk_left_over" in kw else out
        return wrong_when_guided

    monkeypatch.setattr(torch, "compile", fake_compile)
    pol = load_policy(ckpt, DeviceOptions(compile=True, apply_on_cpu=True, dtype="float32"),
                      blending=BlendConfig("rtc"))
    assert not pol.info["compiled_in_use"] and "differs from eager" in pol.info["compile_verify"]["detail"]


@pytest.mark.slow
def test_a_checkpoint_of_ate_policy_train_loads_from_its_run_folder_and_after_a_move(demo_data, tmp_path, caplog):
    """The real trainer (tiny PI0, two steps, no guidance) -> load_policy(run folder) -> runtime ticks; the
    checkpoint copied alone to another machine still loads (it carries its tokenizer); without any tokenizer a
    clear error says where to put one."""
    import shutil

    from ate_policy.config import load_yaml
    from ate_policy.train import ATETrainConfig, run

    over = {"output_dir": str(tmp_path / "run"), "guidance": {"enable": False},
            "dataset": {"repo_id": "local/demo_dual", "root": str(demo_data["adaptation"])},
            "policy": {"chunk_size": 8}, "steps": 2, "save_every": 2, "batch_size": 4, "num_workers": 0}
    cfg = load_yaml(ATETrainConfig, "train_tiny", over)
    run(cfg, progress=False)

    pol = load_policy(tmp_path / "run", instruction=TASK)
    assert pol.model_dir.name == "pretrained_model" and pol.image_hw == (24, 32)
    rt = PolicyRuntime(pol, RuntimeConfig(**UNLIMITED,
                                          clock="lockstep", lockstep_delay_ticks=1, queue_threshold_ticks=2,
                                          warmup_runs=1))
    rt.warmup()
    rt.start()
    res = [rt.tick(obs_at(k * PERIOD, hw=(24, 32)), k * PERIOD) for k in range(12)]
    assert all(r.reason == "ok" and np.all(np.isfinite(r.action)) for r in res[1:])
    rt.close()

    moved = tmp_path / "robot_pc" / "pretrained_model"
    shutil.copytree(pol.model_dir, moved)
    shutil.rmtree(tmp_path / "run")                       # the training run is not on the robot PC
    assert load_policy(moved)(camera_obs(9)).shape == (8, 16)
    shutil.move(str(moved / "tokenizer"), str(tmp_path / "tokenizer_elsewhere"))
    with pytest.raises(UserError, match="tokenizer folder .* does not exist"):
        load_policy(moved)
    shutil.copytree(tmp_path / "tokenizer_elsewhere", moved / "tokenizer")
    assert load_policy(moved)(camera_obs(9)).shape == (8, 16)
    # shipped (what the package does with its sim-trained policy): the pre-processor names ./tokenizer, and the
    # folder loads from anywhere, with the very weights, no warning about a missing tokenizer
    from ate_policy.runtime.policy import ship_checkpoint

    shipped = ship_checkpoint(moved, tmp_path / "package" / "sim_policy", provenance={"steps": 2})
    assert '"tokenizer_name": "./tokenizer"' in (shipped / "policy_preprocessor.json").read_text()
    assert json.loads((shipped / "provenance.json").read_text()) == {"steps": 2}
    shutil.rmtree(moved)
    caplog.clear()                                        # the moved copy's loads above warned, rightly
    with caplog.at_level(logging.WARNING, logger="ate_policy.runtime.policy"):
        chunk = load_policy(shipped)(camera_obs(9))
    assert chunk.shape == (8, 16) and "not found" not in caplog.text
