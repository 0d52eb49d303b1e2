"""``python -m calibration cameras | bases | gripper | show | wrist-rotation``: calibrate the cell into one YAML.

    python -m calibration cameras [--robot real|emulated|sim] [--cameras cam_high,cam_left_wrist,cam_right_wrist]
    python -m calibration bases   [--points 4] [--tip-mm 130]
    python -m calibration gripper [--arms left,right] [--steps 5] [--left-gaps-mm 118,89,60,31,2]
    python -m calibration show [--config calibration.yaml]
    python -m calibration wrist-rotation --arm left --pairs pairs.npz [--output new_calibration.yaml]
    python -m calibration wrist-rotation --arm left --ip 192.168.1.101 [--hand right] [--seconds 2]

``cameras``, ``bases`` and ``gripper`` guide the operator step by step (press Enter after each instruction), print
their progress, update the calibration (``--config``, default the bring-up's calibration.yaml; written to
``--output``, default the same file, the previous one kept as ``.bak``) and write a report (markdown + plots) into
``<output stem>_report/``. ``--robot sim`` runs the procedure on the simulated cell (a dry run; needs ``--output``).
docs/calibration.md says what each procedure measures and how.

``wrist-rotation --pairs``: an .npz with ``wrist`` (N, 4, 4; avp_stream's Z-up wrist poses) and ``flange`` (N, 4, 4)
or ``q`` (N, 7; joint angles, rad), recorded with the hand holding the gripper (see calibration/wrist_rotation.py).
``--ip``: the known-pose procedure, live from the headset. ``--output`` writes the whole calibration with the
new T_rotation of that arm (YAML comments are not kept: review it, then replace the bring-up's file).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

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
        if c.gripper.calibrated():
            g = c.gripper
            print(f"  gripper stroke: {min(g.gap_mm):.1f} .. {max(g.gap_mm):.1f} mm over commands "
                  f"{g.command[0]:.2f} .. {g.command[-1]:.2f} ({len(g.command)} points), force {g.force}")
        else:
            print(f"  gripper stroke: not calibrated (fractions taken as linear 0 .. 120 mm), force {c.gripper.force}")
    from calibration.report import pose_text

    print(f"\nleft base in the cell (right base) frame: {pose_text(cal.t_cell_base('left'))}")
    for name, cam in cal.cameras.items():
        intr = (f"fx {cam.fx:.1f} fy {cam.fy:.1f} cx {cam.cx:.1f} cy {cam.cy:.1f} at {cam.width}x{cam.height} "
                f"({cam.intrinsics_source})" if cam.fx > 0 else "intrinsics not calibrated")
        print(f"\n[{name}] in {cam.frame}: {pose_text(cam.transform())}\n  {intr}")
        if cam.residuals:
            print(f"  residuals: {cam.residuals}")
    for proc, rec in cal.procedures.items():
        print(f"\nprocedure {proc}: {rec.date or 'no date'}; residuals {rec.residuals}"
              + (f"; report {rec.report}" if rec.report else ""))
    return 0


def _start(args):
    """(calibration to start from, where to write it)."""
    src = Path(args.config) if args.config else default_calibration_path()
    if args.robot == "sim" and not args.output:
        raise UserError("--robot sim is a dry run on the simulated cell: give --output FILE (the bring-up's "
                        "calibration is not overwritten by a simulation)")
    return load_calibration(src), Path(args.output) if args.output else src


def _rig(args, cal, arms=(), cameras=(), grippers=()):
    if args.robot == "sim":
        import copy

        from calibration.sim_rig import SimRig

        # the twin of the cell as calibrated so far
        return SimRig(copy.deepcopy(cal), operator=_console(args), cameras=cameras)
    from calibration.rig import hardware_rig

    return hardware_rig(args.drivers_config, args.robot, arms=arms, cameras=cameras, grippers=grippers,
                        operator=_console(args))


def _console(args):
    if args.robot == "sim":
        from calibration.sim_rig import SimOperator

        class _Narrating(SimOperator):
            def say(self, text):
                print(text, flush=True)

            def do(self, key, text):
                print(f">>> {text} (the simulated operator does it)", flush=True)
                super().do(key, text)

        op = _Narrating()
        op.measurements.update(getattr(args, "answers", {}))
        return op
    from calibration.rig import ConsoleOperator

    return ConsoleOperator(getattr(args, "answers", {}), assume_done=args.yes)


def _finish(cal, out: Path, proc: str, report_fn) -> int:
    from calibration.report import now_iso, write_calibration

    rec = cal.procedures[proc]
    rec.date = now_iso()
    report = report_fn()
    rec.report = str(report.relative_to(out.parent)) if report.is_relative_to(out.parent) else str(report)
    write_calibration(cal, out)
    print(f"\nwrote {out} (previous kept as {out.name}.bak when it existed); report: {report}")
    return 0


def _cameras(args) -> int:
    from calibration.cameras import CamerasConfig, Limits, base_cross_check, run_cameras
    from calibration.charuco import BoardSpec
    from calibration.report import cameras_report

    try:
        sx, sy = (int(v) for v in args.squares.lower().split("x"))
    except ValueError:
        raise UserError(f"--squares must look like 7x5, got {args.squares!r}") from None
    board = BoardSpec(sx, sy, args.square_mm / 1e3, args.marker_mm / 1e3, args.dictionary)
    board.validate()
    if args.print_board:
        import cv2

        cv2.imwrite(args.print_board, board.image(px_per_square=int(args.print_dpi / 25.4 * args.square_mm)))
        print(f"wrote {args.print_board}: print it at {args.print_dpi} dpi (squares of {args.square_mm:g} mm; "
              "measure one after printing and pass the measured size as --square-mm)")
        return 0
    cameras = tuple(c.strip() for c in args.cameras.split(",") if c.strip())
    cfg = CamerasConfig(board=board, cameras=cameras,
                        limits=Limits(max_rms_px=args.max_rms_px, max_spread_mm=args.max_spread_mm))
    cfg.high.views = args.views_high
    cfg.wrist.views = args.views_wrist
    cfg.wrist.pivot_m = args.wrist_distance_m
    cal, out = _start(args)
    arms = ["right"] if "cam_high" in cameras else []
    arms += [c.split("_")[1] for c in cameras if c != "cam_high" and c.split("_")[1] not in arms]
    rig = _rig(args, cal, arms=arms, cameras=cameras)
    try:
        results = run_cameras(rig, cal, cfg)
    finally:
        rig.close()
    return _finish(cal, out, "cameras", lambda: cameras_report(out, results, base_cross_check(results)))


def _bases(args) -> int:
    from calibration.bases import BasesConfig, run_bases
    from calibration.report import bases_report

    cal, out = _start(args)
    rig = _rig(args, cal, arms=("left", "right"))
    cfg = BasesConfig(points=args.points, tip_m=args.tip_mm / 1e3, max_residual_mm=args.max_residual_mm)
    try:
        res = run_bases(rig, cal, cfg)
    finally:
        rig.close()
    return _finish(cal, out, "bases", lambda: bases_report(out, res))


def _gripper(args) -> int:
    from calibration.gripper import GripperStepConfig, run_gripper
    from calibration.report import gripper_report

    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    bad = set(arms) - {"left", "right"}
    if bad:
        raise UserError(f"--arms takes left and/or right, got {sorted(bad)}")
    answers = {}
    for arm in arms:
        given = getattr(args, f"{arm}_gaps_mm")
        if given:
            try:
                gaps = [float(v) for v in given.split(",")]
            except ValueError:
                raise UserError(f"--{arm}-gaps-mm must be numbers separated by commas, got {given!r}") from None
            if len(gaps) != args.steps:
                raise UserError(f"--{arm}-gaps-mm has {len(gaps)} values; the sweep has --steps {args.steps} "
                                "(from open to closed)")
            answers.update({f"gap_{arm}_{k}": g for k, g in enumerate(gaps)})
    args.answers = answers
    cal, out = _start(args)
    rig = _rig(args, cal, grippers=arms)
    try:
        sweeps = run_gripper(rig, cal, arms, GripperStepConfig(steps=args.steps))
    finally:
        rig.close()
    return _finish(cal, out, "gripper", lambda: gripper_report(out, sweeps, cal))


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
        from ate_description.calibration import ProcedureRecord
        from calibration.report import now_iso, write_calibration

        c.t_rotation = np.round(R_rot, 9).tolist()
        source = f"pairs {args.pairs}" if args.pairs else f"known pose, headset {args.ip}, {args.hand} hand"
        cal.procedures[f"wrist_rotation_{args.arm}"] = ProcedureRecord(
            date=now_iso(), inputs={"source": source},
            residuals={"largest_residual_deg" if args.pairs else "hand_moved_deg": round(float(quality), 4)})
        write_calibration(cal, args.output)
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
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="calibration YAML to start from (default: the bring-up's)")
    common.add_argument("--output", help="where to write it (default: --config, the previous kept as .bak)")
    common.add_argument("--robot", default="real", choices=("real", "emulated", "sim"),
                        help="the lab's cell (drivers.yaml), its emulators, or the simulated cell (dry run)")
    common.add_argument("--drivers-config", help="drivers YAML (default: the bring-up's drivers.yaml)")
    common.add_argument("--yes", action="store_true", help="do not wait for Enter after each instruction "
                                                          "(unattended runs, e.g. --robot emulated)")
    p = sub.add_parser("cameras", parents=[common], help="cam_high in the cell, wrist cameras on their flanges "
                                                         "(ChArUco board, hand-eye)")
    p.add_argument("--cameras", default="cam_high,cam_left_wrist,cam_right_wrist")
    p.add_argument("--squares", default="7x5", help="the board's squares, columns x rows")
    p.add_argument("--square-mm", type=float, default=40.0, help="printed square size, measured")
    p.add_argument("--marker-mm", type=float, default=30.0)
    p.add_argument("--dictionary", default="DICT_4X4_50")
    p.add_argument("--views-high", type=int, default=14)
    p.add_argument("--views-wrist", type=int, default=12)
    p.add_argument("--wrist-distance-m", type=float, default=0.30, help="camera-to-board distance of the wrist "
                                                                        "start poses (the views pivot about it)")
    p.add_argument("--max-rms-px", type=float, default=1.0)
    p.add_argument("--max-spread-mm", type=float, default=5.0)
    p.add_argument("--print-board", metavar="PNG", help="only write the printable board image and exit")
    p.add_argument("--print-dpi", type=int, default=300)
    p = sub.add_parser("bases", parents=[common], help="the left base in the cell frame from touched points")
    p.add_argument("--points", type=int, default=4)
    p.add_argument("--tip-mm", type=float, default=130.0, help="pointer tip along the flange z axis "
                                                               "(the closed fingertips: 130)")
    p.add_argument("--max-residual-mm", type=float, default=3.0)
    p = sub.add_parser("gripper", parents=[common], help="OmniPicker stroke: command/feedback <-> finger gap (mm)")
    p.add_argument("--arms", default="left,right")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--left-gaps-mm", help="the gaps measured at each step, open to closed (else asked for)")
    p.add_argument("--right-gaps-mm")
    args = ap.parse_args(argv)
    run = {"show": _show, "wrist-rotation": _wrist_rotation, "cameras": _cameras, "bases": _bases,
           "gripper": _gripper}[args.cmd]
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\naborted (nothing written)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
