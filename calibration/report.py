"""Writing a procedure's results: the calibration YAML (dated, versioned) and a report beside it (markdown + plots).

The report of ``<name>.yaml`` goes to ``<name>_report/<procedure>.md`` with its PNGs in the same folder, so a
result and the evidence for it travel together.
"""

from __future__ import annotations

import datetime as _dt
import io
import shutil
from pathlib import Path

import numpy as np
import yaml

from ate_description.calibration import CALIBRATION_VERSION, CalibrationConfig
from ate_description.config import to_dict
from ate_description.kinematics import pose6_from_matrix

HEADER = """\
# Calibration of the dual-arm cell (ate_description.calibration.CalibrationConfig), written by `python -m calibration`
# and read by the description (URDF), the sim cell, the teleop and the drivers. Frames: `cell` = the right arm's base.
# Angles in radians, lengths in metres (gap_mm in mm), intrinsics in pixels at width x height. Inspect it with
# `python -m calibration show --config THIS_FILE`; docs/calibration.md says how each part is measured.
"""


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_calibration(cal: CalibrationConfig, path: str | Path, backup: bool = True) -> Path:
    """Validate and write ``cal`` (compact YAML: matrices one row per line); an existing file is kept as ``.bak``."""
    path = Path(path)
    cal.version = CALIBRATION_VERSION
    cal.validate()
    buf = io.StringIO()
    yaml.safe_dump(to_dict(cal), buf, sort_keys=False, default_flow_style=None, width=120)
    path.parent.mkdir(parents=True, exist_ok=True)
    if backup and path.exists():
        shutil.copyfile(path, path.with_suffix(path.suffix + ".bak"))
    path.write_text(HEADER + buf.getvalue())
    return path


def report_dir(yaml_path: str | Path) -> Path:
    p = Path(yaml_path)
    d = p.with_name(p.stem + "_report")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pose_text(T: np.ndarray) -> str:
    p = pose6_from_matrix(np.asarray(T, dtype=float))
    return (f"xyz {np.round(p[:3] * 1e3, 2).tolist()} mm, rxyz {np.round(np.degrees(p[3:]), 3).tolist()} deg "
            "(R = Rz Ry Rx)")


def cameras_report(yaml_path, results, cross=None) -> Path:
    """Per camera: pose, intrinsics, residuals; plots of per-view reprojection RMS, the corner errors, and the
    detected (green) and reprojected (red) corners on the first view."""
    import cv2

    from calibration.charuco import project

    plt = _plt()
    d = report_dir(yaml_path)
    lines = [f"# Camera calibration ({now_iso()})", ""]
    for name, r in results.items():
        it = r.fit.intrinsics
        frame = "cell" if name == "cam_high" else f"{r.arm}_flange"
        lines += [f"## {name}", "",
                  f"- pose of the optical frame in `{frame}`: {pose_text(r.T)}",
                  f"- intrinsics ({r.intrinsics_source}) at {it.width}x{it.height}: fx {it.fx:.2f}, fy {it.fy:.2f}, "
                  f"cx {it.cx:.2f}, cy {it.cy:.2f}, dist {np.round(it.dist, 5).tolist()}",
                  f"- views: {r.views_used} of {r.views_planned} planned had the board; {r.fit.outliers} corners "
                  "dropped as outliers",
                  f"- reprojection RMS {r.fit.rms_px:.3f} px; the views agree within {r.fit.spread_mm:.2f} mm / "
                  f"{r.fit.spread_deg:.3f} deg (RMS)",
                  f"- board {'on the right flange (bracket)' if name == 'cam_high' else 'in the base frame'}: "
                  f"{pose_text(r.fixed)}", ""]
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        ax[0].bar(range(1, len(r.per_view_rms_px) + 1), r.per_view_rms_px)
        ax[0].set_xlabel("view")
        ax[0].set_ylabel("reprojection RMS (px)")
        e = np.concatenate(r.fit.errors_px)
        ax[1].scatter(e[:, 0], e[:, 1], s=6)
        ax[1].set_xlabel("error x (px)")
        ax[1].set_ylabel("error y (px)")
        ax[1].set_aspect("equal", adjustable="datalim")
        fig.suptitle(f"{name}: reprojection errors")
        fig.tight_layout()
        fig.savefig(d / f"{name}_errors.png", dpi=80)
        plt.close(fig)
        img = cv2.cvtColor(np.ascontiguousarray(r.images[0]), cv2.COLOR_RGB2BGR)
        det = r.dets[0]
        for x, y in det.corners:
            cv2.circle(img, (int(round(x)), int(round(y))), 5, (0, 200, 0), 1)
        F0 = r.flange_poses[0]
        P0 = r.fit.A @ (F0 if name == "cam_high" else np.linalg.inv(F0)) @ r.fit.B   # the chain, view 1
        for x, y in project(r.corners_m[det.ids], P0, it):
            cv2.drawMarker(img, (int(round(x)), int(round(y))), (0, 0, 255), cv2.MARKER_CROSS, 6, 1)
        cv2.imwrite(str(d / f"{name}_corners.png"), img)
        lines += [f"![reprojection errors]({name}_errors.png)", "",
                  f"![detected (green) and reprojected (red) corners, view 1]({name}_corners.png)", ""]
    if cross is not None:
        lines += ["## Cross-check of the bases", "",
                  f"The table board seen by both wrist cameras puts the left base at {pose_text(cross)} in the cell "
                  "(compare with `python -m calibration bases`).", ""]
    out = d / "cameras.md"
    out.write_text("\n".join(lines))
    return out


def bases_report(yaml_path, res) -> Path:
    plt = _plt()
    d = report_dir(yaml_path)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(range(1, len(res.residuals_mm) + 1), res.residuals_mm)
    ax.set_xlabel("touched point")
    ax.set_ylabel("residual (mm)")
    fig.tight_layout()
    fig.savefig(d / "bases_residuals.png", dpi=80)
    plt.close(fig)
    lines = [f"# Base calibration ({now_iso()})", "",
             f"- left base in the cell (right base) frame: {pose_text(res.T_cell_left)}",
             f"- residuals per point (mm): {np.round(res.residuals_mm, 3).tolist()}", "",
             "| point | left tip (mm, left base) | right tip (mm, cell) |", "|---|---|---|"]
    for k, (a, b) in enumerate(zip(res.p_left, res.p_right)):
        lines.append(f"| {k + 1} | {np.round(a * 1e3, 2).tolist()} | {np.round(b * 1e3, 2).tolist()} |")
    lines += ["", "![residuals](bases_residuals.png)", ""]
    out = d / "bases.md"
    out.write_text("\n".join(lines))
    return out


def gripper_report(yaml_path, sweeps: dict, cal: CalibrationConfig) -> Path:
    plt = _plt()
    d = report_dir(yaml_path)
    lines = [f"# Gripper calibration ({now_iso()})", ""]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for arm, s in sweeps.items():
        t = cal.arm(arm).gripper
        ax.plot(t.command, t.gap_mm, "o-", label=f"{arm}: gap vs command")
        ax.plot(t.feedback, t.gap_mm, "x--", label=f"{arm}: gap vs feedback")
        lines += [f"## {arm}", "", "| command | feedback | gap (mm) |", "|---|---|---|"]
        lines += [f"| {c:.3f} | {f:.3f} | {g:.1f} |" for c, f, g in zip(t.command, t.feedback, t.gap_mm)]
        lines += ["", f"Stroke {min(t.gap_mm):.1f} .. {max(t.gap_mm):.1f} mm; the contract's 0 .. 1 (0 .. 120 mm) is "
                  "clipped to it by the driver.", ""]
    ax.plot([0, 1], [0, 120], "k:", label="contract (linear, 120 mm)")
    ax.set_xlabel("gripper fraction")
    ax.set_ylabel("finger gap (mm)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(d / "gripper_stroke.png", dpi=80)
    plt.close(fig)
    lines += ["![stroke](gripper_stroke.png)", ""]
    out = d / "gripper.md"
    out.write_text("\n".join(lines))
    return out
