"""``python -m calibration cameras`` on the simulated cell: real ChArUco detection, hand-eye and refinement on
rendered images. The test moves cam_high and both wrist cameras away from the nominal mounts the procedure starts
from (it is told nothing), then compares what the procedure writes with where the sim put them."""

import numpy as np
import pytest

from ate_description.calibration import CalibrationConfig
from ate_description.errors import UserError
from ate_description.kinematics import rot_x, rot_y, rot_z

pytest.importorskip("mujoco")

from calibration.cameras import CamerasConfig, Limits, ViewPlan, base_cross_check, run_cameras  # noqa: E402
from calibration.charuco import BoardSpec  # noqa: E402
from calibration.geometry import make_transform, pose_difference  # noqa: E402
from calibration.sim_rig import SimOperator, SimRig  # noqa: E402

WRIST_HW = {"cam_left_wrist": (360, 640), "cam_right_wrist": (360, 640)}


def _moved(T, dxyz_m, rpy_deg):
    P = make_transform(rot_z(np.radians(rpy_deg[2])) @ rot_y(np.radians(rpy_deg[1])) @ rot_x(np.radians(rpy_deg[0])),
                       dxyz_m)
    return (np.asarray(T) @ P).tolist()


def _true_cell() -> CalibrationConfig:
    """The cell as the sim builds it: mounts a few cm / degrees off the nominal design, the left base moved too."""
    cal = CalibrationConfig()
    cams = cal.cameras
    cams["cam_high"].t_frame_camera = _moved(cams["cam_high"].t_frame_camera, (0.03, -0.02, 0.015), (1.5, -2.0, 1.0))
    cams["cam_left_wrist"].t_frame_camera = _moved(cams["cam_left_wrist"].t_frame_camera, (0.004, -0.003, 0.006),
                                                   (2.0, -1.5, 3.0))
    cams["cam_right_wrist"].t_frame_camera = _moved(cams["cam_right_wrist"].t_frame_camera, (-0.005, 0.002, -0.004),
                                                    (-2.5, 1.0, -2.0))
    cal.left.t_cell_base = make_transform(rot_z(np.radians(1.5)), (0.012, 0.405, -0.004)).tolist()
    return cal


@pytest.fixture(scope="module")
def calibrated():
    truth = _true_cell()
    op = SimOperator()
    rig = SimRig(truth, operator=op, image_hw=WRIST_HW)
    written = CalibrationConfig()       # what the procedure starts from: the nominal design
    try:
        results = run_cameras(rig, written, CamerasConfig())
    finally:
        rig.close()
    return truth, written, results, op.log


@pytest.mark.slow
def test_cam_high_pose_in_the_cell_is_recovered_within_2mm_and_0_2deg(calibrated):
    truth, written, results, _ = calibrated
    d_mm, d_deg = pose_difference(written.camera("cam_high").transform(), truth.camera("cam_high").transform())
    nominal_mm, _ = pose_difference(CalibrationConfig().camera("cam_high").transform(),
                                    truth.camera("cam_high").transform())
    assert nominal_mm > 30.0                       # the procedure had something to find
    assert d_mm < 2.0 and d_deg < 0.2, (d_mm, d_deg)
    cam = written.camera("cam_high")
    assert cam.intrinsics_source == "estimated"
    # The sim's pinhole: vertical field of view 50 deg at 540 rows (MuJoCo's default for an uncalibrated camera).
    f_true = 270.0 / np.tan(np.radians(25.0))
    assert abs(cam.fy - f_true) / f_true < 0.005 and abs(cam.fx - f_true) / f_true < 0.005
    assert cam.residuals["reprojection_rms_px"] < 0.2


@pytest.mark.slow
def test_each_wrist_camera_mount_is_recovered_within_3mm_and_0_3deg(calibrated):
    truth, written, results, log = calibrated
    for name in ("cam_left_wrist", "cam_right_wrist"):
        d_mm, d_deg = pose_difference(written.camera(name).transform(), truth.camera(name).transform())
        assert d_mm < 3.0 and d_deg < 0.3, (name, d_mm, d_deg)
        assert written.camera(name).frame == f"{name.split('_')[1]}_flange"
        assert written.camera(name).intrinsics_source == "factory"
    # The board seen by both wrist cameras puts the left base where the sim placed it (cross-check of `bases`).
    cross = base_cross_check(results)
    d_mm, d_deg = pose_difference(cross, truth.t_cell_base("left"))
    assert d_mm < 3.0 and d_deg < 0.3, (d_mm, d_deg)
    written.validate()
    assert written.procedures["cameras"].residuals["cam_high.reprojection_rms_px"] < 0.2
    assert any("view 1/" in line for line in log)      # progress was reported view by view


def _wrist_only(rig, plan: ViewPlan, **kw):
    cfg = CamerasConfig(cameras=("cam_left_wrist",), wrist=plan, **kw)
    return run_cameras(rig, CalibrationConfig(), cfg)


def test_a_board_that_is_not_seen_is_refused_naming_what_to_do():
    op = SimOperator()
    rig = SimRig(operator=op, image_hw=WRIST_HW)
    op.actions["board_on_table"] = lambda: rig.show_board(None)        # the operator forgot the board
    try:
        with pytest.raises(UserError, match=r"board was found in only 0 of 6 views of cam_left_wrist .*--board"):
            _wrist_only(rig, ViewPlan(views=6))
    finally:
        rig.close()


def test_pure_translations_are_refused_as_degenerate_hand_eye():
    rig = SimRig(image_hw=WRIST_HW)
    try:
        with pytest.raises(UserError, match=r"only translate .* rotate, about at least two different axes"):
            _wrist_only(rig, ViewPlan(views=7, rotation_deg=0.0, translation_m=0.04))
    finally:
        rig.close()


def test_a_wrong_square_size_gives_residuals_above_the_limits_and_is_refused():
    # The printed board has 40 mm squares; the operator typed 44 mm: the views no longer agree with the arm's motion.
    rig = SimRig(image_hw=WRIST_HW)
    wrong = BoardSpec(square_m=0.044, marker_m=0.033)
    try:
        with pytest.raises(UserError, match=r"cam_left_wrist: (reprojection RMS|the views disagree)"):
            _wrist_only(rig, ViewPlan(views=8), board=wrong, limits=Limits(max_rms_px=0.5, max_spread_mm=1.0))
    finally:
        rig.close()
