"""The 20 Hz policy runtime: asynchronous chunk inference behind a control loop that never acts on stale data.

The caller drives it, once per control tick (a ROS timer in realtime, each complete lockstep observation in
sim)::

    rt = PolicyRuntime(select_chunk, task.runtime, instruction=task.instruction)
    rt.warmup(first_obs)             # inference before the first tick (compile, caches), timed
    rt.start()
    while ...:
        res = rt.tick(obs, now_s)    # res.action: (16,) absolute targets, or None and res.reason says why
        if res.action is not None: send it (through the drivers' safety layer)
    rt.pause() / rt.resume() / rt.reset() / rt.stats() / rt.diagnostics() / rt.close()
    rt.hold(reason, detail)          # the cell supervisor held the arms: flush, hold until resume()

Each tick, in this order:

1. chunks that are ready are merged into the plan (``plan.py``): realtime = inference has finished; lockstep =
   the chunk requested at tick k is used from tick k + ``lockstep_delay_ticks`` (the tick waits for it on the
   wall clock), so a run does not depend on how fast this machine is;
2. the observation is checked (``observation.check_observation``): a stale, missing or malformed stream holds
   the arms (no target) and drops the plan and any chunk still being computed, since they were made for a
   motion the held arms no longer follow;
3. when fewer than ``queue_threshold_ticks`` targets remain after this tick and no request is outstanding, the
   inference worker (one thread) is asked for a chunk from this observation, stamped with this tick;
4. the target for this tick is taken from the plan; targets of earlier ticks are dropped unused;
5. the target is rate-limited (``step_limit_fraction`` of the drivers' per-target cap on every arm joint, from the
   previous target or the measured joints, as the drivers judge it) and its lead over the measured joints bounded
   (``lead_limit_fraction`` of the drivers' tracking bound), each clamp counted.

A chunk with NaN/inf is refused whole (counted); the plan then runs out and the ticks hold. A tick that holds
because the plan ran out while the episode runs is a *missed tick*; with a threshold >= the inference latency
in ticks there are none.

Escalation, never waiting forever: an inference call running past ``inference_deadline_s`` (realtime) or
``lockstep_timeout_s`` (lockstep) is abandoned (its result discarded, the worker thread replaced so the next call
does not queue behind it) and the runtime *holds* (state ``held``, reason ``inference_deadline``, diagnostics
error); so does :meth:`PolicyRuntime.hold` (the cell supervisor held the arms). A hold flushes the plan and every
chunk in flight and lasts until an explicit :meth:`PolicyRuntime.resume`. After any flush a call still running is
left behind on its own thread: the recovery request starts at once on a fresh worker.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from ate_description import contract
from ate_description.errors import UserError
from ate_description.limits import SafetyConfig, load_safety
from ate_policy.runtime.configuration_runtime import RuntimeConfig
from ate_policy.runtime.observation import Observation, check_observation
from ate_policy.runtime.plan import ActionPlan
from ate_policy.runtime.protocol import RTCRequest

log = logging.getLogger(__name__)

# the arm joints of the 16-dim action (the grippers are not rate-limited: the drivers have no gripper step cap)
_ARM_DIMS = np.concatenate([np.arange(contract.N_ARM_JOINTS) + contract.arm_slice(a).start for a in contract.ARMS])


# A clamp smaller than this is rounding (a recorded demonstration, float32, stepping at exactly the limit): not counted
_CLAMP_TOL_RAD = 1e-6


# Hold reasons (TickResult.reason; stale/missing/future/bad_observation carry ":<stream>")
OK = "ok"
IDLE = "idle"
PAUSED = "paused"
WARMING_UP = "warming_up"
STARVED = "starved"
REFUSED_NONFINITE = "refused_nonfinite"
INFERENCE_ERROR = "inference_error"
INFERENCE_DEADLINE = "inference_deadline"
HELD = "held"
TIME_LIMIT = "time_limit"
_MISSED = (STARVED, REFUSED_NONFINITE, INFERENCE_ERROR)


@dataclass(frozen=True)
class TickResult:
    tick: int                       # tick number in the episode (-1 before the episode's first tick)
    now_s: float
    action: np.ndarray | None       # (16,) absolute targets in the contract's order, or None: hold
    reason: str = OK                # "ok", or why the tick holds
    detail: str = ""
    queue_depth: int = 0            # targets planned after this tick
    chunk_tick: int | None = None   # tick of the observation this target was predicted from
    new_chunk: bool = False         # a chunk was merged at this tick
    # the same tick was asked again (same time): the earlier answer, not re-run
    repeated: bool = False

    @property
    def held(self) -> bool:
        return self.action is None


@dataclass
class _Pending:
    gen: int
    k0: int
    ready_k: int
    future: concurrent.futures.Future
    t_submit: float = 0.0     # wall clock (perf_counter) of the request


def _pct(values, q: float) -> float | None:
    return float(np.percentile(np.asarray(values, float), q)) if len(values) else None


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1e3, 3)


class PolicyRuntime:
    def __init__(self, select_chunk, config: RuntimeConfig | None = None, instruction: str = "",
                 streams: tuple[str, ...] = contract.CAPTURE_STREAMS, safety: SafetyConfig | None = None):
        """``safety``: the drivers' limits the step limiter keeps under (None = drivers.yaml's ``safety``)."""
        self.cfg = config or RuntimeConfig()
        self.select_chunk = select_chunk
        self.instruction = instruction
        self.streams = tuple(streams)
        self.period_s = self.cfg.period_s
        self.blending = self.cfg.blending
        if self.blending.strategy == "rtc" and not getattr(select_chunk, "supports_rtc", False):
            raise UserError("blending.strategy rtc needs a policy with LeRobot's real-time chunking (PI0, "
                            "PI05, SmolVLA); "
                            f"{getattr(select_chunk, 'policy_type', type(select_chunk).__name__)} has none: "
                            "use blend or latest")
        if self.cfg.rate_hz != contract.FPS:
            log.warning("runtime.rate_hz %.3g differs from the data contract's %d Hz: chunks are sequences "
                        "at the training rate", self.cfg.rate_hz, contract.FPS)
        if self.cfg.clock == "lockstep" and self.cfg.queue_threshold_ticks < self.cfg.lockstep_delay_ticks:
            log.warning("queue_threshold_ticks %d < lockstep_delay_ticks %d: %d ticks will be missed per "
                        "chunk",
                        self.cfg.queue_threshold_ticks, self.cfg.lockstep_delay_ticks,
                        self.cfg.lockstep_delay_ticks - self.cfg.queue_threshold_ticks)
        self._max_step_rad: float | None = None
        self._max_lead_rad: float | None = None
        if self.cfg.step_limit_fraction is not None or self.cfg.lead_limit_fraction is not None:
            safety = safety or load_safety()   # no drivers.yaml: a UserError, as in `ate_policy eval`
            self._watchdog_ticks = safety.watchdog_s / self.period_s
            if self.cfg.step_limit_fraction is not None:
                self._max_step_rad = self.cfg.step_limit_fraction * safety.max_step_rad
            if self.cfg.lead_limit_fraction is not None:
                self._max_lead_rad = self.cfg.lead_limit_fraction * safety.tracking_bound_rad
        self._lock = threading.RLock()
        self._pool = self._new_pool()
        self._hold: tuple[str, str] | None = None   # (reason, detail) while held
        self.workers_replaced = 0
        self._plan = ActionPlan(contract.ACTION_DIM)
        self._gen = 0
        self._pending: list[_Pending] = []
        self._state = IDLE
        self._episodes = 0
        self.warmup_latencies_s: list[float] = []
        self._latencies = collections.deque(maxlen=self.cfg.stats_window)
        self._tick_compute = collections.deque(maxlen=self.cfg.stats_window)
        self._lockstep_wait = collections.deque(maxlen=self.cfg.stats_window)
        self._intervals = collections.deque(maxlen=self.cfg.stats_window)
        self._chunk_len: int | None = None
        self._reset_episode()

    # --- lifecycle ------------------------------------------------------------------------------------------
    def _reset_episode(self) -> None:
        self._t0: float | None = None
        self._last_k: int | None = None
        self._last_now: float | None = None
        self._last_result: TickResult | None = None
        self._had_chunk = False     # since the last flush: a chunk was merged
        self._failure: tuple[str, str] | None = None  # last chunk that could not be used: (reason, detail)
        self.counters = collections.Counter()
        self.holds = collections.Counter()
        self._last_sent: tuple[int, np.ndarray] | None = None   # (tick, target) of the last target sent
        self._max_clamp = 0.0
        self._min_depth: int | None = None
        for d in (self._latencies, self._tick_compute, self._lockstep_wait, self._intervals):
            d.clear()

    @staticmethod
    def _new_pool() -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ate-inference")

    def _flush(self) -> None:
        """Forget the plan and every chunk in flight (their results will be ignored). A call still running is
        left on its thread and a fresh worker takes the next request, which must not queue behind a stale one."""
        if any(not p.future.done() for p in self._pending):
            self._replace_worker()
        self._plan.clear()
        self._gen += 1
        self._pending.clear()
        self._had_chunk = False
        self._failure = None

    def _replace_worker(self) -> None:
        old, self._pool = self._pool, self._new_pool()
        old.shutdown(wait=False, cancel_futures=True)   # a running call ends on its own; its result is ignored
        self.workers_replaced += 1
        self.counters["workers_replaced"] += 1

    def hold(self, reason: str = HELD, detail: str = "") -> None:
        """Hold the arms (the cell supervisor held them, or an escalation): flush the plan and every chunk in
        flight; every tick holds with ``reason`` until :meth:`resume`. Idempotent; a hold before start() also
        keeps the next start() from moving the arms until resume()."""
        with self._lock:
            if self._hold is None:
                log.error("runtime holds: %s%s", reason, f" ({detail})" if detail else "")
                self.counters["holds_escalated"] += 1
            self._hold = (reason, detail)
            self._flush()
            if self._state in ("running", PAUSED):
                self._state = HELD

    @property
    def held(self) -> tuple[str, str] | None:
        """(reason, detail) while the runtime holds, else None."""
        return self._hold

    def warmup(self, obs: Observation | None = None, runs: int | None = None) -> list[float]:
        """Run inference ``runs`` (default ``warmup_runs``) times on the worker thread before the first tick;
        returns the latencies (s). ``obs`` None = a grey observation at the policy's image size."""
        runs = self.cfg.warmup_runs if runs is None else runs
        if obs is None:
            obs = Observation.dummy(tuple(getattr(self.select_chunk, "image_hw", None) or (224, 224)))
        obs = self._with_task(obs)
        out, prev = [], None
        for i in range(runs):
            rtc = None
            if self.blending.strategy == "rtc" and prev is not None:  # exercise the guided path too
                rtc = RTCRequest(prev, 1, self.blending.rtc_execution_horizon)
            chunk, lat = self._pool.submit(self._timed_call, obs, rtc).result()
            chunk = np.asarray(chunk, float)
            if not np.all(np.isfinite(chunk)):
                log.warning("warm-up inference %d returned NaN/inf: such chunks will be refused", i)
            prev = chunk
            out.append(lat)
        with self._lock:
            self.warmup_latencies_s = out
            if prev is not None:
                self._chunk_len = len(prev)
        return out

    def start(self) -> None:
        """Begin (or continue after reset) an episode; its clock starts at the next tick. While held (see
        :meth:`hold`) the episode begins held: only :meth:`resume` lets targets out."""
        with self._lock:
            if self._state == IDLE:
                self._reset_episode()
                self._flush()
                self._episodes += 1
            self._state = HELD if self._hold is not None else "running"

    def pause(self) -> None:
        """Hold the arms; the plan is dropped (the next chunk starts from the observation at resume)."""
        with self._lock:
            if self._state == "running":
                self._state = PAUSED
                self._flush()

    def resume(self) -> None:
        """Continue after pause() or a hold (the operator's explicit resume: a hold never ends by itself)."""
        with self._lock:
            if self._hold is not None:
                log.warning("runtime resumed after a hold (%s)", self._hold[0])
                self._hold = None
                self._flush()
            if self._state in (PAUSED, HELD):
                self._state = "running"

    def reset(self, clear_hold: bool = False) -> None:
        """End the episode: hold, drop everything planned; counters restart at the next start(). A hold of the
        cell outlives the episode unless ``clear_hold`` (a new simulated world, ``ate_policy eval``)."""
        with self._lock:
            if clear_hold:
                self._hold = None
            self._state = IDLE
            self._flush()
            self._t0 = None
            self._last_k = None

    def close(self) -> None:
        with self._lock:
            self._state = IDLE
            self._flush()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def state(self) -> str:
        return self._state

    # --- inference ------------------------------------------------------------------------------------------
    def _with_task(self, obs: Observation) -> Observation:
        if obs.task is None:
            return Observation(obs.state, obs.images, obs.stamps_s, self.instruction)
        return obs

    def _timed_call(self, obs: Observation, rtc: RTCRequest | None, gen: int | None = None):
        if gen is not None and gen != self._gen:
            return None  # flushed before it started: do not spend the time
        t = time.perf_counter()
        chunk = self.select_chunk(obs) if rtc is None else self.select_chunk(obs, rtc=rtc)
        return chunk, time.perf_counter() - t

    def _delay_estimate_ticks(self) -> int:
        if self.cfg.clock == "lockstep":
            return self.cfg.lockstep_delay_ticks
        recent = list(self._latencies)[-5:] or self.warmup_latencies_s[-1:]
        return int(math.ceil(max(recent) / self.period_s)) if recent else 1

    def _request(self, k: int, obs: Observation) -> None:
        rtc = None
        if self.blending.strategy == "rtc":
            left = self._plan.window(k, self._chunk_len or 10**6)
            rtc = RTCRequest(left, self._delay_estimate_ticks(), self.blending.rtc_execution_horizon)
        fut = self._pool.submit(self._timed_call, self._with_task(obs), rtc, self._gen)
        ready = k + self.cfg.lockstep_delay_ticks if self.cfg.clock == "lockstep" else k
        self._pending.append(_Pending(self._gen, k, ready, fut, time.perf_counter()))
        self.counters["requests"] += 1

    def _collect(self, k: int) -> bool:
        """Merge the chunks available at tick k; True when one was merged."""
        merged = False
        keep = []
        for p in self._pending:
            if p.gen != self._gen:
                continue
            if self.cfg.clock == "lockstep":
                if p.ready_k > k:
                    keep.append(p)
                    continue
                t = time.perf_counter()
                try:
                    p.future.result(timeout=max(0.0, self.cfg.lockstep_timeout_s - (t - p.t_submit)))
                except concurrent.futures.TimeoutError:
                    self._deadline(p, self.cfg.lockstep_timeout_s)
                    return merged
                except Exception:  # noqa: BLE001  (the policy's own error: handled below)
                    pass
                self._lockstep_wait.append(time.perf_counter() - t)
            elif not p.future.done():
                if time.perf_counter() - p.t_submit > self.cfg.inference_deadline_s:
                    self._deadline(p, self.cfg.inference_deadline_s)
                    return merged
                keep.append(p)
                continue
            merged |= self._use(p, k)
        self._pending = keep
        return merged

    def _deadline(self, p: _Pending, limit_s: float) -> None:
        """An inference call past its deadline: abandon it (the worker is replaced, its result never used) and
        hold until an explicit resume."""
        self.counters["inference_deadlines"] += 1
        detail = (f"the chunk requested at tick {p.k0} is still computing after {limit_s:g} s: call abandoned, "
                  "worker replaced")
        self._hold = None   # hold() below logs it once
        self.hold(INFERENCE_DEADLINE, detail)

    def _use(self, p: _Pending, k: int) -> bool:
        try:
            out = p.future.result()
        except Exception as e:  # noqa: BLE001  (a policy error must not kill the control loop)
            self.counters["inference_errors"] += 1
            self._failure = (INFERENCE_ERROR, f"{type(e).__name__}: {e}")
            log.warning("inference failed for the chunk of tick %d: %s", p.k0, self._failure[1])
            return False
        if out is None:
            return False
        chunk, latency = out
        self._latencies.append(latency)
        chunk = np.asarray(chunk, dtype=float)
        if chunk.ndim != 2 or chunk.shape[1] != contract.ACTION_DIM or len(chunk) < 1:
            self.counters["inference_errors"] += 1
            self._failure = (INFERENCE_ERROR, f"chunk of shape {chunk.shape}, expected (L, "
                                              f"{contract.ACTION_DIM})")
            log.warning("policy returned a %s", self._failure[1])
            return False
        if not np.all(np.isfinite(chunk)):
            self.counters["chunks_refused_nonfinite"] += 1
            self._failure = (REFUSED_NONFINITE, f"chunk of tick {p.k0} holds NaN/inf")
            log.warning("refused the chunk of tick %d: NaN/inf in %d of %d values", p.k0,
                        int(np.sum(~np.isfinite(chunk))), chunk.size)
            return False
        self._chunk_len = len(chunk)
        self.counters["overtaken_actions"] += self._plan.merge(p.k0, chunk, k, self.blending)
        self.counters["chunks"] += 1
        self._had_chunk = True
        self._failure = None
        return True

    # --- the tick -------------------------------------------------------------------------------------------
    def tick(self, obs: Observation, now_s: float) -> TickResult:
        """The target for the tick at ``now_s`` (same clock as ``obs.stamps_s``), or None and why."""
        wall = time.perf_counter()
        with self._lock:
            res = self._tick(obs, now_s)
            if not res.repeated:
                self._last_result = res
                self.counters["ticks"] += 1
                if res.held:
                    self.holds[res.reason] += 1
                    if res.reason in _MISSED:
                        self.counters["missed_ticks"] += 1
                else:
                    self.counters["actions"] += 1
                self._tick_compute.append(time.perf_counter() - wall)
            return res

    def _held(self, k: int, now_s: float, reason: str, detail: str = "",
              new_chunk: bool = False) -> TickResult:
        return TickResult(k, now_s, None, reason, detail, self._plan.remaining_after(k), None, new_chunk)

    def _tick(self, obs: Observation, now_s: float) -> TickResult:
        if self._state == IDLE:
            return TickResult(-1, now_s, None, IDLE, "call start() to begin an episode")
        if self._t0 is None:
            self._t0 = now_s
        k = int(round((now_s - self._t0) / self.period_s))
        if self._last_k is not None:
            if k <= self._last_k and self._last_result is not None:
                self.counters["repeated_ticks"] += 1
                r = self._last_result
                return TickResult(r.tick, r.now_s, r.action, r.reason, r.detail, r.queue_depth, r.chunk_tick,
                                  False, True)
            if k > self._last_k + 1:
                self.counters["late_ticks"] += k - self._last_k - 1
            self._intervals.append(now_s - self._last_now)
        self._last_k, self._last_now = k, now_s

        new_chunk = self._collect(k)
        if self._hold is not None:
            return self._held(k, now_s, *self._hold)
        if self._state == PAUSED:
            return self._held(k, now_s, PAUSED)
        limit = self.cfg.episode_time_limit_s
        if limit is not None and now_s - self._t0 >= limit - 1e-9:
            if self._pending or len(self._plan):
                self._flush()
            return self._held(k, now_s, TIME_LIMIT, f"episode time limit {limit} s reached")
        check = check_observation(obs, now_s, self.cfg.max_age_ms / 1e3, self.streams)
        if not check.ok:
            self._flush()
            return self._held(k, now_s, check.reason, check.detail, new_chunk)

        if not self._pending and self._plan.remaining_after(k) < self.cfg.queue_threshold_ticks:
            self._request(k, obs)
            if self.cfg.clock == "lockstep" and self.cfg.lockstep_delay_ticks == 0:
                new_chunk |= self._collect(k)   # synchronous: this tick uses it

        action, src, dropped = self._plan.pop(k)
        self.counters["dropped_late"] += dropped
        depth = self._plan.remaining_after(k)
        self._min_depth = depth if self._min_depth is None else min(self._min_depth, depth)
        if action is None:
            if self._failure is not None:
                return self._held(k, now_s, *self._failure, new_chunk=new_chunk)
            if not self._had_chunk:
                return self._held(k, now_s, WARMING_UP, "waiting for the first chunk", new_chunk)
            return self._held(k, now_s, STARVED, "the plan ran out before the next chunk", new_chunk)
        if not np.all(np.isfinite(action)):  # merged chunks are finite; never send what is not
            self.counters["actions_refused_nonfinite"] += 1
            return self._held(k, now_s, REFUSED_NONFINITE, "target holds NaN/inf", new_chunk)
        action = self._limit_step(k, action, obs.state)
        return TickResult(k, now_s, action, OK, "", depth, src, new_chunk)

    def _limit_step(self, k: int, action: np.ndarray, state) -> np.ndarray:
        """Clamp every arm joint's step to ``_max_step_rad`` from the reference the drivers judge it against (the
        last target sent if it went out within their watchdog, else the measured joints), and its lead over the
        measured joint to ``_max_lead_rad``; the step bound wins where the two disagree."""
        if self._max_step_rad is None and self._max_lead_rad is None:
            return action
        measured = np.asarray(state, dtype=float).reshape(-1)[_ARM_DIMS]
        last = self._last_sent
        ref = last[1][_ARM_DIMS] if last is not None and k - last[0] <= self._watchdog_ticks else measured
        q = want = action[_ARM_DIMS]
        if self._max_step_rad is not None:
            q = np.clip(q, ref - self._max_step_rad, ref + self._max_step_rad)
            excess = float(np.max(np.abs(want - ref))) - self._max_step_rad
            if excess > _CLAMP_TOL_RAD:
                self.counters["clamped_ticks"] += 1
                self._max_clamp = max(self._max_clamp, excess)
        if self._max_lead_rad is not None:
            led = np.clip(q, measured - self._max_lead_rad, measured + self._max_lead_rad)
            if self._max_step_rad is not None:
                led = np.clip(led, ref - self._max_step_rad, ref + self._max_step_rad)
            if np.max(np.abs(led - q)) > _CLAMP_TOL_RAD:
                self.counters["lead_limited_ticks"] += 1
            q = led
        if not np.array_equal(q, want):
            action = action.copy()
            action[_ARM_DIMS] = q
        self._last_sent = (k, action.copy())
        return action

    # --- diagnostics ----------------------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counters and timing of the current episode (plus the warm-up), for /diagnostics and reports."""
        with self._lock:
            lat = list(self._latencies)
            comp = list(self._tick_compute)
            jitter = [abs(x - self.period_s) for x in self._intervals]
            last = self._last_result
            c = self.counters
            return {
                "state": self._state, "episodes": self._episodes, "clock": self.cfg.clock,
                "strategy": self.blending.strategy, "rate_hz": self.cfg.rate_hz,
                "queue_threshold_ticks": self.cfg.queue_threshold_ticks,
                "lockstep_delay_ticks": (self.cfg.lockstep_delay_ticks if self.cfg.clock == "lockstep"
                                         else None),
                "tick": -1 if self._last_k is None else self._last_k,
                "ticks": c["ticks"], "actions": c["actions"], "missed_ticks": c["missed_ticks"],
                "clamped_ticks": c["clamped_ticks"], "max_clamp_rad": round(self._max_clamp, 6),
                "step_limit_rad": None if self._max_step_rad is None else round(self._max_step_rad, 6),
                "lead_limited_ticks": c["lead_limited_ticks"],
                "lead_limit_rad": None if self._max_lead_rad is None else round(self._max_lead_rad, 6),
                "holds": dict(self.holds), "late_ticks": c["late_ticks"],
                    "repeated_ticks": c["repeated_ticks"],
                "requests": c["requests"], "chunks": c["chunks"], "chunk_len": self._chunk_len,
                "overtaken_actions": c["overtaken_actions"], "dropped_late_actions": c["dropped_late"],
                "chunks_refused_nonfinite": c["chunks_refused_nonfinite"],
                "actions_refused_nonfinite": c["actions_refused_nonfinite"],
                "inference_errors": c["inference_errors"], "inference_deadlines": c["inference_deadlines"],
                "workers_replaced": self.workers_replaced,
                "held": self._hold[0] if self._hold else "", "held_detail": self._hold[1] if self._hold else "",
                "last_reason": last.reason if last else None, "last_detail": last.detail if last else "",
                "queue_depth": last.queue_depth if last else 0, "queue_depth_min": self._min_depth,
                "inference_ms": {"last": _ms(lat[-1] if lat else None), "p50": _ms(_pct(lat, 50)),
                                 "p95": _ms(_pct(lat, 95)), "max": _ms(max(lat) if lat else None),
                                 "n": len(lat)},
                "warmup_ms": [_ms(x) for x in self.warmup_latencies_s],
                "tick_compute_ms": {"p50": _ms(_pct(comp, 50)), "p99": _ms(_pct(comp, 99)),
                                    "max": _ms(max(comp) if comp else None)},
                "tick_interval_jitter_ms": {"p50": _ms(_pct(jitter, 50)), "p99": _ms(_pct(jitter, 99)),
                                            "max": _ms(max(jitter) if jitter else None)},
                "lockstep_wait_ms": {"p50": _ms(_pct(self._lockstep_wait, 50)),
                                     "max": _ms(max(self._lockstep_wait) if self._lockstep_wait else None)},
            }

    def diagnostics(self) -> tuple[int, str, dict[str, str]]:
        """(level 0 ok / 1 warn / 2 error, message, flat key values) for a
        diagnostic_msgs/DiagnosticStatus."""
        s = self.stats()
        flat: dict[str, str] = {}
        for key, v in s.items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    flat[f"{key}.{k2}"] = str(v2)
            else:
                flat[key] = str(v)
        reason = s["last_reason"] or s["state"]
        msg = reason if not s["last_detail"] else f"{reason}: {s['last_detail']}"
        if self._hold is not None:
            reason, detail = self._hold
            level, msg = 2, f"HOLD ({reason}: {detail})" if detail else f"HOLD ({reason})"
            return level, msg + "; needs an explicit resume", flat
        if reason in (INFERENCE_ERROR, REFUSED_NONFINITE, INFERENCE_DEADLINE) or \
                reason.startswith("bad_observation"):
            level = 2
        elif reason in (STARVED,) or reason.split(":")[0] in ("stale", "missing", "future"):
            level = 1
        else:
            level = 0
        if level == 0 and s["missed_ticks"]:
            level, msg = 1, f"{msg}; {s['missed_ticks']} missed ticks this episode"
        return level, msg, flat
