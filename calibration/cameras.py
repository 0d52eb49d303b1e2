"""``python -m calibration cameras``: cam_high in the cell frame, each wrist camera on its flange, from a ChArUco board.

How the board's pose in the cell is obtained: it is never measured by hand. Two set-ups, one board:

1. **cam_high** (the L515, fixed in the cell): the board sits on a bracket on the **right flange** (its mount does not
   need to be known). The procedure drives the right arm through views around the start pose the operator chose
   (the whole board visible to cam_high); the board moves with the flange, whose pose (forward kinematics of the
   measured joints) is in the right base frame = the cell frame. Intrinsics are estimated from these views (the
   L515 is read as a UVC camera on Python 3.12, without its factory calibration); hand-eye calibration (board on the hand, camera fixed)
   gives ``T_cell_cam`` and the bracket together, refined with the intrinsics over every corner's reprojection.
2. **wrist cameras** (D405 on each flange): the board lies **still on the table**; the procedure drives each arm
   through views around the operator's start pose (the board in view from ~30 cm). Intrinsics are the D405's
   factory calibration (the rig's hook); hand-eye calibration (camera on the hand, board fixed) gives
   ``T_flange_cam`` and the board's pose in that arm's base. The board's pose seen by both arms also gives the left
   base in the right base frame: a cross-check of ``python -m calibration bases``, reported.

Every arm move goes through the drivers' safety layer (``calibration.rig.ArmMover``). A step is refused, with what
to do, when the board is found in too few views, when the views do not rotate about two axes (pure translations
leave hand-eye undetermined), or when the reprojection RMS or the views' consistency exceed the thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ate_description.calibration import CalibrationConfig, ProcedureRecord
from ate_description.errors import UserError
from ate_description.kinematics import inv_transform, rotation_exp
from calibration.charuco import BoardSpec, Detection, board_pose, detect, estimate_intrinsics
from calibration.geometry import ChainFit, check_rotation_spread, hand_eye, make_transform, refine_chain
from calibration.report import now_iso
from calibration.rig import Rig


@dataclass
class ViewPlan:
    """The arm poses of one step: rotations of the flange about a pivot point on its z axis (where the board is,
    roughly, so it stays in view), alternating axes, with small translations."""

    views: int = 12
    rotation_deg: float = 12.0
    translation_m: float = 0.03
    pivot_m: float = 0.30
    """Distance of the pivot along the flange's z axis: the board's distance for a wrist camera, the bracket's
    offset for the board on the flange."""


@dataclass
class Limits:
    min_views: int = 6
    """Views in which the board must be found (with at least ``min_corners`` corners)."""
    min_corners: int = 8
    max_rms_px: float = 1.0
    """Reprojection RMS over every corner after the fit; a flat, rigid board gives a few tenths of a pixel."""
    max_spread_mm: float = 5.0
    """RMS disagreement between the views: the fixed part of the chain (board or bracket) seen by each view alone."""
    max_spread_deg: float = 1.0
    min_rotation_deg: float = 5.0


@dataclass
class CamerasConfig:
    board: BoardSpec = field(default_factory=BoardSpec)
    cameras: tuple[str, ...] = ("cam_high", "cam_left_wrist", "cam_right_wrist")
    # Larger moves for the board ~1 m from cam_high: 8 cm translations (toward and away from the camera too) let the
    # refinement tell the focal length from the distance (0.4 mm instead of 1.3 mm in the sim test at 4 cm).
    high: ViewPlan = field(default_factory=lambda: ViewPlan(views=14, rotation_deg=20.0, translation_m=0.08,
                                                            pivot_m=0.10))
    wrist: ViewPlan = field(default_factory=ViewPlan)
    limits: Limits = field(default_factory=Limits)


@dataclass
class StepResult:
    camera: str
    arm: str
    T: np.ndarray            # T_cell_cam (cam_high) or T_flange_cam (wrist)
    fixed: np.ndarray        # T_flange_board (cam_high) or T_base_board (wrist)
    fit: ChainFit
    intrinsics_source: str
    views_planned: int
    views_used: int
    images: list[np.ndarray]
    dets: list[Detection]
    per_view_rms_px: list[float]
    flange_poses: np.ndarray   # (N, 4, 4) the reported flange pose of each used view
    corners_m: np.ndarray      # the board's corner table

    def residuals(self) -> dict[str, float]:
        return {"reprojection_rms_px": round(self.fit.rms_px, 4), "spread_mm": round(self.fit.spread_mm, 3),
                "spread_deg": round(self.fit.spread_deg, 4), "views": float(self.views_used)}


def plan_poses(T0: np.ndarray, plan: ViewPlan) -> list[np.ndarray]:
    """Flange poses (base frame) around ``T0``: the first is ``T0``; then rotations about axes through the pivot
    (tilts about the flange's x and y, diagonal tilts, turns about z), each with a small translation."""
    axes = [(1, 0, 0), (0, 1, 0), (-1, 0, 0), (0, -1, 0), (0, 0, 1), (1, 1, 0), (-1, 1, 0), (0, 0, -1),
            (1, -1, 0), (-1, -1, 0), (1, 0, 1), (0, 1, -1), (-1, 0, -1), (0, -1, 1)]
    shifts = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (-1, 0, 0), (0, -1, 0), (0, 0, -1)]
    pivot = make_transform(np.eye(3), (0.0, 0.0, plan.pivot_m))
    poses = [T0]
    for k in range(plan.views - 1):
        a = np.asarray(axes[k % len(axes)], dtype=float)
        angle = math.radians(plan.rotation_deg) * (1.5 if a[2] and not a[:2].any() else 1.0)
        R = make_transform(rotation_exp(a / np.linalg.norm(a) * angle), (0, 0, 0))
        T = T0 @ pivot @ R @ inv_transform(pivot)
        T[:3, 3] += plan.translation_m * np.asarray(shifts[k % len(shifts)], dtype=float)
        poses.append(T)
    return poses


def _collect(rig: Rig, arm: str, camera: str, plan: ViewPlan, board: BoardSpec, limits: Limits):
    """Drive ``arm`` through the plan from where it stands; per view: flange pose, image, detection."""
    from ate_description.ik import IKConfig, PinocchioIK

    mover = rig.arm(arm)
    q0 = mover.q()
    T0 = mover.flange_pose()
    ik = PinocchioIK(IKConfig(max_iter=200))
    F, images, dets = [], [], []
    poses = plan_poses(T0, plan)
    for k, T in enumerate(poses):
        sol = ik.solve(T, q0)
        # The plan is approximate by nature (the flange pose is measured after the move): close is good enough.
        if sol.pos_err_m > 0.02 or sol.rot_err_rad > math.radians(2.0):
            rig.operator.say(f"  view {k + 1}/{len(poses)}: out of reach, skipped ({sol.pos_err_m * 1e3:.1f} mm, "
                             f"{math.degrees(sol.rot_err_rad):.2f} deg off; joints at a limit: {sol.at_limit})")
            continue
        mover.move_to(sol.q)
        img = rig.capture(camera)
        det = detect(img, board, min_corners=limits.min_corners)
        n = 0 if det is None else len(det)
        rig.operator.say(f"  view {k + 1}/{len(poses)}: {n} corners" + ("" if det else " (board not found)"))
        if det is not None:
            F.append(mover.flange_pose())
            images.append(img)
            dets.append(det)
    mover.move_to(q0)   # back where the operator left it
    if len(dets) < limits.min_views:
        raise UserError(f"the board was found in only {len(dets)} of {len(poses)} views of {camera} (need "
                        f"{limits.min_views} with >= {limits.min_corners} corners): start from a pose where "
                        f"{camera} sees the whole board, check the light and focus, and that --board matches the "
                        "printed board")
    return np.array(F), images, dets, len(poses)


def calibrate_camera(rig: Rig, camera: str, arm: str, camera_on_flange: bool, plan: ViewPlan, board: BoardSpec,
                     limits: Limits) -> StepResult:
    """One hand-eye step (module docstring); refuses results above ``limits``."""
    F, images, dets, n_planned = _collect(rig, arm, camera, plan, board, limits)
    check_rotation_spread(F, limits.min_rotation_deg, what=f"the {arm} arm's poses for {camera}")
    corners = board.corners_m()
    intr = rig.factory_intrinsics(camera)
    if intr is not None:
        h, w = dets[0].image_hw
        if (intr.width, intr.height) != (w, h):
            intr = intr.scaled(w, h)
        source = "factory"
    else:
        intr, rms0 = estimate_intrinsics(dets, board)
        rig.operator.say(f"  intrinsics estimated from {len(dets)} views: fx {intr.fx:.1f} fy {intr.fy:.1f} "
                         f"cx {intr.cx:.1f} cy {intr.cy:.1f} px (RMS {rms0:.3f} px)")
        source = "estimated"
    P = [board_pose(d, corners, intr)[0] for d in dets]
    A, B = hand_eye(F, P, camera_on_flange)
    G = [inv_transform(f) for f in F] if camera_on_flange else list(F)
    fit = refine_chain(A, B, G, dets, corners, intr, fit_intrinsics=(source == "estimated"))
    T = inv_transform(fit.A)
    res = StepResult(camera, arm, T, fit.B, fit, source, n_planned, len(dets), images, dets,
                     [float(x) for x in fit.per_view_rms_px], F, corners)
    rig.operator.say(f"  {camera}: reprojection RMS {fit.rms_px:.3f} px over {len(dets)} views; views agree within "
                     f"{fit.spread_mm:.2f} mm / {fit.spread_deg:.3f} deg (RMS)")
    if fit.rms_px > limits.max_rms_px:
        raise UserError(f"{camera}: reprojection RMS {fit.rms_px:.2f} px is above {limits.max_rms_px} px: the board "
                        "moved on its mount or on the table during the views, or its square size (--board) is wrong; "
                        "fix the board and run the step again")
    if fit.spread_mm > limits.max_spread_mm or fit.spread_deg > limits.max_spread_deg:
        raise UserError(f"{camera}: the views disagree by {fit.spread_mm:.1f} mm / {fit.spread_deg:.2f} deg (RMS; "
                        f"limits {limits.max_spread_mm} mm / {limits.max_spread_deg} deg): the board slipped, or the "
                        "arm's reported poses are off (check its DH/tool settings); run the step again")
    return res


def run_cameras(rig: Rig, cal: CalibrationConfig, cfg: CamerasConfig | None = None) -> dict[str, StepResult]:
    """The whole ``cameras`` procedure; writes the results into ``cal`` (in place) and returns every step's."""
    cfg = cfg or CamerasConfig()
    cfg.board.validate()
    op = rig.operator
    results: dict[str, StepResult] = {}
    steps = [c for c in cfg.cameras]
    unknown = set(steps) - {"cam_high", "cam_left_wrist", "cam_right_wrist"}
    if unknown:
        raise UserError(f"unknown cameras {sorted(unknown)}; choose from cam_high cam_left_wrist cam_right_wrist")
    total = len(steps)
    i = 0
    if "cam_high" in steps:
        i += 1
        op.say(f"[{i}/{total}] cam_high -> cell frame (board on the right flange)")
        op.do("board_on_flange", "Mount the board rigidly on the right flange (a bracket; where exactly does not "
                                 "matter) and jog the right arm so that cam_high sees the whole board, about 1 m away")
        results["cam_high"] = calibrate_camera(rig, "cam_high", "right", False, cfg.high, cfg.board, cfg.limits)
    wrists = [c for c in steps if c != "cam_high"]
    if wrists:
        op.do("board_on_table", "Take the board off the flange and lay it flat and still on the table, within reach "
                                "of both arms; it must not move until the wrist cameras are done")
    for camera in wrists:
        i += 1
        arm = camera.split("_")[1]
        op.say(f"[{i}/{total}] {camera} -> {arm} flange (board on the table)")
        op.do(f"wrist_start_{arm}", f"Jog the {arm} arm so that {camera} looks down at the board from about "
                                    f"{cfg.wrist.pivot_m:.2f} m, the whole board in view")
        results[camera] = calibrate_camera(rig, camera, arm, True, cfg.wrist, cfg.board, cfg.limits)
    _write(cal, results, cfg)
    return results


def base_cross_check(results: dict[str, StepResult]) -> np.ndarray | None:
    """The left base in the right base frame implied by the table board seen from both wrist cameras."""
    if "cam_left_wrist" in results and "cam_right_wrist" in results:
        return results["cam_right_wrist"].fixed @ inv_transform(results["cam_left_wrist"].fixed)
    return None


def _write(cal: CalibrationConfig, results: dict[str, StepResult], cfg: CamerasConfig) -> None:
    for name, r in results.items():
        c = cal.camera(name)
        it = r.fit.intrinsics
        c.width, c.height = it.width, it.height
        c.fx, c.fy, c.cx, c.cy = (round(float(v), 4) for v in (it.fx, it.fy, it.cx, it.cy))
        c.dist = [round(float(v), 6) for v in it.dist]
        c.intrinsics_source = r.intrinsics_source
        c.t_frame_camera = np.round(r.T, 9).tolist()
        c.residuals = r.residuals()
    board = cfg.board
    inputs = {"board": f"{board.squares_x}x{board.squares_y} squares of {board.square_m * 1e3:g} mm, markers "
                       f"{board.marker_m * 1e3:g} mm, {board.dictionary}",
              "cameras": " ".join(results),
              "views": f"cam_high {cfg.high.views} planned, wrist {cfg.wrist.views} planned",
              "limits": f"rms <= {cfg.limits.max_rms_px} px, spread <= {cfg.limits.max_spread_mm} mm / "
                        f"{cfg.limits.max_spread_deg} deg, >= {cfg.limits.min_views} views"}
    residuals = {f"{n}.{k}": v for n, r in results.items() for k, v in r.residuals().items()}
    cross = base_cross_check(results)
    if cross is not None:
        cur = cal.t_cell_base("left")
        residuals["left_base_vs_board_mm"] = round(float(np.linalg.norm(cross[:3, 3] - cur[:3, 3]) * 1e3), 3)
    cal.procedures["cameras"] = ProcedureRecord(date=now_iso(), inputs=inputs, residuals=residuals)

