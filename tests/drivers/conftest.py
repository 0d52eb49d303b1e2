"""Fixtures of the driver tests: emulators on free ports, and backends connected to them through the real SDK."""

from __future__ import annotations

import pytest

from ate_drivers.arm.realman import RealmanArm
from ate_drivers.arm.realman_emulator import RealmanEmulator

HOME_DEG = [0.0, 20.0, 0.0, 60.0, 0.0, 40.0, 0.0]


@pytest.fixture
def emulator():
    emu = RealmanEmulator(q0_deg=HOME_DEG).start()
    yield emu
    emu.stop()


@pytest.fixture
def arm(emulator):
    a = RealmanArm(ip="127.0.0.1", port=emulator.port, reply_timeout_ms=150)
    a.connect()
    yield a
    a.disconnect()
