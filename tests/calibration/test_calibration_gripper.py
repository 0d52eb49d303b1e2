"""``python -m calibration gripper`` against the OmniPicker emulator (the real python-can backend on a virtual bus):
the sweep writes the stroke table the operator's measurements imply, and the gripper driver then opens the fingers
to the gap the data contract's (linear-in-mm) fraction asks for."""

import time
import uuid

import pytest

from ate_description.calibration import CalibrationConfig
from ate_description.errors import UserError
from ate_drivers.gripper.omnipicker import OmniPicker
from ate_drivers.gripper.omnipicker_emulator import OmniPickerEmulator
from ate_drivers.gripper_driver import GripperDriver
from calibration.gripper import GripperStepConfig, run_gripper
from calibration.rig import Rig
from calibration.sim_rig import SimOperator


def true_gap_mm(position: float) -> float:
    """The jaw's linkage: the gap grows faster than the gripper's own position fraction (2 .. 118 mm)."""
    return 2.0 + 116.0 * position ** 1.3


@pytest.fixture
def gripper():
    ch = f"calib-{uuid.uuid4().hex[:8]}"
    emu = OmniPickerEmulator(stroke_time_s=0.3).start_virtual(ch)
    backend = OmniPicker(interface="virtual", channel=ch, bus_kwargs={})
    backend.connect()
    yield emu, backend, ch
    backend.disconnect()
    emu.stop()


def _rig(backend, emu):
    # The operator's calliper reads the jaw as it stands.
    op = SimOperator(measurements={f"gap_left_{k}": (lambda: true_gap_mm(emu.position)) for k in range(10)})
    return Rig(operator=op, grippers={"left": backend}), op


def test_sweep_writes_the_stroke_table_and_the_driver_maps_through_it(gripper):
    emu, backend, ch = gripper
    rig, op = _rig(backend, emu)
    cal = CalibrationConfig()
    run_gripper(rig, cal, arms=("left",), cfg=GripperStepConfig(steps=6))
    table = cal.left.gripper
    assert table.command == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    for fb, gap in zip(table.feedback, table.gap_mm):
        assert gap == pytest.approx(true_gap_mm(fb), abs=0.6)       # one byte of feedback is 0.5 mm here
    assert table.gap_mm[0] == pytest.approx(2.0, abs=0.6) and table.gap_mm[-1] == pytest.approx(118.0, abs=0.6)
    cal.validate()
    assert cal.procedures["gripper"].residuals["left.stroke_mm"] == pytest.approx(116.0, abs=1.0)

    # The driver with that table: the contract's 0.5 (60 mm) gives a 60 mm gap, not 0.5 of the gripper's range.
    drv = GripperDriver("left", backend, mapping=table)
    assert drv.ensure_connected()
    for opening in (0.25, 0.5, 0.8):
        assert drv.on_command(opening)
        deadline = time.monotonic() + 3.0
        time.sleep(0.05)
        while time.monotonic() < deadline and abs(emu.position - emu.target) > 1e-3:
            time.sleep(0.02)
        assert true_gap_mm(emu.position) == pytest.approx(opening * 120.0, abs=2.5), opening
        time.sleep(0.1)
        st = drv.tick()
        assert st.position == pytest.approx(opening, abs=0.02)        # the state is in the contract's units again
    assert drv.on_command(1.0)                                        # 120 mm asked, 118 mm is the stroke: clipped
    time.sleep(0.2)
    assert emu.received[-1].position == pytest.approx(1.0, abs=1 / 255)


def test_a_gripper_that_does_not_move_is_a_clear_error(gripper):
    emu, backend, ch = gripper
    emu.stroke_time_s = 1e9                   # powered but stuck: feedback comes, the jaw stays
    rig, _ = _rig(backend, emu)
    with pytest.raises(UserError, match="the left gripper did not move: .*power"):
        run_gripper(rig, CalibrationConfig(), arms=("left",), cfg=GripperStepConfig(steps=4))


def test_measured_gaps_that_do_not_grow_with_the_command_are_refused(gripper):
    emu, backend, ch = gripper
    rig, op = _rig(backend, emu)
    op.measurements.update({f"gap_left_{k}": v for k, v in enumerate([118.0, 80.0, 90.0, 2.0])})  # a misread
    with pytest.raises(UserError, match="measured gaps .* do not grow"):
        run_gripper(rig, CalibrationConfig(), arms=("left",), cfg=GripperStepConfig(steps=4))
