"""Training-step time of the same PI0 with ATE guidance on vs off, measured side by side in one run.

The guidance adds one forward + backward of the frozen Stage-2 encoder over [x_t; a] per step; the policy's
own forward/backward is unchanged. Configurations run here:
- ``tiny``: the tiny PI0 of the tests (width 64) with the tiny InfoVAE (width 32) -- CPU.
- ``tiny_pi0_paper_vae``: the tiny PI0 with the paper-size InfoVAE (width 512, 9 layers): an upper bound of
  the relative cost on CPU, where the encoder is far larger than the policy.
- ``real`` (only with CUDA): PI0 gemma_2b + gemma_300m in bf16 (random weights, AdamW over every parameter:
  ~50 GB, an 80 GB GPU), InfoVAE width 512, batch 6 per GPU, chunk 20: the paper's setting, where the goal is
  <= 5 % overhead. Skipped, and said so in the JSON and the table, without a GPU.

Steps alternate on/off so drift (thermal, other processes) hits both equally; medians are reported.

    python benchmarks/ate_overhead.py [--steps 20] [--batch 6] [--out benchmarks/results/ate_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from ate_description import contract
from ate_policy.guidance import GuidanceConfig
from ate_policy.vae.configuration_vae import InfoVAEConfig
from ate_policy.vae.modeling_vae import InfoVAE


def make_batch(b: int, chunk: int, image_hw: tuple[int, int], device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    batch = {
        contract.STATE_KEY: torch.randn(b, contract.STATE_DIM, generator=g),
        contract.ACTION_KEY: torch.randn(b, chunk, contract.ACTION_DIM, generator=g),
        "action_is_pad": torch.zeros(b, chunk, dtype=torch.bool),
        "observation.language.tokens": torch.randint(3, 300, (b, 16), generator=g),
        "observation.language.attention_mask": torch.ones(b, 16, dtype=torch.bool),
    }
    for key in contract.IMAGE_KEYS:
        batch[key] = torch.rand(b, 3, *image_hw, generator=g)
    return {k: v.to(device) for k, v in batch.items()}


def time_steps(policy, vae, batch, steps: int, device: str) -> dict:
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-5)
    on_cfg, off_cfg = GuidanceConfig(lam=2.0), GuidanceConfig(enable=False)
    times = {"on": [], "off": []}

    def step(mode):
        policy.attach_guidance(vae, on_cfg if mode == "on" else off_cfg)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, _ = policy.forward(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for mode in ("on", "off", "on", "off"):  # warm-up
        step(mode)
    for i in range(steps):
        for mode in (("on", "off") if i % 2 == 0 else ("off", "on")):
            times[mode].append(step(mode))
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    return {"step_s_guidance_on": on, "step_s_guidance_off": off, "ratio_on_off": on / off,
            "overhead_pct": 100 * (on / off - 1), "steps_each": steps}


def tiny_policy(chunk: int):
    from ate_policy.policies.pi0_ate import PI0ATEPolicy
    from ate_policy.policies.tiny import tiny_pi0_config, tiny_pi0_patches

    with tiny_pi0_patches():
        torch.manual_seed(0)
        return PI0ATEPolicy(tiny_pi0_config(chunk_size=chunk))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=6, help="per-device batch (the paper: 6)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "ate_overhead.json"))
    a = p.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    results: dict = {"benchmark": "ate_overhead", "machine": platform.processor() or platform.machine(),
                     "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch,
                     "load_avg_1min_before": os.getloadavg()[0], "configs": {}}
    chunk = 20
    policy = tiny_policy(chunk)
    batch = make_batch(a.batch, chunk, (48, 64), "cpu")
    for name, vcfg in (("tiny", InfoVAEConfig(width=32, n_heads=4, ffn_dim=64, n_layers=2, dropout=0.0)),
                       ("tiny_pi0_paper_vae", InfoVAEConfig())):
        torch.manual_seed(0)
        vae = InfoVAE(vcfg, chunk_len=chunk)
        r = time_steps(policy, vae, batch, a.steps, "cpu")
        r.update(device="cpu", policy_params=sum(x.numel() for x in policy.parameters()),
                 vae_params=sum(x.numel() for x in vae.parameters()))
        results["configs"][name] = r
    if torch.cuda.is_available():
        from ate_policy.policies.pi0_ate import PI0ATEPolicy
        from ate_policy.policies.tiny import tiny_pi0_config

        cfg = tiny_pi0_config(chunk_size=chunk, image_hw=(224, 224), paligemma_variant="gemma_2b",
                              action_expert_variant="gemma_300m", dtype="bfloat16", device="cuda",
                              image_resolution=(224, 224), tokenizer_max_length=48)
        policy = PI0ATEPolicy(cfg).to("cuda")
        vae = InfoVAE(InfoVAEConfig(), chunk_len=chunk).to("cuda")
        batch = make_batch(a.batch, chunk, (224, 224), "cuda")
        r = time_steps(policy, vae, batch, a.steps, "cuda")
        r.update(device=torch.cuda.get_device_name())
        results["configs"]["real"] = r
    else:
        results["configs"]["real"] = {"skipped": "no CUDA device on this machine: the gemma_2b + gemma_300m "
                                                 "bf16 training step needs a GPU with ~50 GB"}
    print(f"{'config':<22}{'off s/step':>12}{'on s/step':>12}{'ratio':>8}{'overhead':>10}")
    for name, r in results["configs"].items():
        if "skipped" in r:
            print(f"{name:<22}  skipped: {r['skipped']}")
            continue
        print(f"{name:<22}{r['step_s_guidance_off']:>12.4f}{r['step_s_guidance_on']:>12.4f}"
              f"{r['ratio_on_off']:>8.3f}{r['overhead_pct']:>9.1f}%")
    results["load_avg_1min_after"] = os.getloadavg()[0]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
