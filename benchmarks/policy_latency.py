"""Per-chunk inference time of PI0 for three 224x224 views: LeRobot's default path vs the runtime's path.

Side by side in one run, on identical inputs, calls interleaved round by round (so load from other jobs on a
shared machine hits every variant alike):

* ``lerobot_default``: what LeRobot does out of the box: ``PI0Policy.from_pretrained`` (config as saved:
  float32, no compile) + its saved processors via ``make_pre_post_processors``; per chunk ``pre(batch)`` ->
  ``predict_action_chunk`` -> ``post``;
* ``runtime``: ``ate_policy.runtime.policy.load_policy`` with the deployment options of the task YAML
  (bf16 + torch.compile verified against eager; on a CPU these fall back to float32 eager), from an
  Observation (uint8 frames) to absolute targets;
* ``runtime_compiled`` (CPU only, ``apply_on_cpu``): the runtime path with torch.compile forced on the CPU;
* ``runtime_bf16`` / ``runtime_cuda_graphs`` (CUDA only): bf16 eager, and bf16 + compile in reduce-overhead
  mode.

The prefix KV cache needs no variant: LeRobot 0.6.1's ``PI0Pytorch.sample_actions`` already runs the prefix
(images + language) once with ``use_cache=True`` and each denoising step only runs the action expert against a
copy of that cache (see the JSON's ``prefix_cache`` note).

Model sizes: the tiny PI0 (``ate_policy.policies.tiny``) always; the real size (PaliGemma gemma_2b +
gemma_300m expert, random weights: the timing does not depend on them) only when CUDA is available, otherwise
skipped and said so in the JSON. Usage: ``python benchmarks/policy_latency.py [--rounds 30] [--no-compile]``;
writes ``benchmarks/results/policy_latency.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ate_description import contract
from ate_policy.runtime import DeviceOptions, Observation
from ate_policy.runtime.policy import load_policy
from ate_policy.runtime.tiny_checkpoint import write_tiny_checkpoint

OUT = Path(__file__).parent / "results" / "policy_latency.json"
HW = (224, 224)
TASK = "cook the bun: put the bun in the steamer and close the lid"
PREFIX_NOTE = ("LeRobot 0.6.1 PI0Pytorch.sample_actions computes the prefix (3 image embeddings + language) "
               "once with use_cache=True and runs num_inference_steps denoising steps of the action expert "
               "only, each against clone_past_key_values(cache): the cached prefix is already LeRobot's "
               "default, so there is no separate variant; the per-step clone copies the cache (cheap next "
               "to the expert's matmuls).")


def observation(seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    o = Observation.dummy(HW, task=TASK, state=rng.normal(0, 0.1, contract.STATE_DIM))
    for cam in contract.CAMERA_NAMES:
        o.images[cam] = rng.integers(0, 256, (*HW, 3), dtype=np.uint8)
    return o


def lerobot_default(model_dir: Path, tiny: bool, device: str):
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy

    from ate_policy.policies.tiny import tiny_pi0_patches

    cfg = PreTrainedConfig.from_pretrained(model_dir)
    cfg.device = device
    ctx = tiny_pi0_patches() if tiny else contextlib.nullcontext()
    with ctx, contextlib.redirect_stdout(None):
        policy = PI0Policy.from_pretrained(model_dir, config=cfg)
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(model_dir),
                                         preprocessor_overrides={"device_processor": {"device": device}})
    obs = observation()
    batch = {contract.STATE_KEY: torch.tensor(obs.state), "task": TASK,
             **{f"observation.images.{c}": torch.tensor(obs.images[c]).permute(2, 0, 1).float() / 255
                for c in contract.CAMERA_NAMES}}

    def call():
        return post(policy.predict_action_chunk(pre(dict(batch))))
    return call


def runtime_path(model_dir: Path, opts: DeviceOptions):
    pol = load_policy(model_dir, opts, instruction=TASK)
    obs = observation()
    return (lambda: pol(obs)), pol.info


def real_size_checkpoint(directory: Path) -> Path:
    """A real-size PI0 (random weights) saved with the tiny tokenizer (token ids are within its
    vocabulary)."""
    from lerobot.policies.pi0.configuration_pi0 import PI0Config
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy

    from ate_policy.policies.tiny import _features
    from ate_policy.train import PolicySpec, build_processors

    inputs, outputs = _features(contract.STATE_DIM, contract.ACTION_DIM, contract.CAMERA_NAMES, HW)
    cfg = PI0Config(chunk_size=50, n_action_steps=50, input_features=inputs, output_features=outputs,
                    push_to_hub=False, device="cpu")
    policy = PI0Policy(cfg)
    zeros, ones = np.zeros(16, np.float32), np.ones(16, np.float32)
    stats = {k: {"mean": zeros, "std": ones, "min": -ones, "max": ones}
             for k in (contract.STATE_KEY, contract.ACTION_KEY)}
    from ate_policy.policies.tiny import tiny_tokenizer

    spec = PolicySpec(type="pi0", tiny=False, chunk_size=50,
                      tokenizer=str(tiny_tokenizer(directory / "tokenizer")))
    pre, post = build_processors(spec, cfg, stats, directory)
    out = directory / "pretrained_model"
    for obj in (policy, pre, post):
        obj.save_pretrained(out)
    del policy
    return out


def measure(variants: dict, rounds: int, sync) -> dict:
    for fn in variants.values():   # warm-up: compile, allocator, caches
        for _ in range(3):
            fn()
        sync()
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t)
    return {k: {"p50_ms": float(np.median(v) * 1e3), "p90_ms": float(np.percentile(v, 90) * 1e3),
                "mean_ms": float(np.mean(v) * 1e3), "n": len(v)} for k, v in times.items()}


def run_size(name: str, model_dir: Path, tiny: bool, device: str, rounds: int, compile_: bool) -> dict:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    variants, info = {}, {}
    variants["lerobot_default"] = lerobot_default(model_dir, tiny, device)
    variants["runtime"], info["runtime"] = runtime_path(model_dir, DeviceOptions(device=device,
                                                                                 compile=compile_))
    if device == "cpu" and compile_:
        variants["runtime_compiled"], info["runtime_compiled"] = runtime_path(
            model_dir, DeviceOptions(device="cpu", dtype="float32", compile=True, apply_on_cpu=True))
    if device == "cuda":
        variants["runtime_bf16"], info["runtime_bf16"] = runtime_path(
            model_dir, DeviceOptions(device="cuda", dtype="bfloat16", compile=False))
        if compile_:
            variants["runtime_cuda_graphs"], info["runtime_cuda_graphs"] = runtime_path(
                model_dir, DeviceOptions(device="cuda", dtype="bfloat16", compile=True, cuda_graphs=True))
    res = measure(variants, rounds, sync)
    base = res["lerobot_default"]["p50_ms"]
    for v in res.values():
        v["speedup_vs_lerobot_default"] = base / v["p50_ms"]
    return {"size": name, "device": device, "variants": res, "options_applied": info}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile variants (minutes on a "
                                                              "CPU)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: on a shared 2-core machine two OpenMP threads stall on each "
                         "other)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.WARNING)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    res: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "torch": torch.__version__,
                             "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                             "torch_threads": torch.get_num_threads(),
                             "load_avg_at_start": os.getloadavg()},
                 "inputs": "three 224x224 uint8 views + 16-dim state + the cook_bun instruction, batch 1",
                 "prefix_cache": PREFIX_NOTE, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        tiny_dir = write_tiny_checkpoint(Path(tmp) / "tiny", chunk_size=50, image_hw=HW,
                                         num_inference_steps=10)
        t = time.perf_counter()
        res["sizes"].append(run_size("tiny", tiny_dir, True, device, a.rounds, not a.no_compile))
        res["sizes"][-1]["seconds_incl_compile"] = round(time.perf_counter() - t, 1)
        if device == "cuda":
            real_dir = real_size_checkpoint(Path(tmp) / "real")
            res["sizes"].append(run_size("real (gemma_2b + gemma_300m)", real_dir, False, device, a.rounds,
                                         not a.no_compile))
            res["goal_ms_per_chunk_real_size"] = 70.0
        else:
            res["skipped"] = {"real size": "no CUDA device on this machine: the real-size PI0 (3.5 B "
                                           "parameters) is measured only on a GPU; bf16 / CUDA graphs are "
                                           "GPU options too"}
    print(f"policy_latency on {res['machine']['device']} ({res['machine']['cpus']} CPUs, load "
          f"{res['machine']['load_avg_at_start'][0]:.1f}), chunk 50, 10 denoising steps, {a.rounds} rounds")
    print(f"{'size':<32}{'variant':<22}{'p50 ms':>9}{'p90 ms':>9}{'x default':>11}")
    for s in res["sizes"]:
        for k, v in s["variants"].items():
            print(f"{s['size']:<32}{k:<22}{v['p50_ms']:>9.2f}{v['p90_ms']:>9.2f}"
                  f"{v['speedup_vs_lerobot_default']:>11.2f}")
    for k, v in res.get("skipped", {}).items():
        print(f"skipped {k}: {v}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2, default=str))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
