"""Dual-operator teleop session: per-operator state machines, the shared episode, 20 Hz recording.

A thin ROS node (or a test, or a sim script) owns one ``DualTeleopSession``:

    session = DualTeleopSession(load_teleop_config(path, overrides))      # sources built from the config
    session.connect()                                                     # headsets + Joy-Cons (clear errors)
    # driver callbacks, any thread; one clock for every stamp and for tick()'s now_s
    session.put_joint_state("left", q7, stamp_s); session.put_gripper_state("left", opening, stamp_s)
    session.put_wrench("left", wrench6, stamp_s); session.put_image("cam_high", rgb, stamp_s)
    session.set_estop(latched)                                            # from /estop
    session.set_cell_hold({"left"}, reason)                               # from /cell/hold (the supervisor)
    out = session.tick(now_s)                                             # 20 Hz timer
    out.joint_targets["left"]     # (7,) rad to publish, or None: hold (publish nothing)
    out.gripper_targets["left"]   # opening fraction, or None: leave the gripper alone
    out.estop_requested           # an operator pressed e-stop: call /estop/trigger
    out.status                    # for the operators' status topic / diagnostics
    session.close()

Per operator (``OperatorState``):

* ``idle``: no mapping; the arm is not commanded. **init** (or clutch) press -> ``aligned``.
* ``aligned``: init/clutch held. The arm holds; the mapping is re-captured every tick from the current wrist
  pose and the arm's current commanded pose, so the operator can settle the hand. Release -> ``teleop``: the
  first target equals the arm's pose (no jump), and the first command starts from the measured joints.
* ``teleop`` (``recording`` while the shared episode runs): wrist -> mapping -> 1-euro pose filter -> IK
  (warm-started) -> joint filter + step limit -> command. Holding **clutch** -> ``aligned`` (the arm stops,
  the hand moves freely); release re-aligns without moving the arm.
* ``hold``: the wrist stream is stale / frozen / invalid or the Joy-Con is silent; no commands. Back within
  ``resume_after_loss_s`` -> ``teleop``; later the operator re-aligns (init/clutch).
* ``homing``: **home** pressed (not while recording): the arm moves to ``home_q_rad`` at the step limit, then
  ``idle``.

Shared: **record** (either operator) starts an episode when both arms are in ``teleop`` and stops (saves) it
when one is running; **discard** throws it away; **estop** (either) requests the e-stop, discards the episode
and sends every operator to ``idle``; nothing is commanded until ``set_estop(False)``. Saving runs in a worker
thread (``stop_and_save`` waits for the video encoder), so ticks never block on it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from ate_description import contract
from ate_description.errors import UserError
from ate_description.calibration import ArmCalibration, CalibrationConfig, load_calibration
from teleop.buttons import ButtonEvents, ButtonMap, ButtonSource, make_button_source
from teleop.configuration_teleop import OperatorConfig, TeleopConfig
from teleop.filters import JointCommandFilter, OneEuroPoseFilter
from ate_description.ik import IKSolution, PinocchioIK
from ate_description.kinematics import fk
from teleop.mapping import FrameMapping
from teleop.pose_source import PoseSource, WristSample

log = logging.getLogger(__name__)


class OperatorState(str, Enum):
    IDLE = "idle"
    ALIGNED = "aligned"
    TELEOP = "teleop"
    RECORDING = "recording"   # reported only: teleop while the shared episode runs
    HOLD = "hold"
    HOMING = "homing"


@dataclass
class TickResult:
    joint_targets: dict[str, np.ndarray | None]
    gripper_targets: dict[str, float | None]
    estop_requested: bool
    status: dict
    events: list[str] = field(default_factory=list)   # what happened this tick, for the node's log


class OperatorTeleop:
    """One operator driving one arm: the state machine, mapping, filters and IK (see the module docstring)."""

    def __init__(self, arm: str, cfg: TeleopConfig, op: OperatorConfig, cal: ArmCalibration,
                 pose_source: PoseSource, buttons: ButtonSource):
        self.arm, self.cfg, self.op, self.cal = arm, cfg, op, cal
        self.pose_source, self.button_source = pose_source, buttons
        self.button_map = ButtonMap(op.buttons)
        self.mapping = FrameMapping(cal.rotation())
        self.pose_filter = OneEuroPoseFilter(cfg.filter)
        self.joint_filter = JointCommandFilter(cfg.filter, cfg.safety)
        self.ik = PinocchioIK(cfg.ik)
        self.home_q = np.asarray(cal.home_q_rad, dtype=float)
        self.state = OperatorState.IDLE
        self.hold_reason = ""
        self.last_error = ""
        self.q_cmd: np.ndarray | None = None       # last joint command sent
        self.last_cmd_s: float | None = None
        self.q_hold: np.ndarray | None = None      # the commanded posture the mapping anchors to
        self.q_ik: np.ndarray | None = None        # last IK solution (the warm start)
        self.lost_since_s: float | None = None
        self.gripper_target: float | None = None
        self.last_ik: IKSolution | None = None
        self.last_sample: WristSample | None = None
        self.step_limited_ticks = 0
        self.unreachable_ticks = 0
        self.clamped_ticks = 0

    # --- helpers --------------------------------------------------------------------------------------------
    def _set(self, state: OperatorState, reason: str = "") -> None:
        if state != self.state:
            log.info("[%s] %s -> %s%s", self.arm, self.state.value, state.value,
                     f" ({reason})" if reason else "")
        self.state, self.hold_reason = state, reason

    def _paused(self, now_s: float) -> bool:
        """True when the driver judges the next command against the measured joints (its watchdog expired)."""
        return self.last_cmd_s is None or now_s - self.last_cmd_s > self.cfg.safety.watchdog_s

    def _command(self, q_target: np.ndarray, q_meas: np.ndarray, now_s: float, dt_s: float) -> np.ndarray:
        if self._paused(now_s):
            self.joint_filter.reset(q_meas)
        before = self.joint_filter.limited_ticks
        q = self.joint_filter(q_target, dt_s)
        self.step_limited_ticks += self.joint_filter.limited_ticks - before
        self.q_cmd, self.last_cmd_s = q, now_s
        return q

    def reset_to_idle(self, reason: str = "") -> None:
        self.mapping.reset()
        self.lost_since_s = None
        self._set(OperatorState.IDLE, reason)

    def read_buttons(self) -> ButtonEvents:
        return self.button_map.update(self.button_source.read())

    # --- gripper --------------------------------------------------------------------------------------------
    def _gripper(self, ev: ButtonEvents, sample: WristSample | None, g_meas: float | None,
                 dt_s: float) -> None:
        gc, lo, hi = self.op.gripper, self.cal.gripper_closed, self.cal.gripper_open
        current = self.gripper_target if self.gripper_target is not None else g_meas
        if "gripper_toggle" in ev.pressed:
            base = current if current is not None else hi
            self.gripper_target = lo if base > (lo + hi) / 2 else hi
        if "gripper_open" in ev.pressed:
            self.gripper_target = hi
        if "gripper_close" in ev.pressed:
            self.gripper_target = lo
        if gc.mode == "hold" and (self.gripper_target is not None or "gripper_close" in ev.held):
            self.gripper_target = lo if "gripper_close" in ev.held else hi
        elif gc.mode == "stick" and ev.stick[1] != 0.0:
            base = current if current is not None else hi
            self.gripper_target = float(np.clip(base + ev.stick[1] * gc.stick_rate_per_s * dt_s, lo, hi))
        elif gc.mode == "pinch" and self.state == OperatorState.TELEOP and sample is not None and sample.ok:
            frac = (sample.pinch_m - gc.pinch_closed_m) / (gc.pinch_open_m - gc.pinch_closed_m)
            self.gripper_target = float(lo + np.clip(frac, 0.0, 1.0) * (hi - lo))

    # --- one tick -------------------------------------------------------------------------------------------
    def step(self, now_s: float, dt_s: float, ev: ButtonEvents, q_meas: np.ndarray | None,
             g_meas: float | None, recording: bool, events: list[str]) -> np.ndarray | None:
        """The joint command of this tick, or None (hold)."""
        sample = self.pose_source.latest()
        self.last_sample = sample
        pose_ok = sample is not None and sample.ok
        inputs_ok = pose_ok and not ev.lost
        why_not = ("buttons_lost" if ev.lost else
                   "no_data" if sample is None else sample.status)
        self._gripper(ev, sample, g_meas, dt_s)
        align_held = bool({"init", "clutch"} & ev.held)
        align_pressed = bool({"init", "clutch"} & ev.pressed)
        if q_meas is None:
            if align_pressed or "home" in ev.pressed:
                self.last_error = f"{self.arm}: no joint state from the arm yet"
            return None

        if "home" in ev.pressed:
            if recording:
                self.last_error = (f"{self.arm}: home refused while recording "
                                   "(stop or discard the episode first)")
            else:
                self.mapping.reset()
                self._set(OperatorState.HOMING)
                events.append(f"{self.arm}: homing")

        st = self.state
        if st == OperatorState.HOMING:
            q = self._command(self.home_q, q_meas, now_s, dt_s)
            if float(np.max(np.abs(q - self.home_q))) < 1e-6:
                self.reset_to_idle("home reached")
                events.append(f"{self.arm}: home reached")
            return q

        if st in (OperatorState.IDLE, OperatorState.HOLD) and align_pressed:
            if not inputs_ok:
                self.last_error = f"{self.arm}: cannot align, wrist stream {why_not}"
                return None
            self.q_hold = self.q_cmd.copy() if not self._paused(now_s) else q_meas.copy()
            self._set(OperatorState.ALIGNED)
            st = self.state

        if st == OperatorState.ALIGNED:
            if not inputs_ok:
                return None     # keep the last good mapping; the arm holds
            self.mapping.align(sample.wrist, fk(self.q_hold))
            if not align_held:
                self.pose_filter.reset(self.mapping.target(sample.wrist), now_s)
                self.q_ik = self.q_hold.copy()
                self.lost_since_s = None
                self._set(OperatorState.TELEOP)
                events.append(f"{self.arm}: aligned, teleop")
                st = self.state
            else:
                return None

        if st == OperatorState.HOLD:
            short_gap = (self.lost_since_s is not None
                         and now_s - self.lost_since_s <= self.cfg.resume_after_loss_s)
            if inputs_ok and short_gap:
                self._set(OperatorState.TELEOP)
                self.lost_since_s = None
                st = self.state
            else:
                if inputs_ok and self.hold_reason != "realign":
                    self.hold_reason = "realign"   # back, but too late: the operator re-aligns first
                    self.last_error = f"{self.arm}: input lost too long; press init (or clutch) to re-align"
                return None

        if st == OperatorState.TELEOP:
            if not inputs_ok:
                self.lost_since_s = now_s
                self._set(OperatorState.HOLD, why_not)
                events.append(f"{self.arm}: hold ({why_not})")
                return None
            if align_held:    # clutch
                recent = self.q_cmd is not None and not self._paused(now_s)
                self.q_hold = self.q_cmd.copy() if recent else q_meas
                self.mapping.align(sample.wrist, fk(self.q_hold))
                self._set(OperatorState.ALIGNED, "clutch")
                return None
            T_goal = self.pose_filter(self.mapping.target(sample.wrist), now_s)
            sol = self.ik.solve(T_goal, self.q_ik if self.q_ik is not None else q_meas)
            self.last_ik = sol
            if not sol.converged:
                if sol.pos_err_m > self.cfg.clamp_pos_m or sol.rot_err_rad > self.cfg.clamp_rot_rad:
                    self.unreachable_ticks += 1
                    self.hold_reason = "unreachable"
                    return None   # hold; the warm start stays at the last good solution
                self.clamped_ticks += 1
                self.hold_reason = "clamped"
            else:
                self.hold_reason = ""
            self.q_ik = sol.q
            return self._command(sol.q, q_meas, now_s, dt_s)
        return None


class DualTeleopSession:
    """Two operators, one shared episode, the recorder (see the module docstring)."""

    def __init__(self, cfg: TeleopConfig, calibration: CalibrationConfig | None = None, *,
                 pose_sources: dict[str, PoseSource] | None = None,
                 button_sources: dict[str, ButtonSource] | None = None, recorder=None):
        cfg.validate()
        self.cfg = cfg
        self.calibration = calibration or load_calibration(cfg.calibration_file)
        self.calibration.validate(cfg.safety)
        self.arms = [a for a in contract.ARMS if cfg.operator(a).enabled]
        pose_sources = dict(pose_sources or {})
        button_sources = dict(button_sources or {})
        for arm in self.arms:
            if arm not in pose_sources:
                from teleop.avp import AvpPoseSource

                pose_sources[arm] = AvpPoseSource(cfg.operator(arm).avp)
            if arm not in button_sources:
                op = cfg.operator(arm)
                button_sources[arm] = make_button_source(op.buttons_source, op.joycon, op.button_script)
        self.operators = {arm: OperatorTeleop(arm, cfg, cfg.operator(arm), self.calibration.arm(arm),
                                              pose_sources[arm], button_sources[arm]) for arm in self.arms}
        self._lock = threading.Lock()
        self._q: dict[str, tuple[np.ndarray, float]] = {}
        self._g: dict[str, tuple[float, float]] = {}
        self._w: dict[str, tuple[np.ndarray, float]] = {}
        self._estop = False
        self._cell_hold: set[str] = set()
        self._cell_hold_reason = ""
        self._last_tick_s: float | None = None
        self.last_error = ""
        self.dropped_frames = 0
        self.episode_frames = 0
        self.episodes_saved = 0
        self.last_report = None
        self._recording = False
        self._pending: concurrent.futures.Future | None = None
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="teleop-save")
        if recorder is None and cfg.record:
            from ate_policy.recording.recorder import EpisodeRecorder

            rc = cfg.recorder
            if cfg.task:
                rc.task = cfg.task
            if not rc.task:
                raise UserError("recording needs a task instruction: set teleop.yaml `task` (the node sets "
                                "it from task:=, tasks/<task>.yaml) or record: false")
            recorder = EpisodeRecorder(rc)
        self.recorder = recorder
        self.episodes = recorder.num_episodes if recorder is not None else 0

    # --- lifecycle ------------------------------------------------------------------------------------------
    def connect(self, timeout_s: float | None = None) -> None:
        """Open every pose and button source; the first failure raises (a ``UserError`` naming the device).

        All headsets first, then all button sources: a scripted source's clock starts at ``open()``, so both
        operators' scripts count from the moment the whole session is connected, however long the second
        headset took to answer."""
        for op in self.operators.values():
            op.pose_source.connect(timeout_s)
        for op in self.operators.values():
            op.button_source.open()

    def close(self) -> None:
        self.wait_idle()
        for op in self.operators.values():
            for closer in (op.pose_source.close, op.button_source.close):
                try:
                    closer()
                except Exception as e:  # noqa: BLE001  (one device failing to close must not block the rest)
                    log.warning("[%s] close failed: %s", op.arm, e)
        if self.recorder is not None:
            if self._recording:
                self.recorder.discard()
                self._recording = False
            self.recorder.close()
        self._worker.shutdown(wait=True)

    def wait_idle(self, timeout_s: float | None = 120.0) -> None:
        """Wait for a save/discard in flight (tests, shutdown)."""
        fut = self._pending
        if fut is not None:
            concurrent.futures.wait([fut], timeout=timeout_s)
            self._collect()

    # --- inputs (any thread) --------------------------------------------------------------------------------
    def put_joint_state(self, arm: str, q_rad, stamp_s: float) -> None:
        q = np.asarray(q_rad, dtype=float).reshape(-1)
        if q.shape != (contract.N_ARM_JOINTS,) or not np.all(np.isfinite(q)):
            raise ValueError(f"{arm} joint state must be {contract.N_ARM_JOINTS} finite angles (rad), "
                             f"got {q_rad!r}")
        with self._lock:
            self._q[self._arm(arm)] = (q, float(stamp_s))

    def put_gripper_state(self, arm: str, opening: float, stamp_s: float) -> None:
        with self._lock:
            self._g[self._arm(arm)] = (float(opening), float(stamp_s))

    def put_wrench(self, arm: str, wrench, stamp_s: float) -> None:
        w = np.asarray(wrench, dtype=float).reshape(-1)
        if w.shape != (6,):
            raise ValueError(f"{arm} wrench must have 6 values (fx fy fz tx ty tz), got {w.shape}")
        with self._lock:
            self._w[self._arm(arm)] = (w, float(stamp_s))

    def put_image(self, camera: str, image: np.ndarray, stamp_s: float) -> None:
        if self.recorder is None:
            return
        rc = getattr(self.recorder, "cfg", self.cfg.recorder)   # an injected recorder has its own image size
        h, w = rc.image_height, rc.image_width
        if image.shape[:2] != (h, w):
            import cv2

            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        self.recorder.put_image(camera, np.ascontiguousarray(image, dtype=np.uint8), stamp_s)

    def set_estop(self, latched: bool) -> None:
        """The cell's e-stop state (/estop); while latched nothing is commanded and every operator is idle."""
        with self._lock:
            self._estop = bool(latched)

    def set_cell_hold(self, arms, reason: str = "") -> None:
        """The arms the cell supervisor holds (/cell/hold). A held arm's operator goes to idle and nothing is
        commanded for it; an episode being recorded is discarded (it holds a refusal or a fault). After the
        operator resumed the cell (/cell/resume) each operator re-aligns (init) before the arm moves again."""
        with self._lock:
            self._cell_hold = {self._arm(a) for a in arms}
            self._cell_hold_reason = reason

    @staticmethod
    def _arm(arm: str) -> str:
        if arm not in contract.ARMS:
            raise ValueError(f"unknown arm {arm!r}; expected one of {contract.ARMS}")
        return arm

    # --- episode --------------------------------------------------------------------------------------------
    def _collect(self) -> None:
        fut = self._pending
        if fut is None or not fut.done():
            return
        self._pending = None
        try:
            report = fut.result()
        except Exception as e:  # noqa: BLE001  (reported to the operators, never kills the control loop)
            self.last_error = f"episode save failed: {e}"
            log.error(self.last_error)
            return
        if report is not None:
            self.last_report = report
            self.dropped_frames += report.dropped_frames
            if report.saved:
                self.episodes_saved += 1
            else:
                self.last_error = f"episode not saved: {report.reason}"
        self.episodes = self.recorder.num_episodes

    def _start_episode(self, events: list[str]) -> None:
        if self.recorder is None:
            self.last_error = "recording is off (record: false)"
            return
        if self._pending is not None:
            self.last_error = "the previous episode is still being saved"
            return
        needed = self.arms if self.cfg.require_both_arms else []
        in_teleop = [a for a in self.arms if self.operators[a].state == OperatorState.TELEOP]
        missing = [a for a in needed if a not in in_teleop]
        if missing or not in_teleop:
            self.last_error = f"cannot record: {', '.join(missing or self.arms)} not in teleop"
            return
        try:
            self.recorder.start_episode(self.cfg.task or None)
        except (RuntimeError, ValueError) as e:
            self.last_error = f"cannot record: {e}"
            return
        self._recording = True
        self.episode_frames = 0
        events.append("recording started")

    def _stop_episode(self, events: list[str], save: bool) -> None:
        self._recording = False
        rec = self.recorder
        self._pending = self._worker.submit(rec.stop_and_save if save else rec.discard)
        events.append("episode saving" if save else "episode discarded")

    # --- the 20 Hz tick -------------------------------------------------------------------------------------
    def tick(self, now_s: float) -> TickResult:
        events: list[str] = []
        dt = (now_s - self._last_tick_s) if self._last_tick_s is not None else 1.0 / self.cfg.rate_hz
        dt = dt if dt > 0 else 1.0 / self.cfg.rate_hz
        self._last_tick_s = now_s
        self._collect()
        with self._lock:
            q = {a: v[0] for a, v in self._q.items()}
            g = {a: v[0] for a, v in self._g.items()}
            estop_latched = self._estop
            cell_hold = set(self._cell_hold)
        evs = {arm: op.read_buttons() for arm, op in self.operators.items()}
        pressed = set().union(*(e.pressed for e in evs.values()))
        estop_requested = "estop" in pressed
        if estop_requested:
            events.append("e-stop pressed")
            with self._lock:
                self._estop = True
            estop_latched = True
        targets: dict[str, np.ndarray | None] = {a: None for a in contract.ARMS}
        grippers: dict[str, float | None] = {a: None for a in contract.ARMS}
        if estop_latched:
            if self._recording:
                self._stop_episode(events, save=False)
            for op in self.operators.values():
                if op.state != OperatorState.IDLE:
                    op.reset_to_idle("e-stop")
                op.gripper_target = None
        else:
            if "record" in pressed:
                if self._recording:
                    self._stop_episode(events, save=True)
                else:
                    self._start_episode(events)
            if "discard" in pressed and self._recording:
                self._stop_episode(events, save=False)
            if cell_hold and self._recording:
                self._stop_episode(events, save=False)
                self.last_error = f"cell hold ({self._cell_hold_reason}): episode discarded"
            for arm, op in self.operators.items():
                if arm in cell_hold:   # the supervisor holds this arm: no command until resumed and re-aligned
                    if op.state != OperatorState.IDLE:
                        op.reset_to_idle("cell hold")
                        events.append(f"{arm}: cell hold ({self._cell_hold_reason}); re-align after /cell/resume")
                    op.gripper_target = None
                    continue
                targets[arm] = op.step(now_s, dt, evs[arm], q.get(arm), g.get(arm), self._recording, events)
                grippers[arm] = op.gripper_target
        if self._recording:
            try:
                self._record(now_s, targets, grippers)
            except Exception as e:  # noqa: BLE001  (a recorder fault must not stop the arms' control loop)
                log.exception("recording failed")
                self.last_error = f"recording failed, episode discarded: {e}"
                self._stop_episode(events, save=False)
        return TickResult(targets, grippers, estop_requested, self.status(), events)

    def _record(self, now_s: float, targets, grippers) -> None:
        with self._lock:
            q, g, w = dict(self._q), dict(self._g), dict(self._w)
        if any(a not in q or a not in g for a in contract.ARMS):
            self.recorder.tick(np.zeros(contract.ACTION_DIM), now_s)   # "waiting" until every state arrived
            return
        state = np.zeros(contract.STATE_DIM)
        action = np.zeros(contract.ACTION_DIM)
        effort = np.zeros(contract.EFFORT_DIM)
        for i, arm in enumerate(contract.ARMS):
            s = contract.arm_slice(arm)
            q_meas, g_meas = q[arm][0], g[arm][0]
            state[s] = np.append(q_meas, g_meas)
            op = self.operators.get(arm)
            q_act = targets.get(arm)
            if q_act is None:   # holding: the action is what the arm was last told (or where it is)
                q_act = op.q_cmd if op is not None and op.q_cmd is not None else q_meas
            g_act = grippers.get(arm)
            action[s] = np.append(q_act, g_meas if g_act is None else g_act)
            if arm in w:
                effort[6 * i:6 * i + 6] = w[arm][0]
        # The state stream's capture time is that of its oldest part (docs/data.md).
        capture = min([q[a][1] for a in contract.ARMS] + [g[a][1] for a in contract.ARMS])
        self.recorder.put_state(state, effort, capture)
        res = self.recorder.tick(action, now_s)
        if res in ("recorded", "stale"):
            self.episode_frames += 1
        elif res == "dropped":
            self.dropped_frames += 1

    # --- status ---------------------------------------------------------------------------------------------
    def status(self) -> dict:
        def reported(op: OperatorTeleop) -> str:
            if op.state == OperatorState.TELEOP and self._recording:
                return OperatorState.RECORDING.value
            return op.state.value

        errors = [self.last_error] + [op.last_error for op in self.operators.values()]
        st = {
            "state": {arm: reported(op) for arm, op in self.operators.items()},
            "hold_reason": {arm: op.hold_reason for arm, op in self.operators.items()},
            "recording": self._recording,
            "saving": self._pending is not None,
            "episodes": self.episodes,
            "episode_frames": self.episode_frames,
            "dropped_frames": self.dropped_frames,
            "estop": self._estop,
            "cell_hold": sorted(self._cell_hold),
            "last_error": next((e for e in errors if e), ""),
            "stream_age_ms": {arm: (round(op.last_sample.age_s * 1000.0, 1) if op.last_sample else None)
                              for arm, op in self.operators.items()},
            "step_limited_ticks": {arm: op.step_limited_ticks for arm, op in self.operators.items()},
            "unreachable_ticks": {arm: op.unreachable_ticks for arm, op in self.operators.items()},
            "gripper_target": {arm: op.gripper_target for arm, op in self.operators.items()},
        }
        return st

    def clear_errors(self) -> None:
        self.last_error = ""
        for op in self.operators.values():
            op.last_error = ""

