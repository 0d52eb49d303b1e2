"""The cell's URDF, generated from the one DH table (``contract.DH_MODIFIED``) and the calibration YAML.

``cell_urdf(calibration)`` describes the whole cell in the **cell frame** (root link ``cell``, the right arm's
base frame): per arm a fixed joint ``cell -> <arm>_base_link`` at the calibrated base pose, the revolute joints
``<arm>_joint1..7`` (the data contract's joint names) with the RM75-6s limits and speeds, a fixed ``<arm>_flange``,
the OmniPicker (``<arm>_gripper`` with the prismatic finger joint ``<arm>_finger_a`` and its mimic
``<arm>_finger_b``), the grasp centre ``<arm>_tcp``, and each camera's optical frame (``cam_high_optical_frame`` on
``cell``, ``cam_<arm>_wrist_optical_frame`` on the flange) at its calibrated mount. RViz, Foxglove,
``robot_state_publisher``, MoveIt and Pinocchio read it; ``/joint_states`` from the bring-up's description node
drives it (the gripper's opening fraction mapped to ``<arm>_finger_a`` in metres).

``arm_urdf()`` is one arm alone (root ``base_link``, joints ``joint1..7``, frames ``flange`` and ``tcp``, no
finger joints): what ``kinematics.build_pinocchio_model()`` parses for the teleop IK.

Geometry is simple (cylinders, spheres, boxes) and the same shapes the simulated cell uses; inertias are those of
solid cylinders with the links' masses, enough for visualisation and gravity sketches.

CLI: ``python -m ate_description.urdf [--calibration FILE] [--output FILE]`` (``generate_urdf`` once installed);
the committed ``urdf/ate_cell.urdf`` is the default calibration's, for tools that read files (a test keeps it
in step).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from ate_description import contract
from ate_description.calibration import CELL_FRAME, CalibrationConfig, load_calibration
from ate_description.errors import UserError
from ate_description.kinematics import joint_placements, pose6_from_matrix

DEFAULT_URDF = Path(__file__).resolve().parents[1] / "urdf" / "ate_cell.urdf"
"""The committed URDF of the default calibration (installed to share/ate_description/urdf/)."""

ROBOT_NAME = "ate_dual_rm75"
_ARM_RGBA = {"left": "0.85 0.85 0.88 1", "right": "0.80 0.82 0.90 1", "": "0.85 0.85 0.88 1"}
_GRIPPER_RGBA = "0.15 0.15 0.17 1"
_FINGER_RGBA = "0.2 0.2 0.2 1"


def _f(v) -> str:
    # Rounding noise of the DH products (1e-17) is written as 0, so the file reads like the table.
    return " ".join(f"{(float(x) if abs(x) > 1e-12 else 0.0):.12g}" for x in np.asarray(v, dtype=float).reshape(-1))


def _origin(T: np.ndarray) -> str:
    """URDF origin of a 4x4: xyz, and rpy with R = Rz(yaw) Ry(pitch) Rx(roll) (RealMan's pose-vector order)."""
    p = pose6_from_matrix(np.asarray(T, dtype=float))
    return f'<origin xyz="{_f(p[:3])}" rpy="{_f(p[3:])}"/>'


def _cylinder_inertial(mass: float, radius: float, length: float, T: np.ndarray) -> str:
    """Solid cylinder of ``mass`` along the z axis of the frame ``T`` (relative to the link)."""
    length = max(length, 1e-3)
    ixx = mass * (3 * radius ** 2 + length ** 2) / 12.0
    izz = mass * radius ** 2 / 2.0
    return (f'<inertial>{_origin(T)}<mass value="{mass:.6g}"/>'
            f'<inertia ixx="{ixx:.6g}" ixy="0" ixz="0" iyy="{ixx:.6g}" iyz="0" izz="{izz:.6g}"/></inertial>')


def _segment_frame(p: np.ndarray) -> tuple[np.ndarray, float]:
    """Frame at the middle of the segment 0 -> p with z along it, and its length."""
    length = float(np.linalg.norm(p))
    T = np.eye(4)
    T[:3, 3] = p / 2.0
    if length > 1e-9:
        z = p / length
        x = np.cross([0.0, 1.0, 0.0], z) if abs(z[1]) < 0.9 else np.cross([1.0, 0.0, 0.0], z)
        x /= np.linalg.norm(x)
        T[:3, :3] = np.column_stack([x, np.cross(z, x), z])
    return T, length


def _link(name: str, visuals: list[str] = (), inertial: str = "") -> str:
    return f'<link name="{name}">{"".join(visuals)}{inertial}</link>'


def _visual(geometry: str, T: np.ndarray, rgba: str) -> str:
    return (f'<visual>{_origin(T)}<geometry>{geometry}</geometry>'
            f'<material name=""><color rgba="{rgba}"/></material></visual>')


def _fixed(name: str, parent: str, child: str, T: np.ndarray) -> str:
    return f'<joint name="{name}" type="fixed"><parent link="{parent}"/><child link="{child}"/>{_origin(T)}</joint>'


def _arm(prefix: str, with_gripper: bool) -> list[str]:
    """Links and joints of one RM75-6s from ``<prefix>base_link`` to ``<prefix>flange`` (+ the OmniPicker)."""
    p = prefix
    rgba = _ARM_RGBA.get(prefix.rstrip("_"), _ARM_RGBA[""])
    placements = joint_placements()
    lim = contract.JOINT_LIMITS_RAD
    r = contract.ARM_LINK_RADIUS_M
    out: list[str] = []
    # The column below joint 1 (d1) is symmetric about J1's axis: it belongs to the base.
    col, col_len = _segment_frame(placements[0][:3, 3])
    out.append(_link(f"{p}base_link", [_visual(f'<cylinder radius="{r * 1.2:.6g}" length="{col_len:.6g}"/>', col,
                                               rgba)],
                     _cylinder_inertial(contract.ARM_BASE_MASS_KG, r * 1.2, col_len, col)))
    parent = f"{p}base_link"
    for i in range(contract.N_ARM_JOINTS):
        link = f"{p}link{i + 1}"
        if i + 1 < contract.N_ARM_JOINTS and np.linalg.norm(placements[i + 1][:3, 3]) > 1e-6:
            seg, length = _segment_frame(placements[i + 1][:3, 3])   # to the next joint's origin
            geom = f'<cylinder radius="{r:.6g}" length="{length:.6g}"/>'
        else:   # joints 2, 4, 6 sit at the previous origin (a joint housing); link 7 carries the flange
            seg, length = np.eye(4), 2 * r
            geom = f'<sphere radius="{r * 1.15:.6g}"/>'
        out.append(_link(link, [_visual(geom, seg, rgba)],
                         _cylinder_inertial(contract.ARM_LINK_MASS_KG[i], r, length, seg)))
        out.append(f'<joint name="{p}joint{i + 1}" type="revolute"><parent link="{parent}"/><child link="{link}"/>'
                   f'{_origin(placements[i])}<axis xyz="0 0 1"/>'
                   f'<limit lower="{-lim[i]:.12g}" upper="{lim[i]:.12g}" effort="60" '
                   f'velocity="{contract.JOINT_MAX_SPEED_RAD_S[i]:.12g}"/></joint>')
        parent = link
    out.append(_link(f"{p}flange"))
    out.append(_fixed(f"{p}flange_joint", parent, f"{p}flange", np.eye(4)))
    tcp = np.eye(4)
    tcp[2, 3] = contract.GRIPPER_TCP_OFFSET_M
    out.append(_link(f"{p}tcp"))
    out.append(_fixed(f"{p}tcp_joint", f"{p}flange", f"{p}tcp", tcp))
    if with_gripper:
        out += _gripper(p)
    return out


def _gripper(p: str) -> list[str]:
    palm = np.eye(4)
    palm[2, 3] = contract.GRIPPER_PALM_LEN_M / 2
    size = f"0.07 0.09 {contract.GRIPPER_PALM_LEN_M:.6g}"
    out = [_link(f"{p}gripper", [_visual(f'<box size="{size}"/>', palm, _GRIPPER_RGBA)],
                 f'<inertial>{_origin(palm)}<mass value="{contract.GRIPPER_MASS_KG:.6g}"/>'
                 f'<inertia ixx="5e-4" ixy="0" ixz="0" iyy="5e-4" iyz="0" izz="5e-4"/></inertial>'),
           _fixed(f"{p}gripper_joint", f"{p}flange", f"{p}gripper", np.eye(4))]
    fh = contract.GRIPPER_FINGER_HALF_THICK_M
    fz = contract.GRIPPER_PALM_LEN_M + contract.GRIPPER_FINGER_LEN_M / 2
    finger = f'<box size="0.024 {2 * fh:.6g} {contract.GRIPPER_FINGER_LEN_M:.6g}"/>'
    for name, sign in (("finger_a", 1.0), ("finger_b", -1.0)):
        T = np.eye(4)
        T[:3, 3] = (0.0, sign * fh, fz)
        out.append(_link(f"{p}{name}", [_visual(finger, np.eye(4), _FINGER_RGBA)],
                         '<inertial><mass value="0.05"/>'
                         '<inertia ixx="1e-5" ixy="0" ixz="0" iyy="1e-5" iyz="0" izz="1e-5"/></inertial>'))
        # One motor drives both fingers symmetrically (the OmniPicker's linkage): finger_b mimics finger_a.
        mimic = f'<mimic joint="{p}finger_a" multiplier="1" offset="0"/>' if name == "finger_b" else ""
        out.append(f'<joint name="{p}{name}" type="prismatic"><parent link="{p}gripper"/><child link="{p}{name}"/>'
                   f'{_origin(T)}<axis xyz="0 {sign:g} 0"/>'
                   f'<limit lower="0" upper="{contract.GRIPPER_FINGER_MAX_M:.6g}" effort="120" velocity="0.2"/>'
                   f'{mimic}</joint>')
    return out


def _wrap(name: str, body: list[str]) -> str:
    return ('<?xml version="1.0"?>\n'
            "<!-- Generated by ate_description.urdf from the DH table and the calibration YAML: do not edit; "
            "regenerate with `python -m ate_description.urdf`. -->\n"
            f"<robot name={quoteattr(name)}>\n  " + "\n  ".join(body) + "\n</robot>\n")


def cell_urdf(calibration: CalibrationConfig | None = None) -> str:
    """URDF of the cell: both arms on their calibrated bases, grippers, flange, tcp and camera frames."""
    cal = calibration if calibration is not None else load_calibration()
    body = [_link(CELL_FRAME)]
    for arm in contract.ARMS:
        body += _arm(f"{arm}_", with_gripper=True)
        body.append(_fixed(f"{CELL_FRAME}_to_{arm}_base", CELL_FRAME, f"{arm}_base_link", cal.t_cell_base(arm)))
    for name in contract.CAMERA_NAMES:
        cam = cal.camera(name)
        body.append(_link(f"{name}_optical_frame"))   # on "cell" or "<arm>_flange"
        body.append(_fixed(f"{name}_mount", cam.frame, f"{name}_optical_frame", cam.transform()))
    return _wrap(ROBOT_NAME, body)


def arm_urdf() -> str:
    """URDF of one RM75-6s (joints ``joint1..7``, frames ``flange`` and ``tcp``) for Pinocchio."""
    return _wrap("rm75_6s", _arm("", with_gripper=False))


def finger_position_m(opening: float) -> float:
    """``<arm>_finger_a`` joint position (m) of a gripper opening fraction (0 = closed .. 1 = open)."""
    return float(np.clip(opening, 0.0, 1.0)) * contract.GRIPPER_FINGER_MAX_M


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ate_description.urdf",
                                 description="Write the cell's URDF from the DH table and a calibration YAML.")
    ap.add_argument("--calibration", default=None,
                    help="calibration YAML (default: the bring-up's calibration.yaml)")
    ap.add_argument("--output", default="-", help="URDF file to write, - for standard output (default)")
    args = ap.parse_args(argv)
    try:
        text = cell_urdf(load_calibration(args.calibration))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
