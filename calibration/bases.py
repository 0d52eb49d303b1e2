"""``python -m calibration bases``: the left arm's base in the cell frame (= the right arm's base frame).

The operator marks ``n`` points in the shared workspace (pen marks on a fixture or on the table, spread over at least
10 x 10 cm, better in three dimensions) and touches each one with the tip of the same pointer held in each gripper
(closed fingertips by default: ``tip_m`` along the flange's z axis). For each touch the procedure reads the joints
and computes the flange pose (forward kinematics); the tip positions in each base frame are paired point by point, and the rigid fit
(Kabsch/Umeyama, no scale) ``p_right = T p_left`` is the left base's pose in the cell. Touching each point from a
different wrist orientation averages out an error in ``tip_m``.

Residuals (per point distance after the fit) are reported; the result is refused above ``max_residual_mm``, naming the
worst point (a slipped touch, a point that moved).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ate_description.calibration import CalibrationConfig, ProcedureRecord
from ate_description.contract import GRIPPER_FINGER_LEN_M, GRIPPER_PALM_LEN_M
from ate_description.errors import UserError
from calibration.geometry import rigid_fit
from calibration.report import now_iso
from calibration.rig import Rig


@dataclass
class BasesConfig:
    points: int = 4
    tip_m: float = GRIPPER_PALM_LEN_M + GRIPPER_FINGER_LEN_M
    """Pointer tip along the flange's z axis: the closed fingertips of the OmniPicker by default."""
    max_residual_mm: float = 3.0
    """Largest distance of a touched point from the fit: touching by jogging is good to about a millimetre."""


@dataclass
class BasesResult:
    T_cell_left: np.ndarray
    residuals_mm: np.ndarray      # (n,)
    p_left: np.ndarray            # (n, 3) tip positions in the left base frame
    p_right: np.ndarray           # (n, 3) in the right base (cell) frame


def fit_bases(p_left, p_right, max_residual_mm: float) -> BasesResult:
    T, res = rigid_fit(p_left, p_right)
    res_mm = res * 1e3
    worst = int(np.argmax(res_mm))
    if res_mm[worst] > max_residual_mm:
        raise UserError(f"point {worst + 1} is {res_mm[worst]:.1f} mm off the fit (limit {max_residual_mm} mm; all: "
                        f"{np.round(res_mm, 1).tolist()}): touch it again with both arms, and check that nothing "
                        "moved between the touches")
    return BasesResult(T, res_mm, np.asarray(p_left, float), np.asarray(p_right, float))


def run_bases(rig: Rig, cal: CalibrationConfig, cfg: BasesConfig | None = None) -> BasesResult:
    cfg = cfg or BasesConfig()
    if cfg.points < 3:
        raise UserError(f"bases needs at least 3 touched points, got {cfg.points}")
    op = rig.operator
    tip = np.array([0.0, 0.0, cfg.tip_m, 1.0])
    pts = {"left": [], "right": []}
    op.do("mark_points", f"Mark {cfg.points} points that both arms can reach, spread over at least 10 x 10 cm (one "
                         f"raised if you can); put the pointer in both grippers (tip {cfg.tip_m * 1e3:.0f} mm from the "
                         "flange)")
    for k in range(cfg.points):
        for arm in ("right", "left"):
            op.say(f"[{k + 1}/{cfg.points}] point {k + 1}, {arm} arm")
            op.do(f"touch_{arm}_{k}", f"Jog the {arm} arm until the pointer tip touches point {k + 1} "
                                      "(a different wrist angle for each point helps)")
            p = (rig.arm(arm).flange_pose() @ tip)[:3]
            pts[arm].append(p)
            op.say(f"  {arm} tip at {np.round(p * 1e3, 1).tolist()} mm (its base frame)")
    res = fit_bases(pts["left"], pts["right"], cfg.max_residual_mm)
    op.say(f"left base in the cell: xyz {np.round(res.T_cell_left[:3, 3] * 1e3, 1).tolist()} mm; residuals "
           f"{np.round(res.residuals_mm, 2).tolist()} mm")
    cal.left.t_cell_base = np.round(res.T_cell_left, 9).tolist()
    cal.right.t_cell_base = np.eye(4).tolist()
    cal.procedures["bases"] = ProcedureRecord(
        date=now_iso(),
        inputs={"points": str(cfg.points), "tip_mm": f"{cfg.tip_m * 1e3:g}",
                "left_tips_mm": str(np.round(res.p_left * 1e3, 2).tolist()),
                "right_tips_mm": str(np.round(res.p_right * 1e3, 2).tolist())},
        residuals={"max_mm": round(float(res.residuals_mm.max()), 3),
                   "rms_mm": round(float(np.sqrt(np.mean(res.residuals_mm ** 2))), 3)})
    return res
