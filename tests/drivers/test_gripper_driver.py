"""Gripper driver: safety on commands, fault codes and a silent gripper surface in diagnostics."""

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
        assert not drv.on_command(0.5)
        estop.reset()
        assert drv.on_command(0.5, force=0.3)
        assert _wait(lambda: len(emu.received) == 1)
        assert emu.received[0].position == pytest_approx(0.5)
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


def pytest_approx(v):
    import pytest
    return pytest.approx(v, abs=1 / 255)
