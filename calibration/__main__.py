"""``python -m calibration show | wrist-rotation``: inspect the calibration YAML, estimate an arm's
T_rotation.

    python -m calibration show [--config calibration.yaml]
    python -m calibration wrist-rotation --arm left --pairs pairs.npz [--output new_calibration.yaml]
    python -m calibration wrist-rotation --arm left --ip 192.168.1.101 [--hand right] [--seconds 2]

``--pairs``: an .npz with ``wrist`` (N, 4, 4; avp_stream's Z-up wrist poses) and ``flange`` (N, 4, 4) or ``q``
(N, 7; joint angles, rad), recorded with the hand holding the gripper (see calibration/wrist_rotation.py).
``--ip``: the known-pose procedure, live from the headset. ``--output`` writes the whole calibration with the
new T_rotation of that arm (YAML comments are not kept: review it, then replace the bring-up's file).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ate_description.config import dump_yaml
from ate_description.errors import UserError
from ate_description.calibration import default_calibration_path, load_calibration


def _rpy_deg(R: np.ndarray) -> np.ndarray:
    from ate_description.kinematics import pose6_from_matrix

    T = np.eye(4)
    T[:3, :3] = R
    return np.degrees(pose6_from_matrix(T)[3:])


def _show(args) -> int:
    from ate_description.kinematics import fk, pose6_from_matrix

    path = args.config or default_calibration_path()
    cal = load_calibration(path)
    print(f"calibration: {path}")
    for arm in ("left", "right"):
        c = cal.arm(arm)
        R = c.rotation()
        print(f"\n[{arm}]")
        matrix = np.array2string(R, precision=4, suppress_small=True).replace("\n", "\n" + " " * 14)
        print("  t_rotation:", matrix)
        print(f"  t_rotation as rx ry rz (deg, R = Rz Ry Rx): {np.round(_rpy_deg(R), 2).tolist()}")
        for key in ("home_q_rad", "init_q_rad"):
            q = np.asarray(getattr(c, key))
            p = pose6_from_matrix(fk(q))
            xyz, rxyz = np.round(p[:3], 3).tolist(), np.round(np.degrees(p[3:]), 1).tolist()
            q_deg = np.round(np.degrees(q), 1).tolist()
            print(f"  {key} (deg): {q_deg}  flange xyz (m) {xyz} rxyz (deg) {rxyz}")
        print(f"  gripper range: closed {c.gripper_closed} .. open {c.gripper_open}")
    uncal = [n for n, c in cal.cameras.items() if c.fx <= 0]
    if uncal:
        print(f"\ncameras without intrinsics (placeholders): {', '.join(uncal)}")
    return 0


def _record_known_pose(ip: str, hand: str, seconds: float):
    from teleop.avp import AvpConfig, AvpPoseSource

    src = AvpPoseSource(AvpConfig(ip=ip, hand=hand))
    src.connect()
    wrists, heads = [], []
    try:
        print(f"hold still for {seconds:g} s ...", flush=True)
        end, last_seq = time.monotonic() + seconds, -1
        while time.monotonic() < end:
            s = src.latest()
            if s is not None and s.seq != last_seq:
                wrists.append(s.wrist)
                heads.append(s.head)
                last_seq = s.seq
            time.sleep(0.01)
    finally:
        src.close()
    return np.array(wrists), np.array(heads)


def _wrist_rotation(args) -> int:
    from calibration.wrist_rotation import estimate_from_known_pose, estimate_from_pairs
    from ate_description.kinematics import fk

    path = args.config or default_calibration_path()
    cal = load_calibration(path)
    c = cal.arm(args.arm)
    if bool(args.pairs) == bool(args.ip):
        raise UserError("give either --pairs FILE or --ip ADDRESS")
    if args.pairs:
        try:
            data = np.load(args.pairs)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read {args.pairs}: {e}") from e
        if "wrist" not in data or not ({"flange", "q"} & set(data.files)):
            raise UserError(f"{args.pairs} needs arrays 'wrist' and 'flange' or 'q'; it has {data.files}")
        wrist = np.asarray(data["wrist"], dtype=float)
        flange = (np.asarray(data["flange"], dtype=float) if "flange" in data.files
                  else np.array([fk(q) for q in np.asarray(data["q"], dtype=float)]))
        R_rot, quality = estimate_from_pairs(wrist[:, :3, :3], flange[:, :3, :3])
        print(f"{len(wrist)} pairs; largest residual {quality:.2f} deg")
    else:
        wrists, heads = _record_known_pose(args.ip, args.hand, args.seconds)
        R_rot, quality = estimate_from_known_pose(wrists, heads, fk(np.asarray(c.init_q_rad)))
        print(f"{len(wrists)} samples; the hand moved by up to {quality:.2f} deg while recording")
    print(f"t_rotation ({args.arm}):")
    print(np.array2string(R_rot, precision=6, suppress_small=True))
    print(f"as rx ry rz (deg): {np.round(_rpy_deg(R_rot), 2).tolist()}")
    if args.output:
        c.t_rotation = np.round(R_rot, 9).tolist()
        cal.validate()
        dump_yaml(cal, args.output)
        print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calibration", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("show", help="print the calibration with the flange poses of home/init postures")
    p.add_argument("--config", help="calibration YAML (default: the bring-up's calibration.yaml)")
    p = sub.add_parser("wrist-rotation", help="estimate an arm's T_rotation (pairs file or live known pose)")
    p.add_argument("--arm", required=True, choices=("left", "right"))
    p.add_argument("--config", help="calibration YAML to start from (default: the bring-up's)")
    p.add_argument("--pairs", help=".npz with 'wrist' (N,4,4) and 'flange' (N,4,4) or 'q' (N,7)")
    p.add_argument("--ip", help="Vision Pro IP: record the known pose live")
    p.add_argument("--hand", default="right", choices=("left", "right"))
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--output", help="write the full calibration YAML with the new t_rotation here")
    args = ap.parse_args(argv)
    try:
        return _show(args) if args.cmd == "show" else _wrist_rotation(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
