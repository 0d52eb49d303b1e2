"""Wrist -> flange mapping (paper appendix I): aligning never moves the arm; motions map as specified."""

from __future__ import annotations

import numpy as np
import pytest

from ate_description.kinematics import fk, rotation_exp, rotation_log
from teleop.mapping import FrameMapping, as_transform
from teleop_testkit import HOME_Q, aligned_wrist_rotation, calibration, wrist_pose


def _random_pose(rng) -> np.ndarray:
    return wrist_pose(rng.uniform(-1, 1, 3), rotation_exp(rng.normal(size=3)))


def test_right_after_alignment_the_target_is_the_arms_pose():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = FrameMapping(rotation_exp(rng.normal(size=3)))
        T_ee, T_wrist = _random_pose(rng), _random_pose(rng)
        m.align(T_wrist, T_ee)
        assert np.allclose(m.target(T_wrist), T_ee, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_10cm_wrist_motion_moves_the_flange_10cm_along_the_mapped_axis(axis):
    """With the hand held like the gripper (R_wrist T_rotation = R_flange) the mapped axis is the same base
    axis."""
    cal = calibration().left
    T_ee = fk(HOME_Q)
    T_w0 = wrist_pose([0.3, -0.2, 1.1], aligned_wrist_rotation(cal))
    m = FrameMapping(cal.rotation())
    m.align(T_w0, T_ee)
    T_w1 = T_w0.copy()
    T_w1[axis, 3] += 0.10
    d = m.target(T_w1)[:3, 3] - T_ee[:3, 3]
    expected = np.zeros(3)
    expected[axis] = 0.10
    assert np.allclose(d, expected, atol=1e-12)
    assert np.allclose(m.target(T_w1)[:3, :3], T_ee[:3, :3], atol=1e-12)   # translation only


def test_translation_maps_through_R_transform_for_any_hand_orientation():
    rng = np.random.default_rng(1)
    R_rot = rotation_exp(rng.normal(size=3))
    m = FrameMapping(R_rot)
    T_ee, T_w0 = _random_pose(rng), _random_pose(rng)
    m.align(T_w0, T_ee)
    R_transform = T_ee[:3, :3] @ R_rot.T @ T_w0[:3, :3].T
    for _ in range(5):
        d = rng.normal(size=3)
        d *= 0.10 / np.linalg.norm(d)
        T_w1 = T_w0.copy()
        T_w1[:3, 3] += d
        moved = m.target(T_w1)[:3, 3] - T_ee[:3, 3]
        assert np.allclose(moved, R_transform @ d, atol=1e-12)
        assert np.linalg.norm(moved) == pytest.approx(0.10)


def test_a_wrist_rotation_about_its_own_axis_turns_the_flange_about_the_matching_axis():
    cal = calibration().left
    m = FrameMapping(cal.rotation())
    T_ee = fk(HOME_Q)
    T_w0 = wrist_pose([0.3, -0.2, 1.1], aligned_wrist_rotation(cal))
    m.align(T_w0, T_ee)
    w_local = np.array([0.0, 0.0, 0.3])            # 0.3 rad about the wrist's own z
    T_w1 = T_w0.copy()
    T_w1[:3, :3] = T_w0[:3, :3] @ rotation_exp(w_local)
    T1 = m.target(T_w1)
    flange_local = rotation_log(T_ee[:3, :3].T @ T1[:3, :3])
    assert np.allclose(flange_local, cal.rotation().T @ w_local, atol=1e-12)
    assert np.allclose(T1[:3, 3], T_ee[:3, 3], atol=1e-12)   # rotating the wrist in place keeps the flange


def test_realigning_elsewhere_keeps_the_arm_where_it_is():
    """A clutch: the hand moved 30 cm while clutched; re-aligning at the arm's pose yields no jump, and later
    motion is relative to the new hand pose."""
    cal = calibration().right
    m = FrameMapping(cal.rotation())
    T_ee = fk(HOME_Q)
    T_w0 = wrist_pose([0.3, -0.2, 1.1], aligned_wrist_rotation(cal))
    m.align(T_w0, T_ee)
    T_w_far = T_w0.copy()
    T_w_far[:3, 3] += [0.3, 0.0, 0.1]
    T_arm = m.target(T_w0)                   # the arm stayed here while clutched
    m.align(T_w_far, T_arm)
    assert np.allclose(m.target(T_w_far), T_arm, atol=1e-12)
    T_w2 = T_w_far.copy()
    T_w2[0, 3] += 0.05
    assert np.allclose(m.target(T_w2)[:3, 3] - T_arm[:3, 3], [0.05, 0, 0], atol=1e-12)


def test_bad_transforms_are_refused():
    with pytest.raises(ValueError, match="rotation"):
        FrameMapping(np.diag([1.0, 1.0, -1.0]))            # a reflection
    with pytest.raises(ValueError):
        as_transform(np.ones((3, 4)))
    m = FrameMapping(np.eye(3))
    with pytest.raises(RuntimeError, match="align"):
        m.target(np.eye(4))
