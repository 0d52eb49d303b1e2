"""Every robot mode of the shipped config resolves to registered backends; the sim cell plugs in by name."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ate_bringup import graph
from ate_drivers import backends, registry  # noqa: F401  (registers this package's backends)
from ate_drivers.arm_driver import ArmDriver
from ate_drivers.config import load_drivers_config
from ate_drivers.interfaces import ArmBackend, CameraBackend, GripperBackend


@pytest.mark.parametrize("robot", ["real", "emulated"])
def test_backends_of_each_mode_build_without_touching_hardware(robot):
    cfg = load_drivers_config(graph.default_drivers_config(), robot=robot)
    names = cfg.backend_names()
    arm = registry.make_arm(names.arm, arm="left", config=cfg.left.realman)
    grip = registry.make_gripper(names.gripper, arm="left", config=cfg.left.gripper)
    cam = registry.make_camera(names.camera, name="cam_high", config=cfg.cameras["cam_high"])
    assert isinstance(arm, ArmBackend) and isinstance(grip, GripperBackend) and isinstance(cam, CameraBackend)
    for b in (arm, grip):
        if hasattr(b, "emulator"):
            b.emulator.stop()


def test_closing_an_emulated_driver_stops_its_emulator():
    """robot:=emulated: a driver's close frees the emulator its backend started (no controller socket, pty or
    thread left behind by a node that shut down), after the driver used it."""
    import os
    import socket

    from ate_drivers.gripper_driver import GripperDriver

    cfg = load_drivers_config(graph.default_drivers_config(), robot="emulated")
    names = cfg.backend_names()
    arm = ArmDriver("left", registry.make_arm(names.arm, arm="left", config=cfg.left.realman), cfg.safety,
                    stream_thread=False)
    grip = GripperDriver("left", registry.make_gripper(names.gripper, arm="left", config=cfg.left.gripper))
    arm_emu, grip_emu = arm.backend.emulator, grip.backend.emulator
    t0 = time.monotonic()
    while (arm.tick() is None or grip.tick() is None) and time.monotonic() - t0 < 5.0:
        time.sleep(0.05)
    assert arm.state is not None and grip.state is not None
    pty = grip_emu.channel
    assert os.path.exists(pty)
    t0 = time.monotonic()
    arm.close()
    grip.close()
    assert time.monotonic() - t0 < 1.0   # a node's shutdown is not held up
    with pytest.raises(OSError):
        socket.create_connection(arm_emu.address, timeout=0.5).close()
    assert not any(t.is_alive() for t in grip_emu._threads)
    assert not os.path.exists(pty)
    grip_emu.stop()   # a second stop (a test's own cleanup) closes nothing else


def test_unknown_backend_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match="realman"):
        registry.make_arm("kuka")


@pytest.fixture
def sim_cell():
    sim = pytest.importorskip("ate_sim.backends")
    yield
    sim.reset_shared_cell()   # the sim cell's real-time thread must not outlive the test


def test_sim_arm_plugs_into_the_same_driver_by_name(sim_cell):
    cfg = load_drivers_config(graph.default_drivers_config(), robot="sim")
    drv = ArmDriver("left", registry.make_arm(cfg.backend_names().arm, arm="left", config=cfg.left.realman),
                    cfg.safety)
    st = drv.tick()
    assert st is not None
    assert drv.on_command([], st.q_rad + 0.02, stamp_s=time.monotonic())
    assert not drv.on_command([], st.q_rad + 1.0, stamp_s=time.monotonic())   # same safety layer
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0 and np.max(np.abs(drv.tick().q_rad - (st.q_rad + 0.02))) > 1e-3:
        time.sleep(0.02)
    np.testing.assert_allclose(drv.state.q_rad, st.q_rad + 0.02, atol=1e-3)
