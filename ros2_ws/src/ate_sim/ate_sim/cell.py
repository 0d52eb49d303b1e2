"""The simulated cell: one MuJoCo model + data shared by every sim backend, its controllers and its clocks.

Controllers behave like the real ones:

* Arm joints: each streamed target is clipped to the joint limits; a setpoint generator moves towards it no
  faster than the contract's max joint speed and with bounded acceleration (like the RealMan controller's
  trajectory planner), and stiff position servos (PD + velocity feed-forward, gravity compensated) track the
  setpoint. Limits are therefore never commanded, whatever arrives.
* Gripper: opening fraction 0..1 (120 mm stroke), rate limited to the OmniPicker's full-stroke time,
  force-limited fingers.
* Grasps: when both fingers touch a graspable object while closing, a weld holds it until the gripper opens.
  This stands in for friction grasping, which MuJoCo can do but which would make scripted demonstrations
  fragile for no gain in what the data teaches (the documented simplification).

Clocks: ``lockstep`` (default) - simulated time advances only in ``step()``, so slow CPU rendering costs wall
time only; ``realtime`` - a thread steps the physics at wall-clock pace for people watching. Every state and
frame is stamped with SIMULATED time (``sim_time``).
"""

from __future__ import annotations

import atexit
import threading
import time
from dataclasses import dataclass

import numpy as np

import ate_sim  # noqa: F401  (chooses the GL backend before mujoco is imported)
import mujoco

from ate_description import contract
from ate_sim import render as _render
from ate_sim.model import FINGER_MAX_M, TCP_OFFSET_M, CellConfig, SceneSpec, build_mjcf

JOINT_MAX_ACC_RAD_S2 = 12.0
"""Setpoint acceleration bound (rad/s^2): the controller's planner never asks for a velocity step."""

HOME_Q = np.array([0.0, 0.2, 0.0, 1.7, 0.0, 1.25, 0.0])
"""Ready posture of both arms: elbow up, gripper pointing down about 0.3 m above the table."""


@dataclass
class _ArmCtl:
    target: np.ndarray
    setpoint: np.ndarray
    velocity: np.ndarray
    grip_target: float = 1.0
    grip_setpoint: float = 1.0
    grip_speed: float = 1.0   # fraction of the full-stroke speed
    grip_force: float = 1.0   # fraction of the max force


class SimCell:
    """The dual-arm cell. Thread-safe: every public method takes the cell's lock."""

    def __init__(self, task: str | None = None, cfg: CellConfig | None = None, seed: int | None = 0,
                 clock: str = "lockstep", realtime_factor: float = 1.0):
        from ate_sim import scenes

        if clock not in ("lockstep", "realtime"):
            raise ValueError(f"clock must be 'lockstep' or 'realtime', got {clock!r}")
        self.cfg = cfg or CellConfig()
        self.scene = scenes.make_scene(task) if task else None
        spec = self.scene.spec() if self.scene else SceneSpec()
        self.graspable = list(spec.graspable)
        self.xml = build_mjcf(self.cfg, spec)
        self.model = mujoco.MjModel.from_xml_string(self.xml)
        self.data = mujoco.MjData(self.model)
        self.lock = threading.RLock()
        self.clock = clock
        self.realtime_factor = realtime_factor
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        # GL contexts must be freed before the interpreter tears down the GL bindings.
        atexit.register(_close_renderers, self._renderers)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._index()
        self.rng = np.random.default_rng(seed)
        self.reset(seed)

    # --- ids -----------------------------------------------------------------------------------------------------
    def _index(self):
        m = self.model
        self.qadr, self.vadr, self.act, self.base_body, self.flange_site, self.tcp_site = {}, {}, {}, {}, {}, {}
        self.finger_qadr, self.finger_vadr, self.grip_act, self.gripper_geoms, self.finger_geoms = {}, {}, {}, {}, {}
        self.gripper_body = {}
        for arm in contract.ARMS:
            joints = [m.joint(f"{arm}_joint{i}").id for i in range(1, contract.N_ARM_JOINTS + 1)]
            self.qadr[arm] = np.array([m.jnt_qposadr[j] for j in joints])
            self.vadr[arm] = np.array([m.jnt_dofadr[j] for j in joints])
            self.act[arm] = np.array([m.actuator(f"{arm}_joint{i}").id for i in range(1, contract.N_ARM_JOINTS + 1)])
            self.base_body[arm] = m.body(f"{arm}_base").id
            self.flange_site[arm] = m.site(f"{arm}_flange").id
            self.tcp_site[arm] = m.site(f"{arm}_tcp").id
            fa = m.joint(f"{arm}_finger_a").id
            self.finger_qadr[arm] = m.jnt_qposadr[fa]
            self.finger_vadr[arm] = m.jnt_dofadr[fa]
            self.grip_act[arm] = m.actuator(f"{arm}_gripper").id
            self.finger_geoms[arm] = (m.geom(f"{arm}_finger_a").id, m.geom(f"{arm}_finger_b").id)
            self.gripper_geoms[arm] = set(self.finger_geoms[arm]) | {m.geom(f"{arm}_palm").id}
            self.gripper_body[arm] = m.body(f"{arm}_gripper").id
        self.welds = {(arm, obj): m.equality(f"{arm}_holds_{obj}").id
                      for arm in contract.ARMS for obj in self.graspable}
        self.obj_body = {obj: m.body(obj).id for obj in self.graspable}
        self.q_lo = np.array([-x for x in contract.JOINT_LIMITS_RAD])
        self.q_hi = np.array(contract.JOINT_LIMITS_RAD)
        self.v_max = np.array(contract.JOINT_MAX_SPEED_RAD_S)

    # --- lifecycle -------------------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, q0: np.ndarray | None = None) -> None:
        """Home posture, grippers open, scene objects at freshly randomised poses (``seed``), time 0."""
        with self.lock:
            if seed is not None:
                self.rng = np.random.default_rng(seed)
            mujoco.mj_resetData(self.model, self.data)
            q0 = HOME_Q if q0 is None else np.asarray(q0, float)
            self.ctl = {}
            for arm in contract.ARMS:
                self.data.qpos[self.qadr[arm]] = q0
                self.data.qpos[self.finger_qadr[arm]] = FINGER_MAX_M
                self.data.qpos[self.model.jnt_qposadr[self.model.joint(f"{arm}_finger_b").id]] = FINGER_MAX_M
                self.ctl[arm] = _ArmCtl(q0.copy(), q0.copy(), np.zeros(contract.N_ARM_JOINTS))
            self.data.eq_active[:] = 0
            self._held: dict[str, str | None] = {arm: None for arm in contract.ARMS}
            self._n_steps = 0
            # The finger coupling is the only always-on equality.
            for i in range(self.model.neq):
                if self.model.eq_type[i] == mujoco.mjtEq.mjEQ_JOINT:
                    self.data.eq_active[i] = 1
            if self.scene:
                self.scene.reset(self, self.rng)
            self._apply_ctrl()
            mujoco.mj_forward(self.model, self.data)

    def close(self) -> None:
        self.stop_realtime()
        _close_renderers(self._renderers)

    # --- clocks ----------------------------------------------------------------------------------------------------
    @property
    def sim_time(self) -> float:
        return float(self.data.time)

    def step(self, duration_s: float = contract.PERIOD_S) -> float:
        """Advance simulated time by ``duration_s`` (rounded to whole physics steps); returns the new time."""
        n = max(1, int(round(duration_s / self.model.opt.timestep)))
        with self.lock:
            for _ in range(n):
                self._physics_step()
            return self.sim_time

    def start_realtime(self) -> None:
        """Step the physics in a thread at wall-clock pace (times ``realtime_factor``)."""
        if self._thread is not None:
            return
        self._stop.clear()

        def run():
            t_wall0, t_sim0 = time.monotonic(), self.sim_time
            while not self._stop.is_set():
                ahead = (self.sim_time - t_sim0) / self.realtime_factor - (time.monotonic() - t_wall0)
                if ahead > 0:
                    time.sleep(min(ahead, 0.01))
                    continue
                with self.lock:
                    for _ in range(5):  # 10 ms of physics per lock hold: readers get in between
                        self._physics_step()

        self._thread = threading.Thread(target=run, name="sim-realtime", daemon=True)
        self._thread.start()

    def stop_realtime(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2.0)
            self._thread = None

    # --- control ---------------------------------------------------------------------------------------------------
    def set_joint_targets(self, arm: str, q_rad) -> None:
        q = np.asarray(q_rad, dtype=float).reshape(-1)
        if q.shape != (contract.N_ARM_JOINTS,):
            raise ValueError(f"{arm}: expected {contract.N_ARM_JOINTS} joint targets, got shape {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"{arm}: joint targets must be finite, got {q}")
        with self.lock:
            self.ctl[arm].target = np.clip(q, self.q_lo, self.q_hi)

    def hold(self, arm: str) -> None:
        """Stop where the arm is now (the controller's fastest stop): target = current setpoint, velocity 0."""
        with self.lock:
            c = self.ctl[arm]
            c.target = c.setpoint.copy()
            c.velocity[:] = 0.0

    def set_gripper(self, arm: str, opening: float, force: float = 1.0, speed: float = 1.0) -> None:
        vals = np.array([opening, force, speed], dtype=float)
        if not np.all(np.isfinite(vals)):
            raise ValueError(f"{arm} gripper: command must be finite, got {vals}")
        with self.lock:
            c = self.ctl[arm]
            c.grip_target = float(np.clip(opening, 0.0, 1.0))
            c.grip_force = float(np.clip(force, 0.05, 1.0))
            c.grip_speed = float(np.clip(speed, 0.05, 1.0))

    def _apply_ctrl(self):
        # (np.minimum/np.maximum rather than np.clip: this runs every 2 ms step and clip's overhead shows.)
        ff_gain = self.cfg.joint_kv / self.cfg.joint_kp
        for arm in contract.ARMS:
            c = self.ctl[arm]
            # Velocity feed-forward through the position command: kp*(sp + kv/kp*v - q) - kv*qd
            # = kp*(sp - q) + kv*(v - qd), so the servo follows a moving setpoint without lag.
            ff = c.setpoint + ff_gain * c.velocity
            self.data.ctrl[self.act[arm]] = np.minimum(np.maximum(ff, self.q_lo), self.q_hi)
            self.data.ctrl[self.grip_act[arm]] = c.grip_setpoint * FINGER_MAX_M
            f = 2 * self.cfg.gripper_force_n * c.grip_force
            self.model.actuator_forcerange[self.grip_act[arm]] = (-f, f)

    def _advance_setpoints(self, dt: float):
        a_dt = JOINT_MAX_ACC_RAD_S2 * dt
        for arm in contract.ARMS:
            c = self.ctl[arm]
            err = c.target - c.setpoint
            if not (err.any() or c.velocity.any()):
                pass  # at rest on its target: nothing to plan
            else:
                # Fastest approach that can still stop at the target within the acceleration bound; both
                # bounds lie within +-v_max, so v does too.
                v_des = np.copysign(np.minimum(self.v_max, np.sqrt(2.0 * JOINT_MAX_ACC_RAD_S2 * np.abs(err))), err)
                v = np.minimum(np.maximum(v_des, c.velocity - a_dt), c.velocity + a_dt)
                step = v * dt
                # Never step past the target (discretisation of the braking curve): land on it, keeping the
                # velocity of that last step so a streamed, moving target is followed smoothly.
                over = np.abs(step) >= np.abs(err)
                if over.any():
                    step[over] = err[over]
                    v[over] = err[over] / dt
                c.setpoint = np.minimum(np.maximum(c.setpoint + step, self.q_lo), self.q_hi)
                c.velocity = v
            g_rate = c.grip_speed * dt / self.cfg.gripper_time_s
            c.grip_setpoint += min(max(c.grip_target - c.grip_setpoint, -g_rate), g_rate)

    def _physics_step(self):
        self._advance_setpoints(self.model.opt.timestep)
        self._apply_ctrl()
        mujoco.mj_step(self.model, self.data)
        self._n_steps += 1
        # Grasp bookkeeping every 5th step (10 ms): a gripper closes over 0.6 s, so nothing is missed.
        if self.graspable and self._n_steps % 5 == 0:
            self._update_grasps()

    # --- grasps ----------------------------------------------------------------------------------------------------
    def held_by(self, arm: str) -> str | None:
        """The object ``arm``'s gripper holds (its weld is on), or None."""
        return self._held[arm]

    def _update_grasps(self):
        d = self.data
        g1 = g2 = None
        for arm in contract.ARMS:
            c = self.ctl[arm]
            held = self.held_by(arm)
            if held is not None:
                if c.grip_target > self.gripper_opening(arm) + 0.02:  # opening: let go
                    d.eq_active[self.welds[(arm, held)]] = 0
                    self._held[arm] = None
                continue
            if c.grip_target >= c.grip_setpoint + 1e-9 and c.grip_target > 0.5:
                continue  # not closing: nothing to grasp (the common case; keeps stepping cheap)
            if g1 is None:
                g1, g2 = d.contact.geom1[:d.ncon], d.contact.geom2[:d.ncon]
            fa, fb = self.finger_geoms[arm]
            for obj, b in self.obj_body.items():
                if obj in self._held.values():
                    continue
                on_obj = (self.model.geom_bodyid[g1] == b) | (self.model.geom_bodyid[g2] == b)
                touches_a = np.any(on_obj & ((g1 == fa) | (g2 == fa)))
                touches_b = np.any(on_obj & ((g1 == fb) | (g2 == fb)))
                if touches_a and touches_b:  # closed on it from both sides
                    self._weld(arm, obj)
                    break

    def _weld(self, arm: str, obj: str):
        """Switch on the weld arm->obj at the current relative pose (no jump)."""
        d, m = self.data, self.model
        eid = self.welds[(arm, obj)]
        b1, b2 = self.gripper_body[arm], self.obj_body[obj]
        R1, p1 = d.xmat[b1].reshape(3, 3), d.xpos[b1]
        R2, p2 = d.xmat[b2].reshape(3, 3), d.xpos[b2]
        rel_p = R1.T @ (p2 - p1)
        rel_q = np.zeros(4)
        mujoco.mju_mat2Quat(rel_q, (R1.T @ R2).reshape(9))
        m.eq_data[eid, 0:3] = 0.0          # anchor at body2's origin
        m.eq_data[eid, 3:6] = rel_p        # body2 position in body1's frame
        m.eq_data[eid, 6:10] = rel_q       # body2 orientation in body1's frame
        m.eq_data[eid, 10] = 1.0           # torque scale
        d.eq_active[eid] = 1
        self._held[arm] = obj

    # --- state -----------------------------------------------------------------------------------------------------
    def joint_positions(self, arm: str) -> np.ndarray:
        with self.lock:
            return self.data.qpos[self.qadr[arm]].copy()

    def joint_velocities(self, arm: str) -> np.ndarray:
        with self.lock:
            return self.data.qvel[self.vadr[arm]].copy()

    def setpoint(self, arm: str) -> np.ndarray:
        with self.lock:
            return self.ctl[arm].setpoint.copy()

    def _site_in_base(self, arm: str, site: int) -> np.ndarray:
        d = self.data
        B = np.eye(4)
        B[:3, :3] = d.xmat[self.base_body[arm]].reshape(3, 3)
        B[:3, 3] = d.xpos[self.base_body[arm]]
        T = np.eye(4)
        T[:3, :3] = d.site_xmat[site].reshape(3, 3)
        T[:3, 3] = d.site_xpos[site]
        return np.linalg.inv(B) @ T

    def flange_pose(self, arm: str) -> np.ndarray:
        """Flange pose (4x4) in the arm's base frame (what the real controller reports)."""
        with self.lock:
            return self._site_in_base(arm, self.flange_site[arm])

    def base_pose(self, arm: str) -> np.ndarray:
        """Arm base pose (4x4) in the world frame."""
        with self.lock:
            B = np.eye(4)
            B[:3, :3] = self.data.xmat[self.base_body[arm]].reshape(3, 3)
            B[:3, 3] = self.data.xpos[self.base_body[arm]]
            return B

    def tcp_world(self, arm: str) -> np.ndarray:
        with self.lock:
            return self.data.site_xpos[self.tcp_site[arm]].copy()

    def gripper_opening(self, arm: str) -> float:
        """Measured opening fraction (0 closed, 1 open)."""
        with self.lock:
            return float(np.clip(self.data.qpos[self.finger_qadr[arm]] / FINGER_MAX_M, 0.0, 1.0))

    def gripper_state(self, arm: str) -> int:
        """0 arrived, 1 moving, 2 stalled (blocked by an object), as the OmniPicker reports."""
        with self.lock:
            c = self.ctl[arm]
            pos = self.gripper_opening(arm)
            if abs(pos - c.grip_target) < 0.02:
                return 0
            moving = abs(self.data.qvel[self.finger_vadr[arm]]) > 1e-3
            if not moving and abs(c.grip_setpoint - c.grip_target) < 1e-9:
                return 2
            return 1

    def wrench(self, arm: str) -> np.ndarray:
        """Force (N) and torque (Nm) the environment exerts on the gripper, in the flange frame, about the
        flange origin (what a flange force sensor reads), including the weight of a held object."""
        with self.lock:
            d, m = self.data, self.model
            f_w, t_w = np.zeros(3), np.zeros(3)
            p_f = d.site_xpos[self.flange_site[arm]]
            gg = self.gripper_geoms[arm]
            c6 = np.zeros(6)
            for k in range(d.ncon):
                con = d.contact[k]
                if con.geom1 in gg and con.geom2 in gg:
                    continue
                if con.geom1 in gg:
                    sign = -1.0  # the contact force acts on geom2; geom1 feels the reaction
                elif con.geom2 in gg:
                    sign = 1.0
                else:
                    continue
                mujoco.mj_contactForce(m, d, k, c6)
                frame = con.frame.reshape(3, 3)
                f = sign * frame.T @ c6[:3]
                f_w += f
                t_w += np.cross(con.pos - p_f, f)
            held = self.held_by(arm)
            if held is not None:
                b = self.obj_body[held]
                w = m.body_mass[b] * m.opt.gravity
                f_w += w
                t_w += np.cross(d.xipos[b] - p_f, w)
            R = d.site_xmat[self.flange_site[arm]].reshape(3, 3)
            return np.concatenate([R.T @ f_w, R.T @ t_w])

    # --- rendering -------------------------------------------------------------------------------------------------
    def render(self, camera: str, hw: tuple[int, int] = (224, 224)) -> np.ndarray:
        """RGB image (H, W, 3) uint8 of ``camera`` (a contract camera name) at the current sim time."""
        if camera not in contract.CAMERA_NAMES:
            raise ValueError(f"unknown camera {camera!r}; expected one of {contract.CAMERA_NAMES}")
        h, w = int(hw[0]), int(hw[1])
        mh, mw = self.cfg.max_image_hw
        if not (0 < h <= mh and 0 < w <= mw):
            raise ValueError(f"image size {h}x{w} outside 1..{mh} x 1..{mw} (CellConfig.max_image_hw)")
        with self.lock:
            r = self._renderers.get((h, w))
            if r is None:
                try:
                    r = mujoco.Renderer(self.model, height=h, width=w)
                except Exception as e:  # GL context creation failures come as several exception types
                    raise _render.render_error(e) from e
                r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.cfg.shadows
                r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
                self._renderers[(h, w)] = r
            r.update_scene(self.data, camera=camera)
            return r.render().copy()


def _close_renderers(renderers: dict) -> None:
    for r in renderers.values():
        try:
            r.close()
        except Exception:  # noqa: BLE001  (best effort at shutdown)
            pass
    renderers.clear()


def tcp_offset() -> np.ndarray:
    """Flange -> grasp centre transform (4x4) of the sim gripper, for IK on the grasp point."""
    T = np.eye(4)
    T[2, 3] = TCP_OFFSET_M
    return T
