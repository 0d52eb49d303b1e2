"""``ate_policy eval``: a policy checkpoint in the simulated cell, through the deployment runtime and the
drivers' safety layer; success rate, episode times and the paper's motion-quality figures (appendix H).

    ate_policy eval --task cook_bun --checkpoint PATH --episodes 20 [--seed 0] [--output DIR]
                    [--image-size H W] [--time-limit S] [--delay-ticks D] [--strategy blend] [--device auto]

Each episode, in one process and in simulated time (lockstep, so CPU rendering and inference cost wall time
only):

* the sim cell (``ate_sim.runner.SimRunner``, the object the ROS sim node serves: the task's scene, objects
  randomised by ``seed + episode``), the arms and grippers driven through the very driver logic the hardware
  uses (``ArmDriver`` / ``GripperDriver``: safety layer, refusals counted), on simulated time;
* every 20 Hz tick: the newest joint/gripper states and the three camera frames (stamped in simulated time) go
  to ``PolicyRuntime.tick``; its target, if any, goes to the drivers; the cell steps one period;
* the episode ends on the scene's success check or at the time limit, or as a failure the moment the cell
  supervisor holds (a refused command, a fault, a stale command on either arm holds both, as on the robot):
  evaluation never resumes a hold; the report names what held it.

Outputs in ``--output`` (default ``outputs/eval/<task>``): ``eval.json`` (summary + per episode),
``report.md``, ``summary.png``, ``episode_NNN.png`` (joints measured vs commanded, wrist forces) and
``episode_NNN.npz`` (the trajectories). Motion quality: jerk of the measured joint trajectories (third finite
difference at 20 Hz, rad/s^3) and of the commanded targets; peaks of the wrist wrench (force norm, the x force
relative to the first tick as in the paper's Figure 13, torque norm).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_description.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class EpisodeLog:
    t_s: list[float] = field(default_factory=list)
    q: list[np.ndarray] = field(default_factory=list)          # measured (16,)
    action: list[np.ndarray] = field(default_factory=list)     # commanded (16,), NaN on a held tick
    wrench: list[np.ndarray] = field(default_factory=list)     # (12,)
    reasons: list[str] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"t_s": np.asarray(self.t_s), "q": np.asarray(self.q), "action": np.asarray(self.action),
                "wrench": np.asarray(self.wrench), "reasons": np.asarray(self.reasons)}


# --- motion quality -----------------------------------------------------------------------------------------
def jerk(x: np.ndarray, dt: float) -> np.ndarray:
    """Third finite difference of a (T, D) trajectory sampled every ``dt``: (T - 3, D), units/s^3."""
    x = np.asarray(x, float)
    if len(x) < 4:
        return np.zeros((0, x.shape[1] if x.ndim == 2 else 1))
    return np.diff(x, n=3, axis=0) / dt ** 3


def motion_quality(log_: EpisodeLog, dt: float = contract.PERIOD_S) -> dict:
    """Per arm: RMS and max |jerk| of the measured joints and of the commanded targets (held ticks skipped),
    and the wrist wrench peaks."""
    a = log_.arrays()
    out: dict = {}
    for arm in contract.ARMS:
        sl = contract.arm_slice(arm)
        joints = slice(sl.start, sl.start + contract.N_ARM_JOINTS)
        jm = jerk(a["q"][:, joints], dt) if len(a["q"]) else np.zeros((0, 7))
        cmd = a["action"][:, joints] if len(a["action"]) else np.zeros((0, 7))
        cmd = cmd[np.all(np.isfinite(cmd), axis=1)]
        jc = jerk(cmd, dt)
        i = 6 * contract.ARMS.index(arm)
        w = a["wrench"][:, i:i + 6] if len(a["wrench"]) else np.zeros((0, 6))
        f, tq = w[:, :3], w[:, 3:]
        out[arm] = {
            "jerk_rms_rad_s3": _rms(jm), "jerk_max_rad_s3": _absmax(jm),
            "command_jerk_rms_rad_s3": _rms(jc), "command_jerk_max_rad_s3": _absmax(jc),
            "force_peak_n": float(np.linalg.norm(f, axis=1).max()) if len(f) else None,
            "fx_rel_peak_n": float(np.abs(f[:, 0] - f[0, 0]).max()) if len(f) else None,
            "torque_peak_nm": float(np.linalg.norm(tq, axis=1).max()) if len(tq) else None,
        }
    return out


def _rms(x: np.ndarray) -> float | None:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else None


def _absmax(x: np.ndarray) -> float | None:
    return float(np.abs(x).max()) if x.size else None


# --- one episode --------------------------------------------------------------------------------------------
def sim_runner(task: str, image_hw: tuple[int, int], seed: int, safety=None):
    """The sim cell behind the drivers' own logic, on simulated time (``ate_sim.runner.SimRunner``, the very
    object the ROS sim node serves), rendering the cameras at ``image_hw``."""
    from ate_drivers.config import DriversConfig, SimSettings
    from ate_description.limits import load_safety
    from ate_sim.runner import SimRunner

    # The limits of drivers.yaml's `safety` section, the same the arm drivers apply on the robot.
    cfg = DriversConfig(robot="sim", safety=safety or load_safety(),
                        sim=SimSettings(task=task, seed=seed, image_height=int(image_hw[0]),
                                        image_width=int(image_hw[1])))
    runner = SimRunner(cfg)
    runner.start()
    return runner


def observe(sim):
    """(Observation, wrench (12,)), assembled by ``runtime.io`` as the policy node assembles it."""
    from ate_policy.runtime.io import observation_from_streams

    reading, frames = sim.read(), sim.render()
    if any(s is None for s in (*reading.arms.values(), *reading.grippers.values())):
        raise RuntimeError("a sim arm or gripper did not connect")
    wrench = np.concatenate([st.wrench if st.wrench is not None else np.zeros(6) for st in reading.arms.values()])
    obs = observation_from_streams({a: (s.q_rad, s.stamp_s) for a, s in reading.arms.items()},
                                   {a: (g.position, g.stamp_s) for a, g in reading.grippers.items()},
                                   {c: (f.image, f.capture_time_s) for c, f in frames.items()})
    return obs, wrench


def command(sim, action: np.ndarray, stamp_s: float) -> None:
    """Through the drivers' safety layer, split per arm by ``runtime.io`` as the policy node does."""
    from ate_policy.runtime.io import targets_from_action

    for arm, (q, opening) in targets_from_action(action).items():
        sim.command_arm(arm, [], q, stamp_s)
        sim.command_gripper(arm, opening)


def run_episode(sim, runtime, seed: int, time_limit_s: float, viz=None, film=None,
                hand_over=None) -> tuple[dict, EpisodeLog]:
    """``viz``: an ``ate_policy.viz.runtime_viz.RuntimeViz`` that logs every tick (``--viz``). ``film``: a
    ``sim_eval.EpisodeFilm`` collecting the camera views. ``hand_over(cell, reached, action)`` (``reached``:
    {stage: latched}; ``action``: this tick's target or None) is asked after every tick that did not end the
    episode; True ends the policy's part there and leaves the cell as the policy left it, for the scripted
    demonstrator to take over (``ate_policy.data.sim_takeover``); the summary's ``handed_over_s`` says when
    (None: never)."""
    import torch

    from ate_sim.scenes import SETTLE_S

    torch.manual_seed(seed)  # the policy's noise: a rerun with the same seed is the same episode
    sim.reset(seed)                       # a fresh world: the last episode's hold is gone with it
    refused_before = sim.refusals()
    sim.step(SETTLE_S)   # objects settle before the first observation, as in the recorded demonstrations
    runtime.reset(clear_hold=True)
    begin = getattr(runtime.select_chunk, "begin_episode", None)
    if begin is not None:   # a replay source: the episode's time origin and seed
        begin(sim.sim_time(), seed)
    runtime.start()
    held, unrecoverable = None, ""
    stages = sim.cell.scene.stages()
    reached = [False] * len(stages)
    first_close: dict[str, dict] = {}
    ep = EpisodeLog()
    n_ticks = int(round(time_limit_s / contract.PERIOD_S))
    success, wall0, handed_over = False, time.perf_counter(), None
    for _ in range(n_ticks):
        t = sim.sim_time()
        obs, wrench = observe(sim)
        res = runtime.tick(obs, t)
        if res.action is not None:
            note_first_close(sim.cell, res.action, t - ep.t_s[0] if ep.t_s else 0.0, first_close)
            command(sim, res.action, t)
        if viz is not None:
            viz.on_tick(res, obs, wrench, {k: n - refused_before.get(k, 0) for k, n in sim.refusals().items()})
        ep.t_s.append(t)
        ep.q.append(obs.state.astype(float))
        ep.action.append(res.action if res.action is not None else np.full(contract.ACTION_DIM, np.nan))
        ep.wrench.append(wrench)
        ep.reasons.append(res.reason)
        if film is not None:
            film.add(obs.images)
        if sim.supervisor.held():
            # The cell holds both arms (as the robot would): a failure, never resumed here.
            held = {"reason": sim.supervisor.reason(), "at_s": round(t - ep.t_s[0], 3),
                    "arms": sorted(a for a in contract.ARMS if sim.supervisor.held(a))}
            runtime.hold("held", held["reason"])
            break
        sim.step()
        for i, (_, check) in enumerate(stages):   # latched: a stage counts once its check held at some tick
            reached[i] = reached[i] or check(sim.cell)
        if sim.success():
            success = True
            break
        unrecoverable = sim.cell.scene.unrecoverable(sim.cell)
        if unrecoverable:   # early stop: nothing the policy does can succeed any more
            break
        if hand_over is not None and hand_over(sim.cell, {n: r for (n, _), r in zip(stages, reached, strict=True)},
                                               res.action):
            handed_over = round(t + contract.PERIOD_S - ep.t_s[0], 3)
            break
    refusals = {k: n - refused_before.get(k, 0) for k, n in sim.refusals().items() if n > refused_before.get(k, 0)}
    # commands refused because the cell already held (the rest of that tick's): a consequence, not a cause
    refused_while_held = sum(refusals.pop(k) for k in [k for k in refusals if k.endswith(":held")])
    stats = runtime.stats()
    from ate_policy.sim_eval import outcome

    summary = {"seed": seed, "success": success, **outcome(success, held, unrecoverable),
               "stages": [name for (name, _), r in zip(stages, reached, strict=True) if r],
               "first_close": first_close,
               "ticks": len(ep.t_s),
               "episode_time_s": round(len(ep.t_s) * contract.PERIOD_S, 3),
               "wall_time_s": round(time.perf_counter() - wall0, 2),
               "missed_ticks": stats["missed_ticks"], "holds": stats["holds"], "chunks": stats["chunks"],
               "clamped_ticks": stats["clamped_ticks"], "max_clamp_rad": stats["max_clamp_rad"],
               "lead_limited_ticks": stats["lead_limited_ticks"],
               "overtaken_actions": stats["overtaken_actions"],
               "chunks_refused_nonfinite": stats["chunks_refused_nonfinite"],
               "inference_ms_p50": stats["inference_ms"]["p50"],
               "inference_ms_max": stats["inference_ms"]["max"],
               "safety_refusals": refusals, "refused_while_held": refused_while_held, "held": held,
               "motion": motion_quality(ep)}
    if hand_over is not None:
        summary["handed_over_s"] = handed_over
    return summary, ep


def note_first_close(cell, action: np.ndarray, t_s: float, first_close: dict) -> None:
    """At the first tick a gripper is commanded closed, where its TCP is and where the object of that arm's first
    grasp (``Scene.first_grasps``) is: across episodes, ``grasp_tracking`` tells whether the grasp follows the
    object (the policy sees it) or goes to one place whatever the scene."""
    from ate_sim.scenes import body_pos

    for arm, obj in cell.scene.first_grasps.items():
        if arm in first_close:
            continue
        grip = action[contract.arm_slice(arm).stop - 1]
        if np.isfinite(grip) and grip < GRIP_CLOSED:
            first_close[arm] = {"t_s": round(float(t_s), 3), "object": obj,
                                "tcp_m": [round(float(v), 4) for v in cell.tcp_world(arm)],
                                "object_m": [round(float(v), 4) for v in body_pos(cell, obj)]}


GRIP_CLOSED = 0.5
"""A commanded opening below this counts as closing the gripper (the demonstrations close to 0)."""


def grasp_tracking(results) -> dict:
    """Per arm, over the episodes whose first grasp was attempted: the least-squares slope of the TCP's x and y on
    the object's x and y at the first close command (1: the grasp follows the object, as the demonstrations'
    do; 0: the same place whatever the scene, a camera-blind policy's) and the RMS horizontal miss."""
    out = {}
    for arm in contract.ARMS:
        rows = [r["first_close"][arm] for r in results if arm in r.get("first_close", {})]
        if not rows:
            continue
        tcp = np.array([r["tcp_m"][:2] for r in rows])
        obj = np.array([r["object_m"][:2] for r in rows])
        slope = [None, None]
        for k in range(2):
            spread = obj[:, k] - obj[:, k].mean()
            if len(rows) >= 3 and float(spread @ spread) > 1e-8:
                slope[k] = round(float(spread @ (tcp[:, k] - tcp[:, k].mean()) / (spread @ spread)), 3)
        out[arm] = {"object": rows[0]["object"], "episodes": len(rows), "slope_xy": slope,
                    "miss_rms_m": round(float(np.sqrt(np.mean(np.sum((tcp - obj) ** 2, axis=1)))), 4)}
    return out


# --- the whole evaluation -----------------------------------------------------------------------------------
@dataclass
class PolicyCell:
    """A policy behind the deployment runtime, in front of the sim cell (:func:`open_policy_cell`)."""
    sim: object
    runtime: object
    policy: object
    limit_s: float
    rcfg: object
    render_hw: tuple
    policy_hw: tuple


def open_policy_cell(task, image_hw: tuple[int, int] | None = None, time_limit_s: float | None = None,
                     policy=None, seed: int = 0) -> PolicyCell:
    """The sim cell of ``task`` (a TaskConfig) and a lockstep ``PolicyRuntime`` over ``policy`` (None: the task's
    checkpoint), as ``ate_policy eval`` runs them; the caller closes ``runtime`` and ``sim``."""
    import dataclasses

    from ate_policy.runtime import PolicyRuntime

    sim_task = task.sim_task or task.name
    rcfg = dataclasses.replace(task.runtime, clock="lockstep")
    limit = time_limit_s   # None: from the scene, below
    if policy is None:
        from ate_policy.runtime.policy import load_policy

        if not task.checkpoint:
            raise UserError("no checkpoint: give --checkpoint PATH (or set `checkpoint` in the task YAML)")
        policy = load_policy(task.checkpoint, task.device, image_hw=task.image_hw,
                             instruction=task.instruction,
                             blending=rcfg.blending)
    policy_hw = tuple(getattr(policy, "image_hw", None) or task.image_hw or (224, 224))
    render_hw = tuple(image_hw) if image_hw else policy_hw
    from ate_description.limits import load_safety

    safety = load_safety(overrides=task.safety)   # the drivers' limits, which the runtime's limiter stays inside
    try:
        sim = sim_runner(sim_task, render_hw, seed, safety=safety)
    except ValueError as e:
        raise UserError(str(e)) from e
    scene = sim.cell.scene
    if scene is None:
        sim.close()
        raise UserError(f"sim task {sim_task!r} has no scene with a success check")
    if scene.instruction != task.instruction:
        log.warning("the task's instruction %r differs from the sim scene's %r (the sim demonstrations' "
                    "wording)", task.instruction, scene.instruction)
    if limit is None:
        from ate_policy.sim_eval import default_time_limit_s

        limit = default_time_limit_s(scene)
    rcfg = dataclasses.replace(rcfg, episode_time_limit_s=limit)
    runtime = PolicyRuntime(policy, rcfg, instruction=task.instruction, safety=safety)
    return PolicyCell(sim, runtime, policy, limit, rcfg, render_hw, policy_hw)


def evaluate(task, episodes: int, seed: int = 0, output: str | Path | None = None,
             image_hw: tuple[int, int] | None = None, time_limit_s: float | None = None, policy=None,
             progress: bool = True, max_episode_plots: int = 5, log_refusals: bool = False,
             viz: str | None = None, videos: int = 3) -> dict:
    """Run ``episodes`` sim episodes of ``task`` (a TaskConfig); returns the summary also written to
    eval.json.

    ``policy``: a ready select_chunk (tests); None = ``load_policy(task.checkpoint, ...)``. The safety layer's
    refusals are counted in the report; ``log_refusals`` also logs each one (an untrained policy makes
    many). ``videos``: the first this many episodes are also written as ``episode_NNN.mp4`` (three views side by
    side). ``time_limit_s`` None = ``sim_eval.EVAL_TIME_FACTOR`` x the demonstrator's duration. ``viz``: ``save``
    writes ``episode_NNN.rrd`` (Rerun) next to the report, ``native`` / ``web`` also show
    the episodes live (docs/visualization.md)."""
    safety_log = logging.getLogger("ate_drivers.safety")
    level = safety_log.level
    if not log_refusals:
        safety_log.setLevel(logging.ERROR)
    try:
        return _evaluate(task, episodes, seed, output, image_hw, time_limit_s, policy, progress,
                         max_episode_plots, viz, videos)
    finally:
        safety_log.setLevel(level)


def _evaluate(task, episodes, seed, output, image_hw, time_limit_s, policy, progress,
              max_episode_plots, viz=None, videos: int = 3) -> dict:
    from tqdm import tqdm

    if episodes < 1:
        raise UserError("--episodes must be >= 1")
    sim_task = task.sim_task or task.name
    out = Path(output or f"outputs/eval/{task.name}")
    pc = open_policy_cell(task, image_hw, time_limit_s, policy, seed)
    sim, runtime, policy, limit, rcfg = pc.sim, pc.runtime, pc.policy, pc.limit_s, pc.rcfg
    render_hw, policy_hw = pc.render_hw, pc.policy_hw
    out.mkdir(parents=True, exist_ok=True)
    results, logs = [], []
    viewer = None
    try:
        if viz in ("native", "web"):
            from ate_policy.viz.viewer import start_viewer

            viewer = start_viewer(viz)
            if viewer.web_url:
                print(f"Rerun web viewer: {viewer.web_url}")
        obs, _ = observe(sim)
        runtime.warmup(obs)
        bar = tqdm(range(episodes), desc=f"eval {task.name}", unit="ep", disable=None if progress else True,
                   dynamic_ncols=True)
        for i in bar:
            logger = _episode_logger(task, i, out, viewer, runtime) if viz else None
            from ate_policy.sim_eval import EpisodeFilm

            film = EpisodeFilm() if i < videos else None
            try:
                res, ep = run_episode(sim, runtime, seed + i, limit, logger, film)
            finally:
                if logger is not None:
                    viz_stats = logger.logger.close()
            if logger is not None:
                res["viz"] = {"rrd": f"episode_{i:03d}.rrd", "dropped": viz_stats["dropped"]}
            res["episode"] = i
            if film is not None and film.write(out / f"episode_{i:03d}.mp4"):
                res["video"] = f"episode_{i:03d}.mp4"
            results.append(res)
            logs.append(ep)
            np.savez_compressed(out / f"episode_{i:03d}.npz", **ep.arrays())
            bar.set_postfix(success=f"{sum(r['success'] for r in results)}/{len(results)}",
                            ticks=res["ticks"])
        bar.close()
    finally:
        runtime.close()
        sim.close()
        if viewer is not None and viz == "web":
            viewer.close()   # the .rrd files stay: `rerun --serve-web FILE` shows one again

    info = getattr(policy, "info", {"policy_type": type(policy).__name__})
    summary = _summary(task, sim_task, results, seed, limit, render_hw, policy_hw, rcfg, info)
    plots = _plots(out, results, logs, max_episode_plots)
    summary["plots"] = [p.name for p in plots]
    (out / "eval.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    (out / "report.md").write_text(_report(summary))
    summary["output"] = str(out)
    return summary


def _episode_logger(task, i: int, out: Path, viewer, runtime):
    """``--viz``: the episode's Rerun logger (lossless PNG frames; it never drops: the run is in simulated
    time, so waiting for the encoder costs wall time only)."""
    from ate_policy.viz import CellLogger, VizConfig
    from ate_policy.viz.runtime_viz import RuntimeViz

    lg = CellLogger(f"eval {task.name} episode {i}", rrd_path=out / f"episode_{i:03d}.rrd",
                    viewer_url=viewer.grpc_url if viewer else None,
                    config=VizConfig(image_codec="png", drop_when_full=False))
    return RuntimeViz(lg, runtime)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _mean(values) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def _summary(task, sim_task, results, seed, limit, render_hw, policy_hw, rcfg, info) -> dict:
    from ate_policy.config import to_dict

    n = len(results)
    ok = [r for r in results if r["success"]]
    motion = {}
    for arm in contract.ARMS:
        motion[arm] = {k: _mean(r["motion"][arm][k] for r in results)
                       for k in results[0]["motion"][arm]}
    return {
        "task": task.name, "sim_task": sim_task, "instruction": task.instruction,
        "checkpoint": task.checkpoint,
        "policy": info, "episodes": n, "seed": seed, "successes": len(ok), "success_rate": len(ok) / n,
        "episode_time_s": {"mean": _mean(r["episode_time_s"] for r in results),
                           "mean_successful": _mean(r["episode_time_s"] for r in ok)},
        "time_limit_s": limit, "render_hw": list(render_hw), "policy_image_hw": list(policy_hw),
        "missed_ticks": sum(r["missed_ticks"] for r in results),
        "clamped_ticks": sum(r["clamped_ticks"] for r in results),
        "held_episodes": sum(1 for r in results if r["held"]),
        "outcomes": {k: sum(1 for r in results if r["outcome"] == k)
                     for k in ("success", "timeout", "dropped", "held")},
        "safety_refusals": _sum_dicts(r["safety_refusals"] for r in results),
        "stages_reached": stages_reached(results, sim_task),
        "grasp_tracking": grasp_tracking(results),
        "motion_mean": motion, "runtime": to_dict(rcfg), "per_episode": results,
        "note": "lockstep simulated time: wall-clock inference latency does not affect the run; the runtime "
                "uses each chunk lockstep_delay_ticks after its observation",
    }


def stages_reached(results, sim_task: str) -> dict[str, int]:
    """{stage: episodes that reached it}, in the task's order (``ate_sim.scenes.Scene.stages``)."""
    from ate_sim.scenes import make_scene

    return {name: sum(1 for r in results if name in r["stages"]) for name, _ in make_scene(sim_task).stages()}


def _sum_dicts(dicts) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _plots(out: Path, results, logs, max_episode_plots: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for i, (res, ep) in enumerate(zip(results[:max_episode_plots], logs, strict=False)):
        a = ep.arrays()
        t = a["t_s"] - (a["t_s"][0] if len(a["t_s"]) else 0.0)
        fig, axes = plt.subplots(3, 2, figsize=(12, 8), sharex=True)
        for col, arm in enumerate(contract.ARMS):
            sl = contract.arm_slice(arm)
            for j in range(contract.N_ARM_JOINTS):
                line, = axes[0, col].plot(t, a["q"][:, sl.start + j], lw=1, label=f"j{j + 1}")
                axes[0, col].plot(t, a["action"][:, sl.start + j], lw=0.8, ls="--", color=line.get_color())
            axes[0, col].set_title(f"{arm} arm joints (rad): measured solid, commanded dashed")
            axes[1, col].plot(t, a["q"][:, sl.stop - 1], label="measured")
            axes[1, col].plot(t, a["action"][:, sl.stop - 1], ls="--", label="commanded")
            axes[1, col].set_title(f"{arm} gripper opening (0 closed .. 1 open)")
            w = a["wrench"][:, 6 * col:6 * col + 3]
            for k, name in enumerate("xyz"):
                axes[2, col].plot(t, w[:, k] - w[0, k], lw=1, label=f"F{name} - F{name}(0)")
            axes[2, col].set_title(f"{arm} wrist force relative to the first tick (N)")
            axes[2, col].set_xlabel("simulated time (s)")
        axes[0, 0].legend(fontsize=7, ncol=4)
        axes[1, 0].legend(fontsize=7)
        axes[2, 0].legend(fontsize=7)
        fig.suptitle(f"episode {i} (seed {res['seed']}): {'success' if res['success'] else 'no success'}")
        fig.tight_layout()
        p = out / f"episode_{i:03d}.png"
        fig.savefig(p, dpi=80)
        plt.close(fig)
        written.append(p)

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    idx = np.arange(len(results))
    colors = ["tab:green" if r["success"] else "tab:red" for r in results]
    for k, (key, title) in enumerate((("jerk_rms_rad_s3", "RMS joint jerk (rad/s^3)"),
                                      ("force_peak_n", "peak wrist force (N)"),
                                      ("fx_rel_peak_n", "peak |Fx - Fx(0)| (N)"))):
        width = 0.4
        for j, arm in enumerate(contract.ARMS):
            vals = [r["motion"][arm][key] or 0.0 for r in results]
            axes[k].bar(idx + (j - 0.5) * width, vals, width, label=arm, edgecolor=colors, linewidth=1.5)
        axes[k].set_title(title)
        axes[k].set_xlabel("episode (edge: green success, red not)")
        axes[k].legend(fontsize=8)
    fig.tight_layout()
    p = out / "summary.png"
    fig.savefig(p, dpi=80)
    plt.close(fig)
    written.append(p)
    return written


def _held_cell(held: dict | None) -> str:
    return "-" if not held else f"{held['reason'].replace('|', '/')} at {held['at_s']} s"


def _fmt(x, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _tracking_lines(tracking: dict) -> list[str]:
    if not tracking:
        return []
    return ["First grasp tracking (slope of the TCP on the object's position at the first close command, over the "
            "episodes that closed: 1 follows the object, 0 goes to one place whatever the scene): "
            + "; ".join(f"{arm} on the {g['object']}: x {_fmt(g['slope_xy'][0])}, y {_fmt(g['slope_xy'][1])}, "
                        f"RMS miss {100 * g['miss_rms_m']:.1f} cm ({g['episodes']} episodes)"
                        for arm, g in tracking.items()) + ".", ""]


def _report(s: dict) -> str:
    lines = [f"# Evaluation: {s['task']} in the simulated cell", "",
             f"- checkpoint: `{s['checkpoint']}` ({s['policy'].get('policy_type', '?')}, "
             f"{s['policy'].get('device', '?')}, {s['policy'].get('dtype', '?')})",
             f"- instruction: \"{s['instruction']}\"",
             f"- episodes: {s['episodes']} (seeds {s['seed']}..{s['seed'] + s['episodes'] - 1}), time limit "
             f"{s['time_limit_s']} s, cameras rendered at {s['render_hw'][0]}x{s['render_hw'][1]}, policy "
             f"input {s['policy_image_hw'][0]}x{s['policy_image_hw'][1]}",
             f"- runtime: lockstep, delay {s['runtime']['lockstep_delay_ticks']} ticks, threshold "
             f"{s['runtime']['queue_threshold_ticks']}, strategy {s['runtime']['blending']['strategy']}",
             "", f"**Success rate: {s['successes']}/{s['episodes']} ({100 * s['success_rate']:.0f} %)**; "
             f"mean episode time {_fmt(s['episode_time_s']['mean'], 1)} s "
             f"(successful: {_fmt(s['episode_time_s']['mean_successful'], 1)} s); "
             f"missed ticks {s['missed_ticks']}; ticks rate-limited by the runtime {s['clamped_ticks']}; "
             f"safety refusals {s['safety_refusals'] or 'none'}; episodes ended "
             f"by a cell hold (failures): {s['held_episodes']}.", "",
             f"Stages reached (episodes of {s['episodes']} in which the check held at some tick): "
             + ", ".join(f"{k} {n}" for k, n in s["stages_reached"].items()) + ".", "",
             *_tracking_lines(s["grasp_tracking"]),
             "## Motion quality (paper appendix H), mean over episodes", "",
             "| arm | RMS jerk (rad/s^3) | max jerk | RMS command jerk | peak force (N) | peak abs(Fx - "
             "Fx0) (N) | peak torque (Nm) |", "|---|---|---|---|---|---|---|"]
    for arm in contract.ARMS:
        m = s["motion_mean"][arm]
        lines.append(f"| {arm} | {_fmt(m['jerk_rms_rad_s3'])} | {_fmt(m['jerk_max_rad_s3'])} | "
                     f"{_fmt(m['command_jerk_rms_rad_s3'])} | {_fmt(m['force_peak_n'])} | "
                     f"{_fmt(m['fx_rel_peak_n'])} | {_fmt(m['torque_peak_nm'])} |")
    lines += ["", "## Episodes", "",
              "| episode | seed | success | failure | stages reached | time (s) | chunks | missed ticks "
              "| runtime holds | cell hold |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in s["per_episode"]:
        lines.append(f"| {r['episode']} | {r['seed']} | {'yes' if r['success'] else 'no'} | "
                     f"{r['failure'] or '-'} | {', '.join(r['stages']) or '-'} | {r['episode_time_s']} | "
                     f"{r['chunks']} | {r['missed_ticks']} | "
                     f"{r['holds'] or '-'} | "
                     f"{_held_cell(r['held'])} |")
    films = [r["video"] for r in s["per_episode"] if r.get("video")]
    if films:
        lines += ["", "## Videos (cam_high | left wrist | right wrist)", ""] + [f"- [{v}]({v})" for v in films]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in s["plots"]]
    lines += ["", f"_{s['note']}._", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from ate_policy.runtime.configuration_task import load_task

    p = argparse.ArgumentParser(prog="ate_policy eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="cook_bun",
                   help="task name (ate_bringup/config/tasks/<task>.yaml) or YAML path")
    p.add_argument("--checkpoint", default=None, help="LeRobot checkpoint folder (overrides the task's)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed + i (objects and policy noise)")
    p.add_argument("--output", default=None, help="report folder (default outputs/eval/<task>)")
    p.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="render the sim cameras at this size (default: the policy's input size)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="episode time limit in s (default: 2x the scripted demonstrator's duration)")
    p.add_argument("--delay-ticks", type=int, default=None, help="simulated inference latency in ticks")
    p.add_argument("--threshold", type=int, default=None, help="queue threshold in ticks")
    p.add_argument("--strategy", choices=("latest", "blend", "rtc"), default=None, help="chunk merging")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (overrides the task's)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--log-refusals", action="store_true", help="log every command the safety layer refuses")
    p.add_argument("--viz", nargs="?", const="save", choices=("save", "native", "web"), default=None,
                   help="Rerun: save episode_NNN.rrd next to the report (`--viz`), and show the episodes live in "
                        "a viewer window (`--viz native`) or a web viewer on localhost (`--viz web`)")
    p.add_argument("--videos", type=int, default=3, help="write episode_NNN.mp4 of the first N episodes")
    p.add_argument("--replay", metavar="DATASET", default=None,
                   help="instead of a checkpoint, replay the sim demonstration recorded with each episode's seed "
                        "(the integration check: must succeed with no refusal)")
    p.add_argument("--blind", action="store_true",
                   help="with --replay: replay a demonstration recorded with ANOTHER seed (the camera-blind "
                        "baseline a learned policy must beat)")
    p.add_argument("--replay-episode", type=int, default=None, help="with --replay: always this episode")
    a = p.parse_args(argv)
    policy = None
    if a.replay:
        from ate_policy.sim_eval import replay_policy

        policy = replay_policy(a.replay, a.blind, a.replay_episode)
    elif a.blind or a.replay_episode is not None:
        raise UserError("--blind and --replay-episode need --replay DATASET")
    over: dict = {"runtime": {"blending": {}}, "device": {}}
    if a.checkpoint:
        over["checkpoint"] = a.checkpoint
    if a.delay_ticks is not None:
        over["runtime"]["lockstep_delay_ticks"] = a.delay_ticks
    if a.threshold is not None:
        over["runtime"]["queue_threshold_ticks"] = a.threshold
    if a.strategy:
        over["runtime"]["blending"]["strategy"] = a.strategy
    if a.device:
        over["device"]["device"] = a.device
    task = load_task(a.task, over)
    s = evaluate(task, a.episodes, a.seed, a.output, tuple(a.image_size) if a.image_size else None,
                 a.time_limit, policy=policy, progress=not a.no_progress, log_refusals=a.log_refusals, viz=a.viz,
                 videos=a.videos)
    m = s["motion_mean"]
    fails = "".join(f"; {k} {n}" for k, n in s["outcomes"].items() if n and k != "success")
    print(f"{s['task']}: success {s['successes']}/{s['episodes']} ({100 * s['success_rate']:.0f} %{fails}), "
          f"mean "
          f"episode {_fmt(s['episode_time_s']['mean'], 1)} s, missed ticks {s['missed_ticks']}, rate-limited ticks "
          f"{s['clamped_ticks']}, RMS jerk "
          f"left/right {_fmt(m['left']['jerk_rms_rad_s3'])}/{_fmt(m['right']['jerk_rms_rad_s3'])} rad/s^3, "
          f"peak force left/right {_fmt(m['left']['force_peak_n'])}/{_fmt(m['right']['force_peak_n'])} N -> "
          f"{s['output']}")
    print("  stages reached: " + ", ".join(f"{k} {n}/{s['episodes']}" for k, n in s["stages_reached"].items()))
    for line in grasp_lines(s["grasp_tracking"]):
        print("  " + line)
    return 0


def grasp_lines(tracking: dict) -> list[str]:
    """One line per arm of ``grasp_tracking``'s result, as ``ate_policy eval`` prints it."""
    lines = []
    for arm, g in tracking.items():
        miss = f"RMS miss {100 * g['miss_rms_m']:.1f} cm"
        if None in g["slope_xy"]:   # fewer than 3 episodes grasped, or the object never moved between them
            lines.append(f"first grasp ({arm} arm, {g['object']}): {miss} over {g['episodes']} episode(s) (the "
                         "tracking slope needs >= 3 episodes with the object in different places)")
        else:
            lines.append(f"first grasp ({arm} arm, {g['object']}) follows the object with slope x "
                         f"{_fmt(g['slope_xy'][0])} y {_fmt(g['slope_xy'][1])} (1 sees it, 0 blind), {miss}")
    return lines
