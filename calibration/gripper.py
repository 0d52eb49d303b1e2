"""``python -m calibration gripper``: each OmniPicker's stroke, command/feedback fractions <-> finger gap in mm.

The procedure sweeps each gripper from open to closed in ``steps`` commands (nothing between the fingers), waits at
each until the feedback says it arrived (or stopped moving), records the feedback fraction, and asks the operator for
the gap between the fingertips there (a calliper; or given up front: ``--left-gaps-mm 118,89,...``). It writes the
table into the calibration (``<arm>.gripper``: command, feedback, gap_mm), which only the gripper driver reads: the
data contract's opening fraction stays linear in mm (gap = fraction x 120 mm) and the driver maps it to the command
that gives that gap, clipped to the measured stroke (the open/close limits), and maps the feedback back.

The force that holds a bun without crushing it is set by hand (docs/calibration.md): ``<arm>.gripper.force``.
The sweep talks to the gripper backend directly (one gripper, no arm moves); stop the bring-up first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ate_description.calibration import CalibrationConfig, GripperCalibration, ProcedureRecord
from ate_description.errors import UserError
from calibration.report import now_iso
from calibration.rig import Rig


@dataclass
class GripperStepConfig:
    steps: int = 5
    """Commands swept from fully open (1) to closed (0), evenly spaced."""
    speed: float = 0.5
    force: float = 0.3
    """Force fraction during the sweep: enough to move the empty jaw, gentle on a finger caught in it."""
    settle_timeout_s: float = 5.0
    min_travel: float = 0.05
    """Feedback must change by at least this fraction over the sweep, or the gripper did not move."""


@dataclass
class GripperSweep:
    arm: str
    command: list[float]
    feedback: list[float]
    gap_mm: list[float]
    states: list[int]


def _wait_arrived(rig: Rig, arm: str, target: float, cfg: GripperStepConfig):
    g = rig.grippers[arm]
    t_end = rig.now_s() + cfg.settle_timeout_s
    last, still = None, 0
    while True:
        rig.wait_s(0.05)
        st = g.read_state()
        if st is None:
            raise UserError(f"no feedback from the {arm} gripper: check its CAN adapter and channel (drivers.yaml "
                            f"{arm}.gripper), its power (24 V tool voltage) and that it is initialised")
        if st.fault:
            raise UserError(f"the {arm} gripper reports fault {st.fault}; clear it (power-cycle) and run again")
        if st.state == 0 and abs(st.position - target) < 0.02:
            return st
        still = still + 1 if (last is not None and abs(st.position - last) < 1e-3) else 0
        if still >= 6:                         # 0.3 s without motion: stalled or blocked, take it as it is
            return st
        last = st.position
        if rig.now_s() > t_end:
            return st


def sweep(rig: Rig, arm: str, cfg: GripperStepConfig) -> GripperSweep:
    if arm not in rig.grippers:
        raise UserError(f"this rig has no {arm} gripper (it has {sorted(rig.grippers)})")
    op = rig.operator
    g = rig.grippers[arm]
    commands = list(np.linspace(1.0, 0.0, cfg.steps))
    g.command(1.0, cfg.force, cfg.speed)
    _wait_arrived(rig, arm, 1.0, cfg)
    fb, gaps, states = [], [], []
    for k, c in enumerate(commands):
        g.command(float(c), cfg.force, cfg.speed)
        st = _wait_arrived(rig, arm, float(c), cfg)
        fb.append(float(st.position))
        states.append(int(st.state))
        op.say(f"  [{k + 1}/{len(commands)}] {arm}: command {c:.3f} -> feedback {st.position:.3f}")
        if k == len(commands) - 1 or k == 1:
            if max(fb) - min(fb) < cfg.min_travel:
                raise UserError(f"the {arm} gripper did not move: its feedback stayed at {fb[0]:.3f} while commanded "
                                f"from 1.0 to {c:.2f}; check its power and initialisation, that the jaw is free, and "
                                "that the CAN id in drivers.yaml is this gripper's")
        gaps.append(op.measure(f"gap_{arm}_{k}", f"finger gap of the {arm} gripper at command {c:.2f} (mm)"))
    g.command(1.0, cfg.force, cfg.speed)      # leave it open
    return GripperSweep(arm, [float(c) for c in commands], fb, gaps, states)


def table_from_sweep(s: GripperSweep, force: float) -> GripperCalibration:
    """The driver's table (increasing in command) from a sweep; refuses a stroke that is not monotonic."""
    order = np.argsort(s.command)
    cmd = [round(s.command[i], 6) for i in order]
    fb = [round(s.feedback[i], 6) for i in order]
    gap = [round(float(s.gap_mm[i]), 3) for i in order]
    if np.any(np.diff(gap) <= 0):
        raise UserError(f"the {s.arm} gripper's measured gaps {gap} mm do not grow with the command {cmd}: measure "
                        "again (fingertip to fingertip, at each step)")
    if np.any(np.diff(fb) <= 0):
        raise UserError(f"the {s.arm} gripper's feedback {fb} does not grow with the command {cmd}: the jaw was "
                        "blocked during the sweep (nothing may sit between the fingers)")
    table = GripperCalibration(command=cmd, feedback=fb, gap_mm=gap, force=force)
    table.validate(s.arm)
    return table


def run_gripper(rig: Rig, cal: CalibrationConfig, arms=("left", "right"),
                cfg: GripperStepConfig | None = None) -> dict[str, GripperSweep]:
    cfg = cfg or GripperStepConfig()
    if cfg.steps < 2:
        raise UserError("the gripper sweep needs at least 2 steps")
    out = {}
    for i, arm in enumerate(arms):
        rig.operator.say(f"[{i + 1}/{len(arms)}] {arm} gripper: sweep from open to closed")
        rig.operator.do(f"gripper_free_{arm}", f"Clear the {arm} gripper's jaw (nothing between the fingers) and have "
                                               "a calliper ready")
        s = sweep(rig, arm, cfg)
        cal.arm(arm).gripper = table_from_sweep(s, cal.arm(arm).gripper.force)
        out[arm] = s
        rig.operator.say(f"  {arm}: stroke {s.gap_mm[-1]:.1f} .. {s.gap_mm[0]:.1f} mm")
    cal.procedures["gripper"] = ProcedureRecord(
        date=now_iso(),
        inputs={"steps": str(cfg.steps), "arms": " ".join(arms)},
        residuals={f"{a}.stroke_mm": round(float(max(s.gap_mm) - min(s.gap_mm)), 3) for a, s in out.items()})
    return out
