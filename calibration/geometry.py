"""The math of the cell calibration, in one place: rigid point-set fits, hand-eye calibration and its refinement.

**Hand-eye, one chain for both set-ups.** A camera sees the board in view ``i`` at ``P_i = T_cam_board``; the arm
reports its flange pose ``F_i`` in its base frame. Both set-ups the procedures use are ``P_i = A G_i B`` with two
unknown constant transforms:

* camera on the flange (a D405), board fixed in the cell: ``P_i = X^-1 F_i^-1 W`` with ``X = T_flange_cam`` and
  ``W = T_base_board`` (``A = X^-1``, ``G_i = F_i^-1``, ``B = W``);
* camera fixed in the cell (cam_high), board on the flange: ``P_i = C^-1 F_i M`` with ``C = T_base_cam`` and
  ``M = T_flange_board`` (``A = C^-1``, ``G_i = F_i``, ``B = M``).

OpenCV's ``calibrateHandEye`` (Park-Martin) gives the first estimate (for the fixed camera, fed the inverted
flange poses, the usual eye-to-hand use); ``refine_chain`` then minimises the reprojection error of every
detected corner over ``A``, ``B`` and, when asked, the camera intrinsics, so the result is what best explains the
pixels given the arm's reported poses (the arm is the metric ruler; the board's printed square sets the scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ate_description.errors import UserError
from ate_description.kinematics import inv_transform, rotation_exp, rotation_log
from calibration.charuco import Detection, Intrinsics, board_pose, project


def make_transform(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=float).reshape(3)
    return T


def angle_deg(R: np.ndarray) -> float:
    """Rotation angle of ``R`` in degrees."""
    return float(np.degrees(np.linalg.norm(rotation_log(np.asarray(R, dtype=float)[:3, :3]))))


def pose_difference(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """``(translation mm, rotation deg)`` between two poses."""
    d = inv_transform(T_a) @ T_b
    return float(np.linalg.norm(T_a[:3, 3] - T_b[:3, 3]) * 1e3), angle_deg(d[:3, :3])


def project_to_rotation(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def mean_pose(Ts) -> np.ndarray:
    """Chordal mean rotation and mean translation of poses (N, 4, 4)."""
    Ts = np.asarray(Ts, dtype=float)
    return make_transform(project_to_rotation(Ts[:, :3, :3].mean(axis=0)), Ts[:, :3, 3].mean(axis=0))


def rigid_fit(src, dst) -> tuple[np.ndarray, np.ndarray]:
    """Kabsch/Umeyama without scale: ``T`` with ``dst ~ T src`` for paired points (N, 3); returns ``(T,
    residuals)`` where residuals are the per-point distances (m) after the fit."""
    a = np.asarray(src, dtype=float).reshape(-1, 3)
    b = np.asarray(dst, dtype=float).reshape(-1, 3)
    if a.shape != b.shape or len(a) < 3:
        raise UserError(f"a rigid fit needs at least 3 paired points, got {len(a)} and {len(b)}")
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    sv = np.linalg.svd(a - ca, compute_uv=False)
    if sv[1] < 1e-3 * max(sv[0], 1e-12) or sv[1] < 0.01:
        raise UserError("the touched points lie (almost) on one line: spread them over at least 10 cm in two "
                        "directions")
    R = project_to_rotation((b - cb).T @ (a - ca))
    T = make_transform(R, cb - R @ ca)
    res = np.linalg.norm((a @ R.T + T[:3, 3]) - b, axis=1)
    return T, res


def check_rotation_spread(F, min_angle_deg: float = 5.0, what: str = "the arm poses") -> None:
    """Hand-eye needs rotations about at least two different axes; pure translations leave it undetermined."""
    F = np.asarray(F, dtype=float)
    vecs = [rotation_log(F[0][:3, :3].T @ Fi[:3, :3]) for Fi in F[1:]]
    big = [v for v in vecs if np.degrees(np.linalg.norm(v)) >= min_angle_deg]
    largest = max((np.degrees(np.linalg.norm(v)) for v in vecs), default=0.0)
    if not big:
        raise UserError(f"{what} only translate (largest rotation between them {largest:.1f} deg < "
                        f"{min_angle_deg:g} deg): hand-eye calibration needs the flange to rotate, about at least "
                        "two different axes, between views (use --rotation-deg or jog the wrist)")
    axes = np.array([v / np.linalg.norm(v) for v in big])
    if len(axes) < 2 or np.linalg.svd(axes, compute_uv=False)[1] < 0.2:
        raise UserError(f"{what} rotate about one axis only: hand-eye calibration needs rotations about at least "
                        "two different axes between views (tilt the flange as well as turning it)")


def hand_eye(F, P, camera_on_flange: bool) -> tuple[np.ndarray, np.ndarray]:
    """First estimate of ``(A, B)`` of the chain ``P_i = A G_i B`` (module docstring) with OpenCV's
    ``calibrateHandEye`` (Park-Martin) from flange poses ``F`` and board poses ``P`` (N, 4, 4)."""
    import cv2

    F = np.asarray(F, dtype=float)
    P = np.asarray(P, dtype=float)
    G = np.array([inv_transform(f) for f in F]) if camera_on_flange else F
    # calibrateHandEye solves gripper->base = g_i, target->cam = p_i for cam->gripper; for a camera fixed in the
    # cell it is fed base->gripper (the inverted poses) and returns cam->base.
    g = F if camera_on_flange else np.array([inv_transform(f) for f in F])
    R, t = cv2.calibrateHandEye([x[:3, :3] for x in g], [x[:3, 3] for x in g],
                                [x[:3, :3] for x in P], [x[:3, 3] for x in P], method=cv2.CALIB_HAND_EYE_PARK)
    A = inv_transform(make_transform(R, t))
    B = mean_pose([inv_transform(A @ Gi) @ Pi for Gi, Pi in zip(G, P)])
    return A, B


@dataclass
class ChainFit:
    A: np.ndarray                 # see the module docstring
    B: np.ndarray
    intrinsics: Intrinsics
    rms_px: float                 # reprojection RMS over every corner of every view
    per_view_rms_px: np.ndarray   # (N,)
    spread_mm: float              # RMS spread of B as seen by each view alone (consistency of the views)
    spread_deg: float
    errors_px: list[np.ndarray]   # per view (n_i, 2) corner errors after the fit
    outliers: int = 0             # corners dropped (see refine_chain)


def _vec(T: np.ndarray) -> np.ndarray:
    return np.concatenate([rotation_log(T[:3, :3]), T[:3, 3]])


def _mat(v: np.ndarray) -> np.ndarray:
    return make_transform(rotation_exp(v[:3]), v[3:6])


def refine_chain(A, B, G, dets: list[Detection], corners_m: np.ndarray, intr: Intrinsics,
                 fit_intrinsics: bool, outlier_px: float = 1.0) -> ChainFit:
    """Least-squares refinement of ``A``, ``B`` (and fx, fy, cx, cy, k1, k2 when ``fit_intrinsics``) over the
    reprojection error of every corner, ``P_i = A G_i B`` (module docstring).

    Corners off by more than ``outlier_px`` and 4x the median after a first fit are dropped and the fit repeated:
    a corner next to an occluding edge (the gripper's fingers in a wrist camera's view) is mislocated by pixels
    and would otherwise pull the whole fit."""
    first = _refine_once(A, B, G, dets, corners_m, intr, fit_intrinsics)
    norms = [np.linalg.norm(e, axis=1) for e in first.errors_px]
    cut = max(outlier_px, 4.0 * float(np.median(np.concatenate(norms))))
    kept = [Detection(d.ids[n <= cut], d.corners[n <= cut], d.image_hw) for d, n in zip(dets, norms)]
    dropped = int(sum(int(np.sum(n > cut)) for n in norms))
    if dropped == 0:
        return first
    fit = _refine_once(first.A, first.B, G, kept, corners_m, first.intrinsics if fit_intrinsics else intr,
                       fit_intrinsics)
    fit.outliers = dropped
    return fit


def _refine_once(A, B, G, dets: list[Detection], corners_m: np.ndarray, intr: Intrinsics,
                 fit_intrinsics: bool) -> ChainFit:
    from scipy.optimize import least_squares

    G = [np.asarray(g, dtype=float) for g in G]
    objs = [corners_m[d.ids] for d in dets]

    def unpack(x):
        a, b = _mat(x[:6]), _mat(x[6:12])
        if fit_intrinsics:
            fx, fy, cx, cy, k1, k2 = x[12:18]
            it = Intrinsics(intr.width, intr.height, fx, fy, cx, cy, (k1, k2, 0.0, 0.0, 0.0))
        else:
            it = intr
        return a, b, it

    def errors(x):
        a, b, it = unpack(x)
        return [project(o, a @ g @ b, it) - d.corners for o, g, d in zip(objs, G, dets)]

    def residuals(x):
        return np.concatenate([e.reshape(-1) for e in errors(x)])

    x0 = np.concatenate([_vec(A), _vec(B)])
    if fit_intrinsics:
        x0 = np.concatenate([x0, [intr.fx, intr.fy, intr.cx, intr.cy, intr.dist[0], intr.dist[1]]])
    sol = least_squares(residuals, x0, method="lm", x_scale="jac")
    a, b, it = unpack(sol.x)
    errs = errors(sol.x)
    per_view = np.array([np.sqrt(np.mean(np.sum(e ** 2, axis=1))) for e in errs])
    allerr = np.concatenate(errs)
    rms = float(np.sqrt(np.mean(np.sum(allerr ** 2, axis=1))))
    # Consistency: B as each view alone sees it (with the fitted A), against the fitted B.
    d_mm, d_deg = [], []
    for g, det in zip(G, dets):
        P_i, _ = board_pose(det, corners_m, it)
        dm, dd = pose_difference(inv_transform(a @ g) @ P_i, b)
        d_mm.append(dm)
        d_deg.append(dd)
    return ChainFit(a, b, it, rms, per_view, float(np.sqrt(np.mean(np.square(d_mm)))),
                    float(np.sqrt(np.mean(np.square(d_deg)))), errs)
