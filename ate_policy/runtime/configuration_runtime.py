"""Configuration of the policy runtime: the 20 Hz loop, chunk merging, freshness, and the inference device.

These dataclasses are the ``runtime:`` and ``device:`` sections of a task YAML
(``ros2_ws/src/ate_bringup/config/tasks/<task>.yaml``, see ``configuration_task.py``). Every field that
decides whether the robot moves carries a one-line why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ate_description import contract

CLOCKS = ("realtime", "lockstep")
STRATEGIES = ("latest", "blend", "rtc")
FADE_SHAPES = ("linear", "exp")
RTC_SCHEDULES = ("zeros", "ones", "linear", "exp")
DTYPES = ("float32", "bfloat16")


@dataclass
class BlendConfig:
    # How a new chunk is merged with the actions still planned from the previous one:
    #   latest  the new chunk replaces the plan from the tick it arrives (a step at every chunk boundary),
    #   blend   cross-fade from the old plan to the new chunk over their overlap (smooth boundaries),
    #   rtc     LeRobot's real-time chunking (PI0, PI05, SmolVLA): the new chunk is generated to agree with
    # the
    #           old plan over the inference delay (inpainting), then replaces it.
    strategy: str = "blend"
    # blend: length of the cross-fade in ticks, from the first tick of the overlap; None = the whole overlap.
    fade_ticks: int | None = None
    # blend: weight curve of the new chunk across the fade, ending at 1: "linear" or "exp" (takes over
    # sooner).
    shape: str = "linear"
    # blend, shape "exp": steepness of the curve (larger = the new chunk takes over sooner).
    exp_rate: float = 3.0
    # rtc: how many actions of the old plan guide the new chunk (LeRobot's RTCConfig.execution_horizon).
    rtc_execution_horizon: int = 10
    # rtc: cap of the guidance weight (LeRobot's RTCConfig.max_guidance_weight).
    rtc_max_guidance_weight: float = 10.0
    # rtc: LeRobot's prefix attention schedule: zeros | ones | linear | exp.
    rtc_schedule: str = "linear"

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"blending.strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.shape not in FADE_SHAPES:
            raise ValueError(f"blending.shape must be one of {FADE_SHAPES}, got {self.shape!r}")
        if self.fade_ticks is not None and self.fade_ticks < 1:
            raise ValueError(f"blending.fade_ticks must be >= 1 or null, got {self.fade_ticks}")
        if not (self.exp_rate > 0 and math.isfinite(self.exp_rate)):
            raise ValueError(f"blending.exp_rate must be > 0, got {self.exp_rate}")
        if self.rtc_execution_horizon < 1:
            raise ValueError(f"blending.rtc_execution_horizon must be >= 1, got {self.rtc_execution_horizon}")
        if self.rtc_max_guidance_weight <= 0:
            raise ValueError("blending.rtc_max_guidance_weight must be > 0, got "
                             f"{self.rtc_max_guidance_weight}")
        if self.rtc_schedule not in RTC_SCHEDULES:
            raise ValueError(f"blending.rtc_schedule must be one of {RTC_SCHEDULES}, got "
                             f"{self.rtc_schedule!r}")


@dataclass
class RuntimeConfig:
    # Control rate; chunks are sequences of targets at this rate, so it must be the rate the policy was
    # trained at (the data contract's 20 Hz).
    rate_hz: float = float(contract.FPS)
    # "realtime": chunks are used as soon as inference finishes (wall clock); "lockstep": simulated time, a
    # chunk requested at tick k is used from tick k + lockstep_delay_ticks (the tick waits for it),
    # deterministic.
    clock: str = "realtime"
    # Lockstep only: the simulated inference latency in ticks (0 = synchronous: the requesting tick uses it).
    lockstep_delay_ticks: int = 3
    # Ask for the next chunk when fewer than this many planned actions remain after the current tick. No tick
    # is missed when it is >= the inference latency in ticks (lockstep_delay_ticks, or ceil(latency /
    # period)).
    queue_threshold_ticks: int = 8
    # Observations older than this (any camera, or the joint/gripper state) are never acted on: the runtime
    # holds the arms (no new targets), drops the plan made from older data and reports which stream was stale.
    max_age_ms: float = 100.0
    # Inference calls made (and timed) before the first tick, so the first real chunk pays no compile/cache
    # cost.
    warmup_runs: int = 2
    # Stop sending targets after this much episode time (s); null = no limit (the caller ends the episode).
    episode_time_limit_s: float | None = None
    # Lockstep: wall-clock seconds a tick waits for its chunk before the call is abandoned and the runtime holds
    # (inference_deadline; a hung policy must not hang the cell).
    lockstep_timeout_s: float = 300.0
    # Realtime: an inference call still running after this many wall seconds is abandoned (its result will be
    # discarded, the worker replaced) and the runtime holds with reason inference_deadline, an error that the
    # policy node escalates to the cell supervisor. A 4090 takes ~70 ms per PI0 chunk; the plan covers
    # queue_threshold_ticks (0.4 s) by then, so a call this late has already starved the arms.
    inference_deadline_s: float = 1.0
    # Rate limit of the targets that leave the runtime (the idea of LeRobot's max_relative_target): each arm joint
    # moves at most this fraction of the drivers' per-target cap (drivers.yaml safety.max_velocity_rad_s over one
    # 20 Hz period) from the previous target, or from the measured joints when no target went out within the
    # drivers' safety.watchdog_s (the reference the drivers judge a step against). A first chunk a few degrees off
    # the posture, or a jittery one, is then approached at the cap instead of being refused, which would hold the
    # whole cell; the drivers' check stays the last line. Every clamped tick is counted (clamped_ticks,
    # max_clamp_rad in stats and eval reports). null = off: the policy's targets go to the drivers as predicted.
    step_limit_fraction: float | None = 0.8
    # ... and no arm joint's target leads the measured joint by more than this fraction of the drivers' tracking
    # bound (drivers.yaml safety.tracking_bound_rad, 0.2 rad): a prediction a little ahead of where the arm is
    # waits for the arm instead of tripping the tracking guard, which would hold the whole cell (the scripted
    # demonstrations themselves lead by up to 0.13 rad at full speed). The step limit takes precedence. The
    # tracking guard's purpose, never letting targets walk far from an arm that stopped and jump on recovery, is
    # kept by construction; an arm that stopped still faults on the controller (collision detection) and the
    # drivers still hold on that. Counted in lead_limited_ticks. null = off.
    lead_limit_fraction: float | None = 0.9
    # Recent ticks kept for the latency / jitter percentiles in stats().
    stats_window: int = 2000
    blending: BlendConfig = field(default_factory=BlendConfig)

    def __post_init__(self):
        if not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise ValueError(f"runtime.rate_hz must be > 0, got {self.rate_hz}")
        if self.clock not in CLOCKS:
            raise ValueError(f"runtime.clock must be one of {CLOCKS}, got {self.clock!r}")
        if self.lockstep_delay_ticks < 0:
            raise ValueError(f"runtime.lockstep_delay_ticks must be >= 0, got {self.lockstep_delay_ticks}")
        if self.queue_threshold_ticks < 1:
            raise ValueError(f"runtime.queue_threshold_ticks must be >= 1, got {self.queue_threshold_ticks}")
        if not self.max_age_ms > 0:
            raise ValueError(f"runtime.max_age_ms must be > 0, got {self.max_age_ms}")
        if self.warmup_runs < 0:
            raise ValueError(f"runtime.warmup_runs must be >= 0, got {self.warmup_runs}")
        if self.episode_time_limit_s is not None and not self.episode_time_limit_s > 0:
            raise ValueError("runtime.episode_time_limit_s must be > 0 or null, got "
                             f"{self.episode_time_limit_s}")
        if not self.inference_deadline_s > 0:
            raise ValueError(f"runtime.inference_deadline_s must be > 0, got {self.inference_deadline_s}")
        if self.step_limit_fraction is not None and not 0 < self.step_limit_fraction <= 1:
            raise ValueError("runtime.step_limit_fraction must be in (0, 1] or null, got "
                             f"{self.step_limit_fraction}")
        if self.lead_limit_fraction is not None and not 0 < self.lead_limit_fraction <= 1:
            raise ValueError("runtime.lead_limit_fraction must be in (0, 1] or null, got "
                             f"{self.lead_limit_fraction}")
        if self.stats_window < 10:
            raise ValueError(f"runtime.stats_window must be >= 10, got {self.stats_window}")

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz


@dataclass
class DeviceOptions:
    # "auto" = CUDA when available, else CPU; or "cpu", "cuda", "cuda:1".
    device: str = "auto"
    # Weights / compute precision on CUDA. bfloat16 is how PI0 runs on a 4090 (LeRobot's PI0 `dtype`: the big
    # matmuls in bf16, norms and heads kept in float32); other policy types run under bf16 autocast.
    dtype: str = "bfloat16"
    # torch.compile the chunk prediction. Its output is checked against eager on the same inputs (same noise)
    # before it is used: LeRobot's compiled PI0 has produced NaNs for some users. A mismatch falls back to
    # eager.
    compile: bool = True
    # torch.compile mode: "default", "reduce-overhead" (CUDA graphs), "max-autotune",
    # "max-autotune-no-cudagraphs".
    compile_mode: str = "default"
    # CUDA graphs through torch.compile's "reduce-overhead" mode (overrides compile_mode; needs compile:
    # true).
    cuda_graphs: bool = False
    # On a CPU the options above are ignored (float32 eager, the clean fallback); true applies them anyway
    # (benchmarks: compiling the tiny PI0 takes minutes on 2 cores).
    apply_on_cpu: bool = False
    # Largest |compiled - eager| accepted, in normalised action units (1 = one std of the dataset's actions);
    # null = 1e-3 in float32, 5e-2 in bfloat16.
    verify_atol: float | None = None
    # torch CPU threads for inference; null = torch's default.
    num_threads: int | None = None

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"device.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.verify_atol is not None and not self.verify_atol > 0:
            raise ValueError(f"device.verify_atol must be > 0 or null, got {self.verify_atol}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"device.num_threads must be >= 1 or null, got {self.num_threads}")
