"""The robot description: one DH table read by the URDF, Pinocchio, the sim's MJCF, the emulator and the
demonstrator, checked against independent oracles (the RealMan SDK's own kinematics, kept URDF parsers, a snapshot
of the MJCF taken before the description existed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ate_description import contract
from ate_description import kinematics as kin
from ate_description.calibration import load_calibration
from ate_description.urdf import DEFAULT_URDF, cell_urdf

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _random_q(rng, n):
    lim = np.asarray(contract.JOINT_LIMITS_RAD)
    return rng.uniform(-lim, lim, size=(n, contract.N_ARM_JOINTS)) * 0.9


@pytest.fixture(scope="module")
def urdf_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("urdf") / "cell.urdf"
    p.write_text(cell_urdf(load_calibration()))
    return p


def test_urdf_loads_in_yourdfpy_with_the_contracts_joints_and_limits(urdf_file):
    yourdfpy = pytest.importorskip("yourdfpy")
    robot = yourdfpy.URDF.load(str(urdf_file), build_scene_graph=True, load_meshes=False)
    assert robot.base_link == "cell"
    arm_joints = [n for arm in contract.ARMS for n in contract.arm_joint_names(arm)]
    assert robot.actuated_joint_names == [n for arm in contract.ARMS
                                          for n in contract.arm_joint_names(arm) + [f"{arm}_finger_a"]]
    for name in arm_joints:
        j = robot.joint_map[name]
        i = int(name[-1]) - 1
        assert j.type == "revolute"
        assert j.limit.lower == pytest.approx(-math.radians(contract.JOINT_LIMITS_DEG[i]), abs=1e-9)
        assert j.limit.upper == pytest.approx(math.radians(contract.JOINT_LIMITS_DEG[i]), abs=1e-9)
        assert j.limit.velocity == pytest.approx(math.radians(contract.JOINT_MAX_SPEED_DEG_S[i]), abs=1e-9)
    for arm in contract.ARMS:
        finger = robot.joint_map[f"{arm}_finger_a"]
        assert finger.type == "prismatic" and finger.limit.upper == pytest.approx(0.060)
        assert robot.joint_map[f"{arm}_finger_b"].mimic.joint == f"{arm}_finger_a"
    for frame in ("left_flange", "right_flange", "left_tcp", "right_tcp", "cam_high_optical_frame",
                  "cam_left_wrist_optical_frame", "cam_right_wrist_optical_frame"):
        assert frame in robot.link_map


def test_both_parsers_place_flanges_and_cameras_where_the_kinematics_and_calibration_say(urdf_file):
    yourdfpy = pytest.importorskip("yourdfpy")
    pin = pytest.importorskip("pinocchio")
    cal = load_calibration()
    robot = yourdfpy.URDF.load(str(urdf_file), build_scene_graph=True, load_meshes=False)
    model = pin.buildModelFromUrdf(str(urdf_file))
    data = model.createData()
    rng = np.random.default_rng(7)
    for q_l, q_r in zip(_random_q(rng, 5), _random_q(rng, 5)):
        q = {"left": q_l, "right": q_r}
        cfg = {f"{arm}_joint{i + 1}": q[arm][i] for arm in contract.ARMS for i in range(7)}
        robot.update_cfg({**cfg, "left_finger_a": 0.0, "right_finger_a": 0.0})
        q_pin = np.zeros(model.nq)
        for name, v in cfg.items():
            q_pin[model.idx_qs[model.getJointId(name)]] = v
        pin.framesForwardKinematics(model, data, q_pin)
        for arm in contract.ARMS:
            want = cal.t_cell_base(arm) @ kin.fk(q[arm])
            np.testing.assert_allclose(robot.get_transform(f"{arm}_flange", "cell"), want, atol=1e-9)
            np.testing.assert_allclose(data.oMf[model.getFrameId(f"{arm}_flange")].homogeneous, want, atol=1e-9)
            cam = f"cam_{arm}_wrist"
            np.testing.assert_allclose(robot.get_transform(f"{cam}_optical_frame", "cell"),
                                       want @ cal.camera(cam).transform(), atol=1e-9)
        np.testing.assert_allclose(robot.get_transform("cam_high_optical_frame", "cell"),
                                   cal.camera("cam_high").transform(), atol=1e-9)


def test_committed_urdf_is_the_default_calibrations():
    assert DEFAULT_URDF.read_text() == cell_urdf(load_calibration()), (
        "urdf/ate_cell.urdf is stale: regenerate it with `python -m ate_description.urdf --output "
        "ros2_ws/src/ate_description/urdf/ate_cell.urdf`")


@pytest.mark.parametrize("arm", contract.ARMS)
def test_fk_matches_the_realman_sdks_own_kinematics(arm):
    """Independent oracle: the SDK's Algo for the RM75 six-axis-force variant (d7 = 172.5 mm)."""
    sdk = pytest.importorskip("Robotic_Arm.rm_robot_interface")
    sf = sdk.Algo(sdk.rm_robot_arm_model_e.RM_MODEL_RM_75_E, sdk.rm_force_type_e.RM_MODEL_RM_SF_E)
    cal = load_calibration()
    rng = np.random.default_rng(11 if arm == "left" else 12)
    for q in _random_q(rng, 25):
        sdk_pose = np.asarray(sf.rm_algo_forward_kinematics(np.degrees(q).tolist(), 1), dtype=float)
        T_sdk = kin.matrix_from_pose6(sdk_pose)
        T = kin.fk(q)
        assert np.linalg.norm(T[:3, 3] - T_sdk[:3, 3]) < 1e-4                                 # 0.1 mm
        assert np.degrees(np.linalg.norm(kin.rotation_log(T[:3, :3] @ T_sdk[:3, :3].T))) < 0.01   # 0.01 deg
        # The same flange seen in the cell frame: the arm's calibrated base then the SDK's base-frame pose.
        np.testing.assert_allclose(cal.t_cell_base(arm) @ T_sdk, cal.t_cell_base(arm) @ T, atol=2e-4)


def test_the_sdk_oracle_tells_models_apart():
    """The basic RM75 model (no force sensor) has another flange offset: the comparison above can fail."""
    sdk = pytest.importorskip("Robotic_Arm.rm_robot_interface")
    basic = sdk.Algo(sdk.rm_robot_arm_model_e.RM_MODEL_RM_75_E, sdk.rm_force_type_e.RM_MODEL_RM_B_E)
    q = np.radians([10, 20, 30, 40, 50, 60, 70])
    p = np.asarray(basic.rm_algo_forward_kinematics(np.degrees(q).tolist(), 1))[:3]
    assert np.linalg.norm(p - kin.fk(q)[:3, 3]) > 0.01


def test_sim_mjcf_equals_the_reference_model():
    """Body poses, masses, inertias, joint ranges and cameras of the generated MJCF equal the snapshot taken from the
    model as it was built before the description existed (mjcf_reference.json)."""
    mujoco = pytest.importorskip("mujoco")
    from ate_sim.model import build_mjcf

    ref = json.loads((HERE / "mjcf_reference.json").read_text())
    m = mujoco.MjModel.from_xml_string(build_mjcf())
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    assert m.nbody == len(ref["bodies"]) and m.njnt == len(ref["joints"]) and m.ncam == len(ref["cameras"])
    for name, want in ref["bodies"].items():
        i = m.body(name).id
        for key, got in (("pos", m.body_pos[i]), ("quat", m.body_quat[i]), ("mass", m.body_mass[i]),
                         ("inertia", m.body_inertia[i]), ("ipos", m.body_ipos[i]), ("xpos", d.xpos[i]),
                         ("xmat", d.xmat[i])):
            np.testing.assert_allclose(got, want[key], atol=1e-9, err_msg=f"{name}.{key}")
    for name, rng in ref["joints"].items():
        np.testing.assert_allclose(m.jnt_range[m.joint(name).id], rng, atol=1e-12, err_msg=name)
    for name, want in ref["cameras"].items():
        c = m.camera(name).id
        np.testing.assert_allclose(d.cam_xpos[c], want["xpos"], atol=1e-9, err_msg=name)
        np.testing.assert_allclose(d.cam_xmat[c], want["xmat"], atol=1e-5, err_msg=name)
        assert m.cam_fovy[c] == pytest.approx(want["fovy"])


def test_a_changed_dh_table_changes_every_reader(monkeypatch):
    """d7 + 5 cm in the description moves the flange in the IK's Pinocchio model, the URDF, the MJCF, the emulator's FK
    and get_DH_data reply, and the demonstrator: nobody keeps a copy of the table."""
    pytest.importorskip("pinocchio")
    mujoco = pytest.importorskip("mujoco")
    from ate_description.ik import PinocchioIK
    from ate_drivers.arm import realman_emulator as emu
    from ate_sim.model import build_mjcf

    q = np.array([0.1, 0.4, -0.2, 1.2, 0.3, 0.8, -0.5])

    def readers() -> dict:
        out = {"ik": PinocchioIK().fk(q)[:3, 3], "fk": kin.fk(q)[:3, 3]}
        m = mujoco.MjModel.from_xml_string(build_mjcf())
        out["mjcf_link7_z"] = m.body_pos[m.body("left_link7").id][:3]
        out["urdf"] = cell_urdf(load_calibration()).count('<origin xyz="0 -0.2225 0"')   # d7 along -y (alpha 90 deg)
        out["dh_reply_d7"] = emu._dh_reply()["joint_7"][1]
        # The pose the emulated controller reports in get_current_arm_state (wire units: 0.001 mm).
        out["emulator_pose"] = np.asarray(emu.RealmanEmulator(q0_deg=np.degrees(q))._pose()[:3], float) / 1e6
        return out

    before = readers()
    dh = [list(r) for r in contract.DH_MODIFIED]
    dh[6][2] += 0.05
    monkeypatch.setattr(contract, "DH_MODIFIED", tuple(tuple(r) for r in dh))
    after = readers()
    R7 = kin.fk(q)[:3, :3]
    np.testing.assert_allclose(after["ik"] - before["ik"], 0.05 * R7[:, 2], atol=1e-9)
    np.testing.assert_allclose(after["fk"] - before["fk"], 0.05 * R7[:, 2], atol=1e-9)
    assert np.linalg.norm(after["mjcf_link7_z"] - before["mjcf_link7_z"]) == pytest.approx(0.05, abs=1e-6)
    assert before["urdf"] == 0 and after["urdf"] == 2          # both arms' joint7 origins carry the new d7
    assert (before["dh_reply_d7"], after["dh_reply_d7"]) == (172500, 222500)
    np.testing.assert_allclose(after["emulator_pose"] - before["emulator_pose"], 0.05 * R7[:, 2], atol=2e-6)


def test_the_demonstrator_follows_the_dh_table(monkeypatch):
    pytest.importorskip("mujoco")
    from ate_sim.cell import SimCell
    from ate_sim.demonstrator import Demonstrator

    cell = SimCell(task="pick_bun", seed=0)
    demo = Demonstrator(cell)
    q = np.asarray(cell.setpoint("right"))
    before = demo.tcp_of("right", q)
    dh = [list(r) for r in contract.DH_MODIFIED]
    dh[6][2] += 0.05
    monkeypatch.setattr(contract, "DH_MODIFIED", tuple(tuple(r) for r in dh))
    after = demo.tcp_of("right", q)
    assert np.linalg.norm(after - before) == pytest.approx(0.05, abs=1e-6)


def test_no_module_outside_the_description_holds_dh_numbers():
    numbers = ("0.2405", "240.5", "240500", "0.1725", "172.5", "172500", "0.256,", "256000", "0.210,", "210000")
    roots = [REPO / "ate_policy", REPO / "teleop", REPO / "calibration", REPO / "benchmarks"] + \
        [p for p in (REPO / "ros2_ws" / "src").iterdir() if p.is_dir() and p.name != "ate_description"]
    hits = []
    for root in roots:
        for f in root.rglob("*.py"):
            text = f.read_text()
            hits += [f"{f.relative_to(REPO)}: {n}" for n in numbers if n in text]
    assert not hits, f"DH numbers outside ate_description: {hits}"


def test_urdf_cli_writes_a_moved_base_and_refuses_a_broken_calibration(tmp_path):
    import yaml

    data = yaml.safe_load((REPO / "ros2_ws/src/ate_bringup/config/calibration.yaml").read_text())
    data["left"]["t_cell_base"][1][3] = 0.55
    cal = tmp_path / "calibration.yaml"
    cal.write_text(yaml.safe_dump(data))
    out = tmp_path / "cell.urdf"
    r = subprocess.run([sys.executable, "-m", "ate_description.urdf", "--calibration", str(cal), "--output", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '<joint name="cell_to_left_base" type="fixed"><parent link="cell"/><child link="left_base_link"/>' \
           '<origin xyz="0 0.55 0"' in out.read_text()
    data["right"]["t_cell_base"][0][3] = 0.1      # the cell frame IS the right base: refused
    cal.write_text(yaml.safe_dump(data))
    r = subprocess.run([sys.executable, "-m", "ate_description.urdf", "--calibration", str(cal)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "right.t_cell_base must be the identity" in r.stderr
    assert "Traceback" not in r.stderr
