"""Gripper driver: safety on commands, holding on the e-stop, reconnecting after CAN errors, feedback stamped
with its capture time, fault codes and a silent gripper in diagnostics (python-can's virtual bus + emulator)."""

from __future__ import annotations

import time
import uuid

from ate_drivers.gripper.omnipicker import OmniPicker
from ate_drivers.gripper.omnipicker_emulator import OmniPickerEmulator
from ate_drivers.gripper_driver import GripperDriver
from ate_drivers.safety import EStop


def _wait(pred, timeout=3.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_faults_and_refusals_reach_diagnostics_and_out_of_range_commands_never_reach_the_gripper():
    ch = f"grip-{uuid.uuid4().hex}"
    emu = OmniPickerEmulator(stroke_time_s=0.2).start_virtual(ch)
    estop = EStop()
    drv = GripperDriver("left", OmniPicker(interface="virtual", channel=ch, bus_kwargs={}), estop=estop)
    try:
        assert _wait(lambda: drv.tick() is not None)
        assert drv.diagnostics()[0] == 0
        assert not drv.on_command(1.5)
        assert not drv.on_command(float("nan"))
        estop.trigger("test")
        # the e-stop holds the jaw where it is: the measured opening is commanded (no "stop" exists; opening it
        # would drop what it holds)
        assert _wait(lambda: len(emu.received) == 1)
        assert emu.received[0].position == pytest_approx(drv.state.position) and drv.holds_sent == 1
        assert not drv.on_command(0.5)
        estop.reset()
        assert drv.on_command(0.5, force=0.3)
        assert _wait(lambda: len(emu.received) == 2)
        assert emu.received[1].position == pytest_approx(0.5)
        level, msg, kv = drv.diagnostics()
        assert level == 1 and kv["refused_gripper_range"] == "1" and kv["refused_estop"] == "1"

        emu.faults.fault = 3
        assert _wait(lambda: drv.tick() is not None and drv.diagnostics()[0] == 2)
        level, msg, kv = drv.diagnostics()
        assert "init failure" in msg and kv["fault_code"] == "3"

        emu.faults.silent = True
        assert _wait(lambda: drv.tick() is None and "no feedback" in drv.diagnostics()[1])
    finally:
        drv.backend.disconnect()
        emu.stop()


def test_a_can_error_disconnects_the_gripper_and_it_reconnects_and_states_carry_their_capture_time():
    ch = f"grip-{uuid.uuid4().hex}"
    emu = OmniPickerEmulator(stroke_time_s=0.2).start_virtual(ch)
    drv = GripperDriver("left", OmniPicker(interface="virtual", channel=ch, bus_kwargs={}), retry_s=0.2)
    try:
        assert _wait(lambda: drv.tick() is not None)
        # the adapter goes away under the driver (unplugged): the next command fails, the gripper is disconnected
        drv.backend._bus.shutdown()
        assert not drv.on_command(0.4)
        assert not drv.connected and drv.comm_errors == 1
        level, msg, kv = drv.diagnostics()
        assert level == 2 and msg.startswith("disconnected") and kv["connected"] == "False"
        # ... and comes back by itself after retry_s; commands reach the gripper again
        assert _wait(lambda: drv.tick() is not None, timeout=5.0)
        assert drv.connected and drv.reconnects == 1
        assert drv.on_command(0.4) and _wait(lambda: emu.received and emu.received[-1].position == pytest_approx(0.4))
        # a state is stamped when its feedback arrived, not when it is read: a silent gripper's state ages
        emu.faults.silent = True
        time.sleep(0.1)
        st = drv.tick()
        assert st is not None and time.monotonic() - st.stamp_s >= 0.1
        assert float(drv.diagnostics()[2]["feedback_age_s"]) >= 0.1
    finally:
        drv.backend.disconnect()
        emu.stop()


def pytest_approx(v):
    import pytest
    return pytest.approx(v, abs=1 / 255)
