"""Pinocchio IK of the RM75-6s: accuracy from warm starts, limits always kept, sane near singularities."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pinocchio")

from ate_drivers.safety import SafetyConfig  # noqa: E402
from ate_description.contract import JOINT_LIMITS_RAD  # noqa: E402
from ate_description.ik import IKConfig, PinocchioIK  # noqa: E402
from ate_description.kinematics import fk, rotation_exp, rotation_log  # noqa: E402

SAFE_LIM = np.asarray(JOINT_LIMITS_RAD) - SafetyConfig().joint_margin_rad


@pytest.fixture(scope="module")
def ik():
    return PinocchioIK()


def _errors(q, T):
    Tq = fk(q)
    rot = np.linalg.norm(rotation_log(Tq[:3, :3].T @ T[:3, :3]))
    return float(np.linalg.norm(Tq[:3, 3] - T[:3, 3])), math.degrees(rot)


def test_pinocchio_model_agrees_with_the_dh_fk(ik):
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = rng.uniform(-SAFE_LIM, SAFE_LIM)
        assert np.allclose(ik.fk(q), fk(q), atol=1e-12)


def test_reaches_random_reachable_poses_from_warm_starts(ik):
    """200 random well-conditioned configurations; seeds 0.1 rad off per joint (two ticks of fast motion):
    every solution within 1 mm / 0.5 deg (measured with the independent DH FK) and inside the limits."""
    rng = np.random.default_rng(0)
    n, worst_p, worst_r = 0, 0.0, 0.0
    while n < 200:
        q_true = rng.uniform(-SAFE_LIM * 0.95, SAFE_LIM * 0.95)
        if np.linalg.svd(ik_jacobian(ik, q_true), compute_uv=False)[-1] < 0.05:
            continue   # near-singular configurations have their own test
        n += 1
        T = fk(q_true)
        sol = ik.solve(T, q_true + rng.uniform(-0.1, 0.1, 7))
        p_err, r_err = _errors(sol.q, T)
        worst_p, worst_r = max(worst_p, p_err), max(worst_r, r_err)
        assert sol.converged
        assert np.all(np.abs(sol.q) <= SAFE_LIM)
    assert worst_p < 1e-3 and worst_r < 0.5, (worst_p, worst_r)


def ik_jacobian(ik, q):
    import pinocchio as pin

    pin.computeJointJacobians(ik.model, ik.data, q)
    pin.updateFramePlacements(ik.model, ik.data)
    return pin.getFrameJacobian(ik.model, ik.data, ik.frame_id, pin.ReferenceFrame.LOCAL_WORLD_ALIGNED)


def test_tracks_a_moving_target_in_one_or_two_iterations(ik):
    q = np.array([0.0, 0.2, 0.0, 1.7, 0.0, 1.25, 0.0])
    T0 = fk(q)
    iters = []
    for k in range(100):   # 5 s of a 5 cm circle at 20 Hz
        T = T0.copy()
        a = 2 * math.pi * k / 100
        T[:3, 3] += 0.05 * np.array([math.cos(a) - 1, math.sin(a), 0.0])
        sol = ik.solve(T, q)
        assert sol.converged
        iters.append(sol.iterations)
        q = sol.q
    assert max(iters) <= 3


def test_never_returns_out_of_limit_joints(ik):
    """Wild targets (far away, random orientations) from random seeds, including seeds at and beyond the
    limits."""
    rng = np.random.default_rng(1)
    for _ in range(150):
        T = np.eye(4)
        T[:3, :3] = rotation_exp(rng.normal(size=3))
        T[:3, 3] = rng.uniform(-1.5, 1.5, 3)
        seed = rng.uniform(-1.2, 1.2, 7) * np.asarray(JOINT_LIMITS_RAD)
        sol = ik.solve(T, seed)
        assert np.all(np.isfinite(sol.q))
        assert np.all(np.abs(sol.q) <= SAFE_LIM), sol.q


def test_unreachable_target_gives_the_closest_pose_and_says_so(ik):
    """A target 1.5 m away (the arm reaches ~0.9 m): every call reports not-converged with its true residual,
    and calls warm-started from the previous one (ticks) stretch the arm towards it until it stops
    improving."""
    q = np.array([0.0, 0.2, 0.0, 1.7, 0.0, 1.25, 0.0])
    T = fk(q)
    T[:3, 3] = [1.5, 0.0, 0.4]
    dist = [np.linalg.norm(fk(q)[:3, 3] - T[:3, 3])]
    for _ in range(20):
        sol = ik.solve(T, q)
        assert not sol.converged
        p_end = fk(sol.q)[:3, 3]
        assert sol.pos_err_m == pytest.approx(np.linalg.norm(p_end - T[:3, 3]), abs=1e-9)
        assert np.all(np.abs(sol.q) <= SAFE_LIM)
        dist.append(sol.pos_err_m)
        q = sol.q
    assert dist[1] < dist[0] and dist[-1] < dist[0] - 0.2      # stretched towards the target ...
    assert max(dist[-5:]) - min(dist[-5:]) < 1e-3                # ... and settled at the workspace's edge


def test_at_an_elbow_singularity_steps_stay_bounded_and_are_flagged(ik):
    """J4 = 0 stretches the elbow: the flange cannot move along the arm's line at once. A plain pseudo-inverse
    answers a small target offset in that direction with huge joint speeds; the damped solver flags the
    singularity, keeps the step bounded and does not make the pose worse."""
    q = np.array([0.3, 0.4, 0.2, 0.002, 0.5, 0.3, 0.2])     # 0.1 deg from straight
    T0 = fk(q)
    J = ik_jacobian(ik, q)
    U, sv, _ = np.linalg.svd(J)
    assert sv[-1] < 1e-3
    lost = U[:, -1]                       # task direction the arm cannot move in at q
    T = T0.copy()
    T[:3, 3] += 0.002 * lost[:3]
    T[:3, :3] = rotation_exp(0.02 * lost[3:]) @ T0[:3, :3]
    naive = np.linalg.pinv(J) @ np.concatenate([T[:3, 3] - T0[:3, 3], rotation_log(T[:3, :3] @ T0[:3, :3].T)])
    sol = PinocchioIK(IKConfig(max_iter=1)).solve(T, q)
    assert sol.near_singular
    step = np.max(np.abs(sol.q - q))
    assert np.max(np.abs(naive)) > 1.0                         # what an undamped solver would do
    assert step < 0.05
    before, after = _errors(q, T), _errors(sol.q, T)
    # the 6-D task error (m and rad, what the solver minimises) does not grow
    task_error = lambda e: math.hypot(e[0], math.radians(e[1]))  # noqa: E731
    assert task_error(after) <= task_error(before) + 1e-9


def test_passing_through_a_singularity_keeps_joint_motion_continuous(ik):
    """A target path straightening the elbow through J4 = 0: consecutive warm-started solutions never jump."""
    q_a = np.array([0.2, 0.5, 0.1, 0.3, 0.4, 0.3, 0.0])
    q_b = q_a.copy()
    q_b[3] = -0.3
    q = q_a.copy()
    for k in range(61):
        q_path = q_a + (q_b - q_a) * k / 60
        sol = ik.solve(fk(q_path), q)
        assert np.max(np.abs(sol.q - q)) < 0.25   # per 20 Hz tick; the joint filter then caps it further
        assert np.all(np.abs(sol.q) <= SAFE_LIM)
        p_err, _ = _errors(sol.q, fk(q_path))
        assert p_err < 0.01
        q = sol.q


def test_bad_input_is_refused(ik):
    with pytest.raises(ValueError):
        ik.solve(np.full((4, 4), np.nan), np.zeros(7))
    with pytest.raises(ValueError):
        ik.solve(np.eye(4), np.zeros(6))
