"""OmniPicker backend through python-can against the gripper emulator: virtual bus and a pty (USB-CAN-A framing)."""

from __future__ import annotations

import time
import uuid

import pytest

from ate_drivers.gripper import omnipicker_protocol as proto
from ate_drivers.gripper.omnipicker import OmniPicker
from ate_drivers.gripper.omnipicker_emulator import OmniPickerEmulator
from ate_drivers.interfaces import GripperBackend


def _wait(pred, timeout=3.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_byte_layout_round_trips_and_rejects_bad_input():
    assert proto.encode_command(1.0, 0.5, 0.0) == bytes([0, 255, 128, 0, 255, 255, 0, 0])
    c = proto.decode_command(proto.encode_command(0.2, 1.0, 0.4))
    assert c.position == pytest.approx(0.2, abs=1 / 255) and c.speed == pytest.approx(0.4, abs=1 / 255)
    fb = proto.decode_feedback(bytes([4, 2, 51, 0, 10, 0, 0, 0]))
    assert (fb.fault, fb.state, fb.fault_text) == (4, 2, "over-limit") and fb.position == pytest.approx(0.2)
    with pytest.raises(ValueError):
        proto.encode_command(1.5)


@pytest.fixture(params=["virtual", "pty"])
def gripper(request):
    emu = OmniPickerEmulator(position=1.0, stroke_time_s=0.5)
    if request.param == "virtual":
        ch = f"omni-{uuid.uuid4().hex}"
        emu.start_virtual(ch)
        g = OmniPicker(interface="virtual", channel=ch, bus_kwargs={})
    else:
        emu.start_pty()
        g = OmniPicker(interface="seeedstudio", channel=emu.channel)
    g.connect()
    yield g, emu
    g.disconnect()
    emu.stop()


def test_command_moves_the_jaw_at_finite_speed_and_feedback_reports_it(gripper):
    g, emu = gripper
    assert isinstance(g, GripperBackend)
    assert _wait(lambda: g.read_state() is not None)
    g.command(0.0, force=0.5, speed=1.0)
    assert _wait(lambda: len(emu.received) == 1)
    assert emu.received[0].position == 0.0 and emu.received[0].force == pytest.approx(0.5, abs=1 / 255)
    assert _wait(lambda: g.read_state().state == 1)            # moving, not teleported
    assert 0.05 < g.read_state().position < 0.95 or g.read_state().state == 1
    assert _wait(lambda: g.read_state().state == 0 and g.read_state().position < 0.01)


def test_closing_on_an_object_reports_stalled(gripper):
    g, emu = gripper
    emu.stall_at = 0.6
    g.command(0.0)
    assert _wait(lambda: (s := g.read_state()) is not None and s.state == 2)
    assert g.read_state().position == pytest.approx(0.6, abs=0.01)


def test_fault_codes_surface_and_a_silent_gripper_reads_as_no_state(gripper):
    g, emu = gripper
    emu.faults.fault = 1
    assert _wait(lambda: (s := g.read_state()) is not None and s.fault == 1)
    emu.faults.silent = True
    assert _wait(lambda: g.read_state() is None, timeout=2.0)


def test_unopenable_adapter_is_a_clear_connection_error(tmp_path):
    with pytest.raises(ConnectionError, match="cannot open CAN adapter"):
        OmniPicker(interface="seeedstudio", channel=str(tmp_path / "no-such-tty")).connect()
