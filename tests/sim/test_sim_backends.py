"""The sim backends are drop-in ate_drivers.interfaces devices, picked by the name ``sim`` from the registry."""

import numpy as np
import pytest

from ate_drivers import registry
from ate_drivers.interfaces import ArmBackend, CameraBackend, GripperBackend
from ate_description import contract
from ate_sim.cell import HOME_Q
from ate_description import kinematics as kin
from ate_description.ik import PinocchioIK


@pytest.fixture
def devices(cell):
    arm = registry.make_arm("sim", arm="left", cell=cell)
    grip = registry.make_gripper("sim", arm="left", cell=cell)
    arm.connect()
    grip.connect()
    return arm, grip


def test_registry_builds_sim_backends_that_satisfy_the_interfaces(cell):
    assert isinstance(registry.make_arm("sim", arm="right", cell=cell), ArmBackend)
    assert isinstance(registry.make_gripper("sim", arm="right", cell=cell), GripperBackend)
    assert isinstance(registry.make_camera("sim", name="cam_high", cell=cell), CameraBackend)
    assert "sim" in registry.available("arm")


def test_registry_names_unknown_backends():
    with pytest.raises(ValueError, match="unknown arm backend 'warp'"):
        registry.make_arm("warp")


def test_arm_state_is_joints_flange_pose_and_sim_time(cell, devices):
    arm, _ = devices
    target = HOME_Q + 0.3
    arm.send_joint_targets(target)
    cell.step(1.5)
    st = arm.read_state()
    np.testing.assert_allclose(st.q_rad, target, atol=2e-3)
    np.testing.assert_allclose(kin.matrix_from_pose6(st.pose), kin.fk(st.q_rad), atol=1e-6)
    assert st.stamp_s == pytest.approx(cell.sim_time)
    assert st.wrench.shape == (6,) and st.errors == []


def test_stop_holds_the_arm_where_it_is(cell, devices):
    arm, _ = devices
    arm.send_joint_targets(HOME_Q + 1.0)
    cell.step(0.2)
    arm.stop()
    q_stop = arm.read_state().q_rad
    cell.step(1.0)
    # It brakes from full speed: it stops within a few degrees of where stop() found it, never reaches the target.
    q_end = arm.read_state().q_rad
    assert np.max(np.abs(q_end - q_stop)) < 0.1
    assert np.max(np.abs(q_end - (HOME_Q + 1.0))) > 0.3


def test_disconnected_devices_refuse_commands(cell):
    arm = registry.make_arm("sim", arm="left", cell=cell)
    with pytest.raises(RuntimeError, match="not connected"):
        arm.send_joint_targets(HOME_Q)
    grip = registry.make_gripper("sim", arm="left", cell=cell)
    assert grip.read_state() is None


def test_gripper_command_and_state(cell, devices):
    _, grip = devices
    grip.command(0.3)
    cell.step(1.0)
    st = grip.read_state()
    assert st.position == pytest.approx(0.3, abs=0.02) and st.state == 0 and st.fault == 0
    assert st.stamp_s == pytest.approx(cell.sim_time)
    with pytest.raises(ValueError, match="fraction"):
        grip.command(1.5)


def test_wrench_shows_the_table_pushing_back_on_the_gripper(cell, devices):
    arm, _ = devices
    # Flange straight down, pushed 2 cm into the table top (z = 0 in the world; the base is on a 10 cm riser).
    T = kin.fk(HOME_Q)
    T[2, 3] = -cell.cfg.pedestal_m + 0.13 - 0.02
    q = PinocchioIK().solve(T, HOME_Q).q
    arm.send_joint_targets(q)
    cell.step(1.5)
    f = arm.read_state().wrench
    # Flange z points down: the table's push up is a force along -z of the flange frame.
    assert f[2] < -5.0, f


@pytest.mark.parametrize("hw", [(48, 64), (96, 128)])
def test_cameras_give_frames_of_the_configured_size_stamped_in_sim_time(cell, hw):
    for name in contract.CAMERA_NAMES:
        cam = registry.make_camera("sim", name=name, image_hw=hw, cell=cell)
        cam.open()
        f = cam.read_latest()
        assert f.image.shape == (*hw, 3) and f.image.dtype == np.uint8
        assert f.capture_time_s == cell.sim_time
        assert f.image.std() > 5  # not a blank frame
        cell.step(0.05)
        assert cam.read_latest().capture_time_s == pytest.approx(cell.sim_time)


def test_wrist_camera_moves_with_the_flange(cell):
    import mujoco

    cam_id = cell.model.camera("cam_left_wrist").id
    rel = []
    for q in (HOME_Q, HOME_Q + np.array([0.8, -0.3, 0.5, 0.4, -0.6, 0.3, 1.0])):
        cell.data.qpos[cell.qadr["left"]] = q
        mujoco.mj_forward(cell.model, cell.data)  # also places cameras (mj_camlight)
        F = cell.data.site_xmat[cell.flange_site["left"]].reshape(3, 3)
        p = cell.data.site_xpos[cell.flange_site["left"]]
        rel.append((F.T @ (cell.data.cam_xpos[cam_id] - p), F.T @ cell.data.cam_xmat[cam_id].reshape(3, 3)))
    np.testing.assert_allclose(rel[0][0], rel[1][0], atol=1e-9)  # same place on the flange
    np.testing.assert_allclose(rel[0][1], rel[1][1], atol=1e-9)  # same orientation on the flange


def test_wrist_image_follows_the_arm_away_and_back(task_cell):
    cell = task_cell  # objects on the table give the view something to see
    left = registry.make_camera("sim", name="cam_left_wrist", image_hw=(48, 64), cell=cell)
    left.open()
    l0 = left.read_latest().image.astype(float)
    cell.set_joint_targets("left", HOME_Q + np.array([0.7, 0, 0, 0, 0, 0, 0]))
    cell.step(1.0)
    l1 = left.read_latest().image.astype(float)
    cell.set_joint_targets("left", HOME_Q)
    cell.step(1.0)
    l2 = left.read_latest().image.astype(float)
    assert np.abs(l1 - l0).mean() > 8       # the view swung with the flange
    assert np.abs(l2 - l0).mean() < 1       # and came back with it


def test_unknown_camera_is_refused(cell):
    with pytest.raises(ValueError, match="unknown camera"):
        registry.make_camera("sim", name="cam_low", cell=cell)


def test_backends_built_without_a_cell_share_one_realtime_cell():
    from ate_sim import backends

    backends.reset_shared_cell()
    try:
        arm = registry.make_arm("sim", arm="left", ip="192.168.1.18")  # hardware settings are ignored
        grip = registry.make_gripper("sim", arm="left", port="/dev/ttyUSB0")
        assert arm.cell is grip.cell is backends.shared_cell()
        assert arm.cell.clock == "realtime"
        arm.connect()
        t0 = arm.read_state().stamp_s
        import time

        time.sleep(0.3)
        assert arm.read_state().stamp_s > t0  # nobody stepped it: the real-time thread did
    finally:
        backends.reset_shared_cell()
