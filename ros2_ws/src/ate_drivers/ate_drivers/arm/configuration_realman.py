"""Configuration of one RealMan arm behind the ``Robotic_Arm`` SDK."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RealmanArmConfig:
    ip: str = "192.168.1.18"
    port: int = 8080
    # The Gen-2/3 controller takes a movej_canfd frame at most every 20 ms over Ethernet; faster frames are
    # dropped by the backend rather than queued, so the controller never sees a burst.
    min_command_period_s: float = 0.02
    # "high follow" makes the controller track each streamed frame tightly (what a 20 Hz policy needs).
    follow: bool = True
    # SDK reply timeout: a dead controller must be noticed within a few control ticks, not the SDK's 500 ms.
    reply_timeout_ms: int = 200
    # Tool flange power for the gripper: 24 V (SDK voltage type 3).
    tool_voltage: int = 24
