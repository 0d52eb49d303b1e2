"""THE inverse kinematics of one RM75-6s, with Pinocchio: the teleop's per-tick IK and the sim demonstrator's.

``PinocchioIK.solve(T_target, q_seed)`` runs a few damped-least-squares iterations on the model of
``ate_description.kinematics.build_pinocchio_model()`` (the one kinematics source, the same DH table as the sim):

* **warm start**: the seed is the previous tick's solution, so a 20 Hz teleop target (a few mm away) converges
  in 1-3 iterations; a per-iteration step cap keeps the solution on the seed's branch (no elbow/wrist flips);
* **singularities**: the damping grows as the smallest singular value of the Jacobian falls below
  ``singular_sigma`` (Maciejewski-Klein), so joint steps stay bounded where a plain pseudo-inverse explodes;
  the solution is then approximate and reported with ``near_singular``;
* **joint limits**: the contract's limits shrunk by the safety layer's margin
  (``SafetyConfig.joint_margin_rad``, so the arm driver never refuses an IK output); a joint that would leave
  its range is clamped and locked for the rest of the iteration (its Jacobian column removed, the other joints
  take over the task): the returned joints are *always* inside the limits;
* **unreachable targets**: the solver returns the closest configuration it found (``converged=False`` with its
  residual); the caller decides to clamp (use it) or hold (see ``teleop.session``).

``solve(T_target, q_seed, tool=None)`` targets the flange, or the frame ``flange @ tool`` (the demonstrator aims
the gripper's grasp centre). Only the IK lives here; the teleop's joint-space filter and step limit are in
``teleop.filters``. Pinocchio is imported when a solver is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ate_description.limits import SafetyConfig
from ate_description.contract import JOINT_LIMITS_RAD, N_ARM_JOINTS
from ate_description.kinematics import FLANGE_FRAME, build_pinocchio_model, inv_transform


IK_EXTRA_MARGIN_RAD = 1e-4


@dataclass
class IKConfig:
    # Iterations per call. A warm-started teleop target converges in 1-3; the cap bounds the worst-case time
    # of a tick (an unreachable target uses them all).
    max_iter: int = 15
    # Convergence: 0.1 mm / 0.05 deg, an order below what the issue asks of the IK (1 mm / 0.5 deg).
    pos_tol_m: float = 1e-4
    rot_tol_rad: float = math.radians(0.05)
    # Damping at a singularity; it ramps in (quadratically) as the smallest singular value falls below
    # singular_sigma, so away from singularities the step is the exact least-squares one.
    damping: float = 0.05
    singular_sigma: float = 0.04
    # Largest joint change per iteration: keeps the solution on the seed's branch (no elbow or wrist flip).
    max_dq_per_iter_rad: float = 0.2
    # Distance inside the joint limits: the safety layer's margin (drivers.yaml `safety`) plus
    # IK_EXTRA_MARGIN_RAD, so float rounding never puts a joint outside them. load_teleop_config raises it to
    # the loaded safety margin + the extra; the default is the default margin's.
    limit_margin_rad: float = SafetyConfig().joint_margin_rad + IK_EXTRA_MARGIN_RAD
    # Pull of the redundant 7th DoF towards the seed posture in the Jacobian's null space (0 = off); keeps
    # the elbow from drifting over a long teleop session without disturbing the flange pose.
    posture_gain: float = 0.0


@dataclass
class IKSolution:
    q: np.ndarray            # (7,) joints, always inside the limits
    converged: bool          # pose within pos_tol_m / rot_tol_rad
    pos_err_m: float
    rot_err_rad: float
    iterations: int
    sigma_min: float         # smallest singular value of the Jacobians stepped from (the seed's at least)
    near_singular: bool      # sigma_min below IKConfig.singular_sigma: the step was damped
    at_limit: tuple[int, ...]  # joints (0-based) clamped at a limit


class PinocchioIK:
    """Damped-least-squares IK of the RM75-6s flange (see the module docstring)."""

    def __init__(self, config: IKConfig | None = None):
        import pinocchio as pin

        self.pin = pin
        self.cfg = config or IKConfig()
        if self.cfg.max_iter < 1 or self.cfg.pos_tol_m <= 0 or self.cfg.rot_tol_rad <= 0:
            raise ValueError("IKConfig: max_iter >= 1 and positive tolerances required")
        self.model = build_pinocchio_model()
        self.data = self.model.createData()
        self.frame_id = self.model.getFrameId(FLANGE_FRAME)
        lim = np.asarray(JOINT_LIMITS_RAD) - self.cfg.limit_margin_rad
        self.q_min, self.q_max = -lim, lim
        self._world = pin.ReferenceFrame.LOCAL_WORLD_ALIGNED

    def fk(self, q) -> np.ndarray:
        """Flange pose (4x4) by Pinocchio; equals ``ate_description.kinematics.fk`` (tested)."""
        pin = self.pin
        pin.framesForwardKinematics(self.model, self.data, np.asarray(q, dtype=float))
        return self.data.oMf[self.frame_id].homogeneous.copy()

    def _error_and_jacobian(self, q: np.ndarray, p_t: np.ndarray, R_t: np.ndarray):
        pin = self.pin
        pin.computeJointJacobians(self.model, self.data, q)   # also runs forward kinematics
        pin.updateFramePlacements(self.model, self.data)
        M = self.data.oMf[self.frame_id]
        # Both errors in the base frame, matching the LOCAL_WORLD_ALIGNED Jacobian (flange origin velocity and
        # angular velocity in base coordinates).
        e = np.empty(6)
        e[:3] = p_t - M.translation
        e[3:] = pin.log3(R_t @ M.rotation.T)
        J = pin.getFrameJacobian(self.model, self.data, self.frame_id, self._world)
        return e, J

    def _damped_step(self, J: np.ndarray, e: np.ndarray):
        U, s, Vt = np.linalg.svd(J, full_matrices=False)
        sig = self.cfg.singular_sigma
        smin = float(s[-1])
        lam2 = 0.0 if smin >= sig else (self.cfg.damping ** 2) * (1.0 - (smin / sig) ** 2)
        dq = Vt.T @ ((s / (s * s + lam2)) * (U.T @ e))
        return dq, smin, U, s, Vt, lam2

    def solve(self, T_target: np.ndarray, q_seed, tool: np.ndarray | None = None) -> IKSolution:
        cfg = self.cfg
        T_target = np.asarray(T_target, dtype=float)
        if T_target.shape != (4, 4) or not np.all(np.isfinite(T_target)):
            raise ValueError("T_target must be a finite 4x4 transform")
        if tool is not None:   # aim flange @ tool at the target: the flange goes to target @ tool^-1
            T_target = T_target @ inv_transform(np.asarray(tool, dtype=float))
        q = np.asarray(q_seed, dtype=float).reshape(-1)
        if q.shape != (N_ARM_JOINTS,) or not np.all(np.isfinite(q)):
            raise ValueError(f"q_seed must be {N_ARM_JOINTS} finite joint angles, got {q_seed!r}")
        q = np.clip(q, self.q_min, self.q_max)
        q_rest = q.copy()
        p_t, R_t = T_target[:3, 3].copy(), T_target[:3, :3].copy()
        locked = np.zeros(N_ARM_JOINTS, dtype=bool)
        it = 0
        e, J = self._error_and_jacobian(q, p_t, R_t)
        smin = math.inf
        while True:
            pos_err, rot_err = math.sqrt(e[:3] @ e[:3]), math.sqrt(e[3:] @ e[3:])
            if (pos_err < cfg.pos_tol_m and rot_err < cfg.rot_tol_rad) or it >= cfg.max_iter:
                break
            it += 1
            locked[:] = False
            # At most two passes: joints that would cross a limit are clamped there and taken out of the task.
            for _ in range(2):
                Jl = J.copy()
                Jl[:, locked] = 0.0
                dq, s_now, U, s, Vt, lam2 = self._damped_step(Jl, e)
                smin = min(smin, s_now)
                if cfg.posture_gain > 0.0:
                    # Null-space projector of the damped pseudo-inverse: a posture pull that leaves the
                    # flange where it is.
                    Jpinv_J = Vt.T @ np.diag(s * s / (s * s + lam2)) @ Vt
                    dq += (np.eye(N_ARM_JOINTS) - Jpinv_J) @ (cfg.posture_gain * (q_rest - q))
                dq[locked] = 0.0
                n = float(np.max(np.abs(dq)))
                if n > cfg.max_dq_per_iter_rad:
                    dq *= cfg.max_dq_per_iter_rad / n
                q_new = q + dq
                out = ((q_new < self.q_min) | (q_new > self.q_max)) & ~locked
                if not out.any():
                    break
                locked |= out
            q = np.clip(q_new, self.q_min, self.q_max)
            e, J = self._error_and_jacobian(q, p_t, R_t)
        if it == 0:   # no step taken: the seed's Jacobian was never decomposed
            smin = float(np.linalg.svd(J, compute_uv=False)[-1])
        at_limit = tuple(int(i) for i in np.flatnonzero((q <= self.q_min + 1e-9) | (q >= self.q_max - 1e-9)))
        return IKSolution(q=q, converged=pos_err < cfg.pos_tol_m and rot_err < cfg.rot_tol_rad,
                          pos_err_m=pos_err, rot_err_rad=rot_err, iterations=it, sigma_min=smin,
                          near_singular=smin < cfg.singular_sigma, at_limit=at_limit)
