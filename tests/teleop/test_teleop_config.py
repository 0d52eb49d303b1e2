"""Shipped teleop.yaml / calibration.yaml load; launch-argument overrides; clear errors for bad configs; the
calibration CLI and the T_rotation estimators."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import yaml

from ate_description.errors import UserError
from ate_description.calibration import CalibrationConfig, default_calibration_path, load_calibration
from calibration.wrist_rotation import estimate_from_known_pose, estimate_from_pairs
from teleop.configuration_teleop import default_teleop_config_path, load_teleop_config
from ate_description.kinematics import fk, rot_z, rotation_exp, rotation_log
from teleop_testkit import HOME_Q, wrist_pose

REPO = default_calibration_path().parents[4]


def test_shipped_configs_load_and_agree_with_the_drivers():
    cfg = load_teleop_config()
    assert cfg.calibration_file == str(default_calibration_path().resolve())
    assert cfg.left.avp.ip != cfg.right.avp.ip
    drivers = yaml.safe_load((default_teleop_config_path().parent / "drivers.yaml").read_text())
    assert cfg.safety.max_velocity_rad_s == pytest.approx(drivers["safety"]["max_velocity_rad_s"])
    assert cfg.safety.joint_margin_rad == pytest.approx(drivers["safety"]["joint_margin_rad"])
    cal = load_calibration()
    assert np.allclose(cal.left.home_q_rad, HOME_Q)


def test_launch_arguments_become_overrides(tmp_path):
    cfg = load_teleop_config(None, {"recorder": {"root": str(tmp_path / "ds")},
                                    "left": {"avp": {"ip": "10.0.0.7"}}, "task": "cook the bun"})
    assert cfg.recorder.root == str(tmp_path / "ds")
    assert cfg.left.avp.ip == "10.0.0.7" and cfg.task == "cook the bun"
    assert cfg.right.avp.ip == "192.168.1.102"


@pytest.mark.parametrize("over, match", [
    ({"right": {"avp": {"ip": "192.168.1.101"}}}, "both operators use the Vision Pro"),
    ({"left": {"avp": {"hand": "both"}}}, "hand"),
    ({"left": {"buttons": {"mapping": {"record": "a"}}}}, "do not exist on a L Joy-Con"),
    ({"left": {"joycon": {"side": "R"}}}, "differ"),
    ({"left": {"gripper": {"mode": "telepathy"}}}, "gripper.mode"),
    ({"recorder": {"flagged_policy": "maybe"}}, "flagged_policy"),
])
def test_bad_teleop_configs_are_refused_clearly(over, match):
    with pytest.raises(UserError, match=match):
        load_teleop_config(None, over)


@pytest.mark.parametrize("over, match", [
    ({"left": {"t_rotation": [[1, 0, 0], [0, 1, 0], [0, 0, -1]]}}, "not a rotation"),
    ({"right": {"home_q_rad": [0, 0, 0, 3.0, 0, 0, 0]}}, "joint4"),
    ({"right": {"init_q_rad": [0, 0, 0]}}, "7 finite"),
    ({"left": {"gripper_open": 0.0}}, "gripper_closed < gripper_open"),
])
def test_bad_calibrations_are_refused_clearly(over, match):
    with pytest.raises(UserError, match=match):
        load_calibration(default_calibration_path(), over)


def test_t_rotation_from_pairs_recovers_the_hand_on_flange_rotation():
    rng = np.random.default_rng(0)
    R_rot = rotation_exp(rng.normal(size=3))
    R_x = rotation_exp(rng.normal(size=3))   # headset world -> robot base, unknown to the estimator
    q = [HOME_Q + rng.uniform(-0.4, 0.4, 7) for _ in range(12)]
    R_f = np.array([fk(qi)[:3, :3] for qi in q])
    noise = [rotation_exp(rng.normal(0, math.radians(0.3), 3)) for _ in q]   # tracking noise
    R_w = np.array([R_x.T @ Rf @ R_rot.T @ n for Rf, n in zip(R_f, noise)])
    est, residual = estimate_from_pairs(R_w, R_f)
    assert np.degrees(np.linalg.norm(rotation_log(est.T @ R_rot))) < 1.0
    assert residual < 3.0
    with pytest.raises(UserError, match="two different axes"):
        one_axis = np.array([rotation_exp([0, 0, a]) for a in (0.0, 0.3, 0.6, 0.9)])
        estimate_from_pairs(one_axis, one_axis)


def test_t_rotation_from_the_known_pose_removes_the_headset_yaw():
    """The operator faces the robot's +x, but the headset's world is yawed by 40 deg: the head tells."""
    yaw = rot_z(math.radians(40))
    body = yaw @ rot_z(math.pi / 2)                        # an upright head looks along its y axis: body x
    R_wb = rotation_exp([0.1, -0.2, 0.05])                 # the hand in the operator's body frame
    heads = np.array([wrist_pose([0, 0, 1.6], yaw)] * 5)
    wrists = np.array([wrist_pose([0.3, 0.0, 1.1], body @ R_wb)] * 5)
    R_f = fk(HOME_Q)
    R_rot, spread = estimate_from_known_pose(wrists, heads, R_f)
    assert np.allclose(R_wb @ R_rot, R_f[:3, :3], atol=1e-9) and spread < 1e-6


def test_calibration_cli_show_and_pairs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "calibration", "show"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "t_rotation" in out.stdout and "flange xyz" in out.stdout
    rng = np.random.default_rng(2)
    R_rot = rotation_exp([0.2, -0.1, 0.3])
    q = np.array([HOME_Q + rng.uniform(-0.4, 0.4, 7) for _ in range(8)])
    wrist = np.array([wrist_pose([0, 0, 1], fk(qi)[:3, :3] @ R_rot.T) for qi in q])
    np.savez(tmp_path / "pairs.npz", wrist=wrist, q=q)
    new = tmp_path / "calibration.yaml"
    out = subprocess.run([sys.executable, "-m", "calibration", "wrist-rotation", "--arm", "right", "--pairs",
                          str(tmp_path / "pairs.npz"), "--output", str(new)], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    cal = load_calibration(new)
    assert np.allclose(cal.right.rotation(), R_rot, atol=1e-6)
    assert np.allclose(cal.left.rotation(), CalibrationConfig().left.rotation())
    bad = subprocess.run([sys.executable, "-m", "calibration", "wrist-rotation", "--arm", "left", "--pairs",
                          str(tmp_path / "missing.npz")], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: cannot read")


def test_calibration_cli_known_pose_live_from_a_headset(emulators, tmp_path):
    """`wrist-rotation --ip`: the real avp_stream client against the emulator holding the known pose."""
    from teleop.avp_server import still, zup_head_to_yup, zup_to_yup

    yaw = rot_z(math.radians(-25))
    body = yaw @ rot_z(math.pi / 2)
    R_wb = rotation_exp([0.05, 0.1, -0.2])
    wrist = wrist_pose([0.3, 0, 1.1], body @ R_wb)
    emulators("127.0.0.4", right_wrist=still(zup_to_yup(wrist), tremor_m=0.0),
              head=still(zup_head_to_yup(wrist_pose([0, 0, 1.6], yaw)), tremor_m=0.0))
    new = tmp_path / "calibration.yaml"
    out = subprocess.run([sys.executable, "-m", "calibration", "wrist-rotation", "--arm", "left", "--ip",
                          "127.0.0.4", "--seconds", "0.5", "--output", str(new)], capture_output=True,
                         text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    R_rot = load_calibration(new).left.rotation()
    R_f = fk(np.asarray(load_calibration(new).left.init_q_rad))[:3, :3]
    assert np.allclose(R_wb @ R_rot, R_f, atol=1e-5)       # float32 on the wire
