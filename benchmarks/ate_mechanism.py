"""What does the ATE guidance term do? A controlled toy study (issue 3), side by side in one run.

Setting (everything small enough for a CPU, nothing from the robot):
* action chunks of L = 16 steps x A = 4 dims, smooth synthetic trajectories;
* **source** distribution (the "pre-training" embodiment): slow sinusoids of moderate amplitude,
  independent dims;
* **target** distribution (the "adaptation" embodiment/task): faster, smaller, offset sinusoids with a
  coupling between dims (dim 3 mirrors dim 0, as a bimanual symmetry would); only ``--target-chunks`` (64) of
  them are available for fine-tuning, a disjoint held-out set of 512 is used for evaluation only;
* the project's InfoVAE (``ate_policy.vae``): Stage 1 on source chunks + latent statistics
  (``compute_latent_stats``), Stage 2 with fresh weights on the few target chunks, reverse KL towards Stage 1;
* a flow-matching policy in LeRobot's convention (``x_t = t*eps + (1-t)*a``, ``u = eps - a``, PI0's time
  distribution Beta(1.5, 1), 10 Euler steps from t = 1 to 0 at sampling): an MLP velocity field over the
  whole chunk, unconditional, pre-trained on source chunks;
* fine-tuning on the few target chunks for the same steps with lambda in {0, +2, -2}, using the project's
  guidance (``ate_policy.guidance.latent_guidance`` with ``flow_factor``, clip 0.1, reduction "sample")
  through the same identity as ``PI0ATEPolicy``: the network regresses ``u + lambda*G``. Every lambda starts
  from the same pre-trained weights and sees the very same batches, ``t``, ``eps`` and ``xi`` (one generator
  per seed), so the guidance is the only difference.

Measured on generated chunks at equal fine-tuning steps (several checkpoints), mean over seeds:
* ``mmd_latent``: IMQ MMD^2 (``ate_policy.vae.losses.mmd_imq``) between the Stage-2 encoder means of
  generated and held-out target chunks (the space the guidance acts in, so not an independent judge);
* ``mmd_action``: the same in action space (flattened chunks), the judge that does not depend on the encoder;
* ``jerk``: RMS of the third finite difference along time (smoothness; the held-out target chunks' value is
  the reference);
* ``mean_err`` / ``std_ratio``: error of the per-element mean, ratio of the per-element std to the target's.
Noise floor: the MMD between two independent held-out target sets of the same size.

    .venv/bin/python benchmarks/ate_mechanism.py [--seeds 3] [--finetune-steps 600] [--lambdas 0,2,-2]

Prints a table and writes benchmarks/results/ate_mechanism.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from pathlib import Path

import torch
from torch import nn

from ate_policy.guidance import flow_factor, latent_guidance
from ate_policy.vae.configuration_vae import InfoVAEConfig
from ate_policy.vae.losses import imq_c_default, mmd_imq
from ate_policy.vae.modeling_vae import InfoVAE
from ate_policy.vae.train import compute_latent_stats

OUT = Path(__file__).parent / "results" / "ate_mechanism.json"
L, A = 16, 4
N_EVAL = 512


# --- data ---------------------------------------------------------------------------------------------------
def source_chunks(n: int, g: torch.Generator) -> torch.Tensor:
    """Slow sinusoids, amplitude 0.5-1, small offsets, independent phases per dim: (n, L, A)."""
    tau = torch.linspace(0, 1, L)[None, :, None]
    f = 0.3 + 0.5 * torch.rand(n, 1, 1, generator=g)
    amp = 0.5 + 0.5 * torch.rand(n, 1, A, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, A, generator=g)
    offset = 0.3 * torch.randn(n, 1, A, generator=g)
    return amp * torch.sin(2 * math.pi * f * tau + phase) + offset


def target_chunks(n: int, g: torch.Generator) -> torch.Tensor:
    """Faster (1-1.5 cycles per chunk), smaller, offset sinusoids; dim 3 mirrors dim 0: (n, L, A)."""
    tau = torch.linspace(0, 1, L)[None, :, None]
    f = 1.0 + 0.5 * torch.rand(n, 1, 1, generator=g)
    amp = 0.3 + 0.3 * torch.rand(n, 1, A, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, A, generator=g)
    offset = torch.tensor([0.8, -0.6, 0.4, -0.8]) + 0.15 * torch.randn(n, 1, A, generator=g)
    x = amp * torch.sin(2 * math.pi * f * tau + phase) + offset
    x[..., 3] = -x[..., 0] + 0.05 * torch.randn(n, L, generator=g)
    return x


class _Chunks:
    """The item layout of ``ate_policy.data.chunks.ChunkDataset`` (what ``compute_latent_stats`` reads)."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"actions": self.x[i], "pad_mask": torch.zeros(L, dtype=torch.bool)}


# --- the two InfoVAE stages (the project's model and loss) --------------------------------------------------
def vae_config() -> InfoVAEConfig:
    return InfoVAEConfig(action_dim=A, width=32, n_heads=4, ffn_dim=64, n_layers=2, dropout=0.0,
                         w_kl=1e-3, w_mmd=1.0)


def train_vae(chunks: torch.Tensor, steps: int, g: torch.Generator, prior=None,
              w_kl: float | None = None) -> InfoVAE:
    cfg = vae_config()
    if w_kl is not None:
        cfg.w_kl = w_kl
    model = InfoVAE(cfg, L)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(chunks), (min(64, len(chunks)),), generator=g)
        loss, _ = model.compute_loss(chunks[idx], prior=prior, kl_direction="reverse")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
    return model.eval()


# --- the policy ---------------------------------------------------------------------------------------------
class VelocityMLP(nn.Module):
    """v_theta(x_t, t) over the flattened chunk; sinusoidal time features."""

    def __init__(self, width: int = 256):
        super().__init__()
        self.freqs = nn.Parameter(torch.arange(1, 9, dtype=torch.float32) * math.pi, requires_grad=False)
        self.net = nn.Sequential(nn.Linear(L * A + 16, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, width), nn.SiLU(), nn.Linear(width, L * A))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tf = t[:, None] * self.freqs
        h = torch.cat([x.flatten(1), torch.sin(tf), torch.cos(tf)], dim=1)
        return self.net(h).view(-1, L, A)


def sample_time(n: int, g: torch.Generator) -> torch.Tensor:
    """PI0's time distribution: Beta(1.5, 1) * 0.999 + 0.001 (t = 1 is noise)."""
    u1 = torch._standard_gamma(torch.full((n,), 1.5), generator=g)
    u2 = torch._standard_gamma(torch.full((n,), 1.0), generator=g)
    return (u1 / (u1 + u2)) * 0.999 + 0.001


def flow_step(policy, opt, a, g, encoder=None, lam: float = 0.0, clip: float = 0.1) -> dict:
    """One training step; the target is u + lambda*G, as PI0ATEPolicy builds it (docs/architecture.md (ATE as implemented))."""
    eps = torch.randn(a.shape, generator=g)
    t = sample_time(len(a), g)
    xi = torch.randn(len(a), vae_config().width, generator=g)  # drawn for every lambda: identical streams
    tt = t[:, None, None]
    x_t = tt * eps + (1 - tt) * a
    u = eps - a
    stats = {}
    if encoder is not None and lam != 0.0:
        G, stats = latent_guidance(encoder, x_t, a, flow_factor(t), clip=clip, reduction="sample", xi=xi)
        u = u + lam * G
    loss = (policy(x_t, t) - u).pow(2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"loss": loss.item(), **stats}


@torch.no_grad()
def generate(policy, n: int, g: torch.Generator, steps: int = 10) -> torch.Tensor:
    """Euler from t = 1 (noise) to t = 0, dt = -1/steps, as PI0's sample_actions."""
    x = torch.randn(n, L, A, generator=g)
    dt = -1.0 / steps
    t = 1.0
    for _ in range(steps):
        x = x + dt * policy(x, torch.full((n,), t))
        t += dt
    return x


# --- metrics ------------------------------------------------------------------------------------------------
def jerk(x: torch.Tensor) -> float:
    return x.diff(n=3, dim=1).pow(2).mean().sqrt().item()


@torch.no_grad()
def metrics(gen: torch.Tensor, ref: torch.Tensor, encoder: InfoVAE) -> dict:
    mu_g, _ = encoder.encode(gen)
    mu_r, _ = encoder.encode(ref)
    return {
        "mmd_latent": mmd_imq(mu_g, mu_r, imq_c_default(mu_g.shape[1])).item(),
        "mmd_action": mmd_imq(gen.flatten(1), ref.flatten(1), imq_c_default(L * A)).item(),
        "jerk": jerk(gen),
        "mean_err": (gen.mean(0) - ref.mean(0)).abs().mean().item(),
        "std_ratio": (gen.std(0).mean() / ref.std(0).mean()).item(),
    }


# --- one seed -----------------------------------------------------------------------------------------------
def run_seed(seed: int, a) -> dict:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    src = source_chunks(4096, g)
    tgt_train = target_chunks(a.target_chunks, g)
    tgt_eval = target_chunks(N_EVAL, g)
    tgt_eval2 = target_chunks(N_EVAL, g)

    t0 = time.perf_counter()
    vae1 = train_vae(src, a.vae_steps, g)
    mu_phi, sigma_phi = compute_latent_stats(vae1, _Chunks(src))
    vae2 = train_vae(tgt_train, a.vae_steps, g, prior=(mu_phi, sigma_phi), w_kl=1e-2)
    t_vae = time.perf_counter() - t0

    t0 = time.perf_counter()
    base = VelocityMLP()
    opt = torch.optim.Adam(base.parameters(), lr=1e-3)
    for _ in range(a.pretrain_steps):
        flow_step(base, opt, src[torch.randint(0, len(src), (256,), generator=g)], g)
    t_pre = time.perf_counter() - t0

    floor = metrics(tgt_eval2, tgt_eval, vae2)
    eval_at = sorted({int(s) for s in a.eval_at.split(",") if int(s) <= a.finetune_steps}
                     | {a.finetune_steps})
    ft_seed = seed * 7919 + 1
    runs = {}
    t0 = time.perf_counter()
    for lam in a.lambdas:
        policy = copy.deepcopy(base)
        opt = torch.optim.Adam(policy.parameters(), lr=a.lr)
        fg = torch.Generator().manual_seed(ft_seed)  # identical batches / t / eps / xi for every lambda
        curve, gnorm, clamped = [], [], []
        for step in range(a.finetune_steps + 1):
            if step in eval_at:
                gen = generate(policy, N_EVAL, torch.Generator().manual_seed(ft_seed + 1))
                curve.append({"step": step, **metrics(gen, tgt_eval, vae2)})
            if step == a.finetune_steps:
                break
            idx = torch.randint(0, len(tgt_train), (a.batch,), generator=fg)
            s = flow_step(policy, opt, tgt_train[idx], fg, vae2, lam, a.clip)
            if "guidance_norm" in s:
                gnorm.append(s["guidance_norm"])
                clamped.append(s["guidance_clamped_frac"])
        runs[str(lam)] = {"curve": curve,
                          "guidance_norm_mean": sum(gnorm) / len(gnorm) if gnorm else 0.0,
                          "guidance_clamped_frac_mean": sum(clamped) / len(clamped) if clamped else 0.0}
    t_ft = time.perf_counter() - t0
    return {"seed": seed, "floor": floor, "target_jerk": jerk(tgt_eval), "source_jerk": jerk(src[:N_EVAL]),
            "runs": runs, "seconds": {"vae": t_vae, "pretrain": t_pre, "finetune": t_ft}}


def _mean_std(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, (sum((x - m) ** 2 for x in xs) / max(1, len(xs) - 1)) ** 0.5


def summarise(seeds: list[dict], lambdas: list[float]) -> dict:
    keys = ("mmd_latent", "mmd_action", "jerk", "mean_err", "std_ratio")
    steps = [c["step"] for c in seeds[0]["runs"][str(lambdas[0])]["curve"]]
    table = {}
    for lam in lambdas:
        rows = []
        for i, step in enumerate(steps):
            row = {"step": step}
            for k in keys:
                vals = [s["runs"][str(lam)]["curve"][i][k] for s in seeds]
                row[k], row[k + "_std"] = _mean_std(vals)
            if lam != 0.0 and 0.0 in lambdas:
                # Paired over seeds (same data, pre-trained policy and draws): how often lambda beats 0.
                for k in ("mmd_latent", "mmd_action"):
                    diffs = [s["runs"][str(lam)]["curve"][i][k] - s["runs"]["0.0"]["curve"][i][k]
                             for s in seeds]
                    row[k + "_minus_lambda0"] = _mean_std(diffs)[0]
                    row[k + "_seeds_better_than_lambda0"] = sum(d < 0 for d in diffs)
            rows.append(row)
        table[str(lam)] = rows
    floor = {k: _mean_std([s["floor"][k] for s in seeds])[0] for k in ("mmd_latent", "mmd_action", "jerk")}
    return {"by_lambda": table, "noise_floor": floor,
            "target_jerk": _mean_std([s["target_jerk"] for s in seeds])[0],
            "source_jerk": _mean_std([s["source_jerk"] for s in seeds])[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--lambdas", default="0,2,-2")
    p.add_argument("--target-chunks", type=int, default=64, help="target chunks available for fine-tuning")
    p.add_argument("--vae-steps", type=int, default=400)
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--finetune-steps", type=int, default=600)
    p.add_argument("--eval-at", default="0,50,150,300,600",
                   help="fine-tuning steps to evaluate at (and the last)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--clip", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: the least disturbed on a shared machine)")
    p.add_argument("--output", default=str(OUT))
    a = p.parse_args(argv)
    a.lambdas = [float(x) for x in a.lambdas.split(",")]
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    seeds = []
    for s in range(a.seeds):
        seeds.append(run_seed(s, a))
        print(f"seed {s} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    summary = summarise(seeds, a.lambdas)

    print(f"\nATE guidance, toy study: {a.seeds} seeds, {a.target_chunks} target chunks, batch {a.batch}, "
          f"clip {a.clip}; mean over seeds (paired: seeds where lambda beats 0)")
    print(f"{'lambda':>6} {'step':>5} {'MMD latent':>11} {'MMD action':>11} {'better':>7} {'jerk':>7} "
          f"{'|mean err|':>10} {'std ratio':>9}")
    for lam in a.lambdas:
        for r in summary["by_lambda"][str(lam)]:
            better = (f"{r['mmd_latent_seeds_better_than_lambda0']}/"
                      f"{r['mmd_action_seeds_better_than_lambda0']}"
                      if "mmd_action_seeds_better_than_lambda0" in r else "")
            print(f"{lam:>6g} {r['step']:>5} {r['mmd_latent']:>11.4f} {r['mmd_action']:>11.4f} {better:>7} "
                  f"{r['jerk']:>7.3f} {r['mean_err']:>10.3f} {r['std_ratio']:>9.2f}")
    f = summary["noise_floor"]
    print(f"noise floor (two held-out target sets): MMD latent {f['mmd_latent']:.4f}, "
          f"action {f['mmd_action']:.4f}; jerk of target chunks {summary['target_jerk']:.3f}, "
          f"of source chunks {summary['source_jerk']:.3f}")
    for lam in a.lambdas:
        if lam != 0.0:
            gn = [s["runs"][str(lam)]["guidance_norm_mean"] for s in seeds]
            cf = [s["runs"][str(lam)]["guidance_clamped_frac_mean"] for s in seeds]
            print(f"lambda {lam:g}: mean |G| per chunk {sum(gn) / len(gn):.3f}, clamped fraction "
                  f"{sum(cf) / len(cf):.3f}")
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "ate_mechanism", "machine": platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "args": {k: v for k, v in vars(a).items() if k != "output"},
              "chunk": [L, A], "n_eval": N_EVAL, "summary": summary, "per_seed": seeds,
              "seconds_total": time.perf_counter() - t0}
    out.write_text(json.dumps(result, indent=2))
    print(f"total {result['seconds_total']:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
