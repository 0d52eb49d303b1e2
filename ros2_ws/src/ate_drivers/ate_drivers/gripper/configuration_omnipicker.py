"""Configuration of one OmniPicker on a CAN adapter (python-can interface names)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OmniPickerConfig:
    # python-can interface: "seeedstudio" (USB-CAN-A serial adapter, the lab's), "slcan", "socketcan", "virtual".
    interface: str = "seeedstudio"
    channel: str = "/dev/ttyUSB0"
    bitrate: int = 1_000_000         # the gripper's CAN bus runs at 1 Mbps
    # Extra python-can arguments, e.g. {"baudrate": 2000000} for the USB-CAN-A serial link.
    bus_kwargs: dict = field(default_factory=lambda: {"baudrate": 2_000_000})
    command_id: int = 0x01
    feedback_id: int = 0x01
    # Feedback older than this is not reported as the gripper's state (a silent gripper is a fault, not "ok").
    max_feedback_age_s: float = 0.5
