"""Stage-2 InfoVAE training throughput (chunks per second), tiny and paper sizes, side by side in one run.

Measures full training steps (forward, loss with the reverse-KL prior and MMD, backward, AdamW step) on
random normalised chunks of pi0's padded shape (L = 20, 32 dims), the Stage-2 workload of the real robot.
Paper size is width 512, 4 heads, FFN 1024, 9 layers, batch 64; tiny is the CPU recipe's (width 32, 2 layers,
batch 32).
Rows: tiny and paper on the CPU, always; paper (and tiny) on CUDA when a GPU is present, otherwise a row that
says it was skipped and why. Medians over the timed steps (after warm-up).

    .venv/bin/python benchmarks/vae_throughput.py [--steps N] [--warmup N]

Prints a table and writes benchmarks/results/vae_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from ate_policy.vae.configuration_vae import InfoVAEConfig
from ate_policy.vae.modeling_vae import InfoVAE

SIZES = {
    "tiny": (InfoVAEConfig(width=32, n_heads=4, ffn_dim=64, n_layers=2, dropout=0.0), 32),
    "paper": (InfoVAEConfig(), 64),
}


def measure(name: str, device: torch.device, chunk_len: int, steps: int, warmup: int) -> dict:
    cfg, batch = SIZES[name]
    torch.manual_seed(0)
    model = InfoVAE(cfg, chunk_len).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    x = torch.randn(batch, chunk_len, cfg.action_dim, device=device)
    dim_mask = torch.zeros(batch, cfg.action_dim, dtype=torch.bool, device=device)
    dim_mask[:, :16] = True
    prior = (torch.zeros(cfg.width, device=device), torch.ones(cfg.width, device=device))
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, _ = model.compute_loss(x, dim_mask=dim_mask, prior=prior)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return {"size": name, "batch": batch, "chunk_len": chunk_len, "params_M": round(sum(
        p.numel() for p in model.parameters()) / 1e6, 2), "step_ms_median": round(median * 1e3, 2),
        "chunks_per_s": round(batch / median, 1), "steps": steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--chunk-len", type=int, default=20)
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "vae_throughput.json"))
    a = p.parse_args()
    rows = [measure(n, torch.device("cpu"), a.chunk_len, a.steps, a.warmup) | {"device": "cpu"}
            for n in SIZES]
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
        rows += [measure(n, torch.device("cuda"), a.chunk_len, a.steps, a.warmup) | {"device": gpu}
                 for n in SIZES]
    else:
        rows.append({"size": "paper", "device": "cuda", "skipped": "no CUDA device on this machine"})
    print(f"Stage-2 InfoVAE training throughput ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} CPU threads, chunk {a.chunk_len} x 32, median of {a.steps} steps)")
    print(f"{'size':<6} {'device':<24} {'params':>8} {'batch':>5} {'step ms':>9} {'chunks/s':>9}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['size']:<6} {r['device']:<24} skipped: {r['skipped']}")
            continue
        print(f"{r['size']:<6} {r['device']:<24} {r['params_M']:>7}M {r['batch']:>5} "
              f"{r['step_ms_median']:>9} {r['chunks_per_s']:>9}")
    ratio = rows[0]["chunks_per_s"] / rows[1]["chunks_per_s"]
    print(f"CPU: tiny / paper throughput ratio {ratio:.1f}x")
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "vae_throughput", "machine": platform.machine(),
                               "cpus": os.cpu_count(), "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "load_avg_1min": os.getloadavg()[0],
                               "results": rows, "cpu_tiny_over_paper": round(ratio, 2)}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
