"""``robot:=emulated`` backends: the real backends (real SDK, real python-can) against in-process emulators.

Registered as ``realman_emulated`` and ``omnipicker_emulated``: each starts its device's protocol emulator in the
node's process (a TCP controller on a free loopback port; an OmniPicker behind a pty with USB-CAN-A framing) and
returns the real backend connected to it. The emulator is reachable as ``backend.emulator`` for tests; the driver's
close stops it (``release()``), so a node that shuts down leaves no thread, socket or pty behind.
"""

from __future__ import annotations

import dataclasses

from ate_drivers.arm.configuration_realman import RealmanArmConfig
from ate_drivers.arm.realman import RealmanArm
from ate_drivers.arm.realman_emulator import RealmanEmulator
from ate_drivers.gripper.configuration_omnipicker import OmniPickerConfig
from ate_drivers.gripper.omnipicker import OmniPicker
from ate_drivers.gripper.omnipicker_emulator import OmniPickerEmulator
from ate_drivers.registry import register_arm, register_gripper

# A pose away from the joint limits and singularities, so a test can command motion in every direction.
EMULATED_HOME_DEG = (0.0, 20.0, 0.0, 60.0, 0.0, 40.0, 0.0)


class EmulatedRealmanArm(RealmanArm):
    """The real SDK backend, owning the controller emulator it talks to."""

    emulator: RealmanEmulator

    def release(self) -> None:
        self.emulator.stop()


class EmulatedOmniPicker(OmniPicker):
    """The real python-can backend, owning the gripper emulator behind its pty."""

    emulator: OmniPickerEmulator

    def release(self) -> None:
        self.emulator.stop()


@register_arm("realman_emulated")
def make_emulated_arm(arm: str = "left", config: RealmanArmConfig | None = None, **_) -> RealmanArm:
    emu = RealmanEmulator(q0_deg=EMULATED_HOME_DEG).start()
    cfg = dataclasses.replace(config or RealmanArmConfig(), ip="127.0.0.1", port=emu.port)
    backend = EmulatedRealmanArm(cfg)
    backend.emulator = emu
    return backend


@register_gripper("omnipicker_emulated")
def make_emulated_gripper(arm: str = "left", config: OmniPickerConfig | None = None, **_) -> OmniPicker:
    emu = OmniPickerEmulator().start_pty()
    cfg = dataclasses.replace(config or OmniPickerConfig(), interface="seeedstudio", channel=emu.channel,
                              bus_kwargs={"baudrate": 2_000_000})
    backend = EmulatedOmniPicker(cfg)
    backend.emulator = emu
    return backend
