"""The sim model, the DH forward kinematics and the Pinocchio model are one arm (teleop/kinematics.py)."""

import numpy as np
import pytest

from ate_description import contract
from ate_description import kinematics as kin


def _random_q(rng, n):
    lim = np.asarray(contract.JOINT_LIMITS_RAD)
    return rng.uniform(-lim, lim, size=(n, contract.N_ARM_JOINTS))


@pytest.mark.parametrize("arm", contract.ARMS)
def test_sim_flange_pose_matches_dh_fk_for_random_joint_vectors(cell, arm):
    import mujoco

    rng = np.random.default_rng(1)
    for q in _random_q(rng, 50):
        cell.data.qpos[cell.qadr[arm]] = q
        mujoco.mj_kinematics(cell.model, cell.data)
        T_sim = cell.flange_pose(arm)
        T_dh = kin.fk(q)
        assert np.linalg.norm(T_sim[:3, 3] - T_dh[:3, 3]) < 1e-3
        assert np.linalg.norm(kin.rotation_log(T_sim[:3, :3] @ T_dh[:3, :3].T)) < 1e-3


def test_both_arms_are_the_same_model_side_by_side_not_mirrored(cell):
    left, right = cell.base_pose("left"), cell.base_pose("right")
    np.testing.assert_allclose(left[:3, :3], right[:3, :3])
    assert left[1, 3] > 0 > right[1, 3] and left[0, 3] == right[0, 3]


def test_sim_joint_ranges_are_the_contract_limits(cell):
    for arm in contract.ARMS:
        for i, lim in enumerate(contract.JOINT_LIMITS_RAD, start=1):
            np.testing.assert_allclose(cell.model.joint(f"{arm}_joint{i}").range, (-lim, lim))


def test_pinocchio_model_matches_dh_fk():
    pin = pytest.importorskip("pinocchio")
    model = kin.build_pinocchio_model()
    data = model.createData()
    fid = model.getFrameId(kin.FLANGE_FRAME)
    for q in _random_q(np.random.default_rng(2), 20):
        pin.framesForwardKinematics(model, data, q)
        np.testing.assert_allclose(data.oMf[fid].homogeneous, kin.fk(q), atol=1e-9)
    np.testing.assert_allclose(model.upperPositionLimit, contract.JOINT_LIMITS_RAD)


def test_jacobian_matches_finite_differences():
    q = _random_q(np.random.default_rng(3), 1)[0]
    J = kin.jacobian(q)
    eps = 1e-6
    for i in range(contract.N_ARM_JOINTS):
        dq = np.zeros(contract.N_ARM_JOINTS)
        dq[i] = eps
        dp = (kin.fk(q + dq)[:3, 3] - kin.fk(q - dq)[:3, 3]) / (2 * eps)
        np.testing.assert_allclose(J[:3, i], dp, atol=1e-6)


def test_ik_reaches_poses_of_nearby_joint_vectors():
    from ate_description.ik import IKConfig, PinocchioIK

    ik = PinocchioIK(IKConfig(max_iter=300))
    rng = np.random.default_rng(4)
    for q in _random_q(rng, 20) * 0.6:
        q_goal = np.clip(q + rng.uniform(-0.3, 0.3, size=7), ik.q_min, ik.q_max)
        res = ik.solve(kin.fk(q_goal), q)
        assert res.pos_err_m < 1e-3 and res.rot_err_rad < 1e-2
        assert np.all(res.q >= ik.q_min) and np.all(res.q <= ik.q_max)
        # With a tool: the flange @ tool frame lands on the target (the demonstrator aims the grasp centre).
        tool = kin.matrix_from_pose6([0.0, 0.0, 0.105, 0.0, 0.0, 0.0])
        res = ik.solve(kin.fk(q_goal) @ tool, q, tool=tool)
        np.testing.assert_allclose(kin.fk(res.q) @ tool, kin.fk(q_goal) @ tool, atol=2e-3)


def test_realman_pose_vector_round_trips():
    for q in _random_q(np.random.default_rng(5), 20):
        T = kin.fk(q)
        np.testing.assert_allclose(kin.matrix_from_pose6(kin.pose6_from_matrix(T)), T, atol=1e-9)


def test_bad_joint_vectors_are_refused():
    with pytest.raises(ValueError, match="7 joint angles"):
        kin.fk(np.zeros(6))
    with pytest.raises(ValueError, match="finite"):
        kin.fk([0, 0, np.nan, 0, 0, 0, 0])
