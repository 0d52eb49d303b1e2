"""Fixtures of the teleop tests: hand-tracking emulators on loopback addresses, stopped after each test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The shared helpers (teleop_testkit.py) sit next to the tests.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def emulators():
    """``start(ip, **kwargs)`` -> a running ``HandTrackingEmulator`` (the avp_stream port 12345 is fixed, so
    two operators are two loopback addresses: 127.0.0.1 and 127.0.0.2)."""
    pytest.importorskip("avp_stream")
    from teleop.avp_server import HandTrackingEmulator

    started, sources = [], []

    def start(ip: str, **kwargs):
        emu = HandTrackingEmulator(ip, **kwargs).start()
        started.append(emu)
        return emu

    start.sources = sources   # pose sources a test registers here are closed before the emulators stop
    yield start
    for s in sources:
        s.close()
    for emu in started:
        emu.stop(grace_s=0.2)
