"""Inference device options: device choice, bf16, ``torch.compile`` checked against eager, CUDA graphs.

* **Device**: ``auto`` = CUDA when available, else the CPU. On a CPU the GPU options fall back cleanly to
  float32 eager (unless ``apply_on_cpu``), and each fallback is recorded in ``Acceleration.notes``.
* **torch.compile**, never trusted blindly: LeRobot's ``compile_model`` has produced NaNs for some users, so
  the compiled prediction is run on the same inputs as eager (same noise) and must be finite and within
  ``atol`` of it; otherwise the runtime uses eager and says why (``verify_compiled`` / ``choose_compiled``).
* **CUDA graphs**: through torch.compile's ``reduce-overhead`` mode (the simple way: no hand-made capture of
  PI0's dynamic KV cache), verified like any compiled function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ate_description.errors import UserError
from ate_policy.runtime.configuration_runtime import DeviceOptions

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"device.device {name!r} is not a torch device (auto, cpu, cuda, cuda:N)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device.device {name!r} asked for CUDA but torch sees no CUDA device here; use auto "
                        "or cpu")
    return dev


@dataclass
class Acceleration:
    """What is actually applied on this machine (the options after the CPU fallbacks)."""

    device: str
    dtype: str                    # float32 | bfloat16
    compile: bool                 # compile requested and applicable (verification may still reject it)
    compile_mode: str | None
    notes: list[str] = field(default_factory=list)
    compiled_in_use: bool = False
    verify: dict | None = None    # the compiled-vs-eager check: ok, max_abs_err, atol, detail

    @property
    def atol(self) -> float:
        return 5e-2 if self.dtype == "bfloat16" else 1e-3


def plan_acceleration(opts: DeviceOptions, device: torch.device) -> Acceleration:
    """The options that apply on ``device``, with a note for each fallback."""
    notes: list[str] = []
    dtype, compile_, mode = opts.dtype, opts.compile, opts.compile_mode
    if opts.cuda_graphs:
        if compile_:
            mode = "reduce-overhead"
        else:
            notes.append("cuda_graphs needs compile: true; ignored")
    if device.type != "cuda" and not opts.apply_on_cpu:
        if dtype != "float32":
            notes.append(f"dtype {dtype} -> float32 on {device.type} (GPU option; apply_on_cpu: false)")
            dtype = "float32"
        if compile_:
            notes.append(f"torch.compile skipped on {device.type} (GPU option; apply_on_cpu: false)")
            compile_ = False
    if device.type != "cuda" and mode == "reduce-overhead" and compile_:
        notes.append("reduce-overhead (CUDA graphs) -> default compile mode without CUDA")
        mode = "default"
    return Acceleration(str(device), dtype, compile_, mode if compile_ else None, notes)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    max_abs_err: float | None
    detail: str


def _clone(tree):
    return torch.utils._pytree.tree_map(lambda x: x.clone() if torch.is_tensor(x) else x, tree)


def verify_compiled(eager: Callable, compiled: Callable, make_args: Callable[[], tuple[tuple, dict]],
                    atol: float, runs: int = 2, seed: int | None = None) -> VerifyResult:
    """Run both on identical inputs (``make_args()``, the same noise) ``runs`` times (the first compiled call
    compiles, later ones replay): the compiled output must have eager's shape, be finite wherever eager is,
    and lie within ``atol`` of it. ``seed``: reseed torch's RNG before each call (policies that draw their own
    noise)."""
    worst = 0.0
    for i in range(runs):
        args, kwargs = make_args()
        if seed is not None:
            torch.manual_seed(seed)
        ref = eager(*_clone(args), **_clone(kwargs))
        if seed is not None:
            torch.manual_seed(seed)
        try:
            out = compiled(*args, **kwargs)
        except Exception as e:  # noqa: BLE001  (a compiler failure is a reason to fall back, not to stop)
            return VerifyResult(False, None, f"compiled call {i} raised {type(e).__name__}: {str(e)[:300]}")
        ref, out = torch.as_tensor(ref).float().cpu(), torch.as_tensor(out).float().cpu()
        if ref.shape != out.shape:
            return VerifyResult(False, None, f"compiled output shape {tuple(out.shape)} != eager "
                                             f"{tuple(ref.shape)}")
        bad = torch.isfinite(ref) & ~torch.isfinite(out)
        if bad.any():
            return VerifyResult(False, None, f"compiled output has {int(bad.sum())} NaN/inf values where "
                                             f"eager has none (call {i})")
        err = float((out - ref).abs().max()) if out.numel() else 0.0
        worst = max(worst, err)
        if not err <= atol:
            return VerifyResult(False, worst, f"compiled differs from eager by {err:.3g} > atol {atol:.3g} "
                                              f"(call {i})")
    return VerifyResult(True, worst, f"max |compiled - eager| = {worst:.3g} <= {atol:.3g} over {runs} calls")


def choose_compiled(eager: Callable, compiled: Callable, make_args: Callable[[], tuple[tuple, dict]],
                    atol: float, label: str = "policy", seed: int | None = None,
                    runs: int = 2) -> tuple[Callable, VerifyResult]:
    """``compiled`` when it passes :func:`verify_compiled`, else ``eager`` with a warning saying why."""
    res = verify_compiled(eager, compiled, make_args, atol, runs=runs, seed=seed)
    if res.ok:
        log.info("%s: torch.compile verified against eager (%s)", label, res.detail)
        return compiled, res
    log.warning("%s: torch.compile output rejected, using eager: %s", label, res.detail)
    return eager, res
