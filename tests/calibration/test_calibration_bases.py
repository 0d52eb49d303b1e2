"""``python -m calibration bases``: the left base in the cell frame from points touched by both arms in the sim,
the touches off by up to a millimetre like a person's; and the fit's own checks on touched points."""

import numpy as np
import pytest

from ate_description.calibration import CalibrationConfig
from ate_description.errors import UserError
from ate_description.kinematics import rot_x, rot_z

pytest.importorskip("mujoco")

from calibration.bases import BasesConfig, fit_bases, run_bases  # noqa: E402
from calibration.geometry import make_transform, pose_difference  # noqa: E402
from calibration.sim_rig import TOUCH_POINTS_CELL, SimOperator, SimRig  # noqa: E402

# Marks on a fixture between the arms (cell frame, m); one raised, so the points span three dimensions.
POINTS = TOUCH_POINTS_CELL


def test_bases_recovers_the_left_base_the_test_moved_from_noisy_touches():
    truth = CalibrationConfig()
    T_true = make_transform(rot_z(np.radians(2.0)) @ rot_x(np.radians(0.5)), (0.015, 0.392, -0.006))
    truth.left.t_cell_base = T_true.tolist()
    rng = np.random.default_rng(3)
    cfg = BasesConfig(points=len(POINTS))
    op = SimOperator()
    rig = SimRig(truth, operator=op, cameras=())
    for k, p in enumerate(POINTS):
        for arm in ("left", "right"):
            touched = p + rng.uniform(-0.0007, 0.0007, 3)   # the person's touch is off by up to 0.7 mm per axis
            yaw = rng.uniform(-0.5, 0.5)
            op.actions[f"touch_{arm}_{k}"] = lambda arm=arm, t=touched, y=yaw: rig.touch(arm, t, cfg.tip_m, y)
    written = CalibrationConfig()
    try:
        res = run_bases(rig, written, cfg)
    finally:
        rig.close()
    d_mm, d_deg = pose_difference(written.t_cell_base("left"), T_true)
    nominal_mm, _ = pose_difference(CalibrationConfig().t_cell_base("left"), T_true)
    assert nominal_mm > 15.0
    assert d_mm < 3.0 and d_deg < 0.5, (d_mm, d_deg)
    assert 0.05 < res.residuals_mm.max() < 3.0              # the touch noise shows in the residuals
    rec = written.procedures["bases"]
    assert rec.residuals["max_mm"] == pytest.approx(res.residuals_mm.max(), abs=1e-3) and rec.date
    written.validate()


def test_a_slipped_touch_is_refused_naming_the_point():
    T = make_transform(rot_z(0.1), (0.0, 0.4, 0.0))
    p_left = POINTS.copy()
    p_right = p_left @ T[:3, :3].T + T[:3, 3]
    p_right[2] += [0.0, 0.008, 0.0]                       # point 3 touched 8 mm off
    with pytest.raises(UserError, match=r"point 3 is .* mm off the fit"):
        fit_bases(p_left, p_right, max_residual_mm=3.0)
    fit = fit_bases(p_left[[0, 1, 3]], p_right[[0, 1, 3]], max_residual_mm=3.0)   # without it: exact
    assert np.allclose(fit.T_cell_left, T, atol=1e-9)


def test_points_on_a_line_are_refused():
    line = np.array([[0.1, 0.1, 0.0], [0.2, 0.1, 0.0], [0.3, 0.1, 0.0]])
    with pytest.raises(UserError, match="on one line"):
        fit_bases(line, line + [0.0, 0.4, 0.0], max_residual_mm=3.0)
