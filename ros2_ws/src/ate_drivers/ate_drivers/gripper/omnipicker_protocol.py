"""THE byte layout of the AgiBot OmniPicker's CAN frames (docs/architecture.md (hardware facts)), in one place.

No public official protocol document was found; this layout is what the lab's grippers were seen to speak.
If a firmware differs, only this module changes.

Command, CAN id 0x01, 8 bytes: ``[0x00, pos, force, vel, acc, dec, 0, 0]``, each 0-255, pos 0xFF = fully open.
Feedback, 8 bytes: ``[fault, state, pos, vel, force, 0, 0, 0]``.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMAND_ID = 0x01
FEEDBACK_ID = 0x01   # the gripper answers on its own id (a node never receives its own frames on CAN)
FRAME_LEN = 8

FAULTS = {0: "ok", 1: "over-temperature", 2: "over-speed", 3: "init failure", 4: "over-limit"}
STATES = {0: "arrived", 1: "moving", 2: "stalled", 3: "object dropped"}


def _byte(fraction: float, what: str) -> int:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{what} must be a fraction in [0, 1], got {fraction}")
    return int(round(fraction * 255))


def encode_command(position: float, force: float = 1.0, speed: float = 1.0,
                   acc: float = 1.0, dec: float = 1.0) -> bytes:
    """Opening fraction (0 closed .. 1 open) and force/speed/acc/dec fractions -> 8 command bytes."""
    return bytes([0x00, _byte(position, "position"), _byte(force, "force"), _byte(speed, "speed"),
                  _byte(acc, "acc"), _byte(dec, "dec"), 0, 0])


@dataclass
class Command:
    position: float
    force: float
    speed: float


def decode_command(data: bytes) -> Command:
    if len(data) != FRAME_LEN or data[0] != 0x00:
        raise ValueError(f"not an OmniPicker command frame: {bytes(data).hex()}")
    return Command(data[1] / 255, data[2] / 255, data[3] / 255)


@dataclass
class Feedback:
    fault: int
    state: int
    position: float     # opening fraction
    speed: float
    force: float

    @property
    def fault_text(self) -> str:
        return FAULTS.get(self.fault, f"unknown fault {self.fault}")


def encode_feedback(fault: int, state: int, position: float, speed: float = 0.0, force: float = 0.0) -> bytes:
    return bytes([fault & 0xFF, state & 0xFF, _byte(position, "position"), _byte(speed, "speed"),
                  _byte(force, "force"), 0, 0, 0])


def decode_feedback(data: bytes) -> Feedback:
    if len(data) < 5:
        raise ValueError(f"OmniPicker feedback needs >= 5 bytes, got {bytes(data).hex()}")
    return Feedback(data[0], data[1], data[2] / 255, data[3] / 255, data[4] / 255)
