"""OmniPicker backend over python-can (``GripperBackend``); the byte layout lives in ``omnipicker_protocol``."""

from __future__ import annotations

import threading
import time

import can

from ate_drivers.gripper import omnipicker_protocol as proto
from ate_drivers.gripper.configuration_omnipicker import OmniPickerConfig
from ate_drivers.interfaces import GripperState
from ate_drivers.registry import register_gripper


class OmniPicker:
    def __init__(self, config: OmniPickerConfig | None = None, **overrides):
        cfg = config or OmniPickerConfig()
        for k, v in overrides.items():
            setattr(cfg, k, v)
        self.config = cfg
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None
        self._latest: GripperState | None = None
        self._lock = threading.Lock()
        self._error: Exception | None = None   # a CAN error seen by the receive thread (adapter gone, bus-off)
        self.frames_sent = 0

    def connect(self) -> None:
        c = self.config
        kwargs = dict(c.bus_kwargs)
        if c.interface != "virtual":
            kwargs["bitrate"] = c.bitrate
        try:
            self._bus = can.Bus(interface=c.interface, channel=c.channel, **kwargs)
        except (can.CanError, OSError, ValueError) as e:
            raise ConnectionError(f"cannot open CAN adapter {c.interface}:{c.channel}: {e}") from e
        self._error = None
        self._latest = None
        self._notifier = can.Notifier(self._bus, [_Receiver(self._on_frame, self._on_error)], timeout=0.05)

    def _on_error(self, exc: Exception) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc

    def _on_frame(self, msg: can.Message) -> None:
        if msg.arbitration_id != self.config.feedback_id or msg.is_error_frame or msg.dlc < 5:
            return
        try:
            fb = proto.decode_feedback(bytes(msg.data))
        except ValueError:
            return
        with self._lock:   # stamped with its arrival: the feedback's capture time on this machine
            self._latest = GripperState(fb.position, fb.state, fb.fault, time.monotonic())

    def disconnect(self) -> None:
        if self._notifier is not None:
            self._notifier.stop()
            self._notifier = None
        if self._bus is not None:
            self._bus.shutdown()
            self._bus = None

    def command(self, position: float, force: float = 1.0, speed: float = 1.0) -> None:
        if self._bus is None:
            raise ConnectionError("gripper not connected")
        data = proto.encode_command(position, force, speed)
        try:
            self._bus.send(can.Message(arbitration_id=self.config.command_id, data=data, is_extended_id=False))
        except (can.CanError, OSError, ValueError) as e:
            raise ConnectionError(f"CAN send failed: {e}") from e
        self.frames_sent += 1

    def read_state(self) -> GripperState | None:
        """Latest feedback, or None when none arrived within ``max_feedback_age_s``; ConnectionError when the
        receive thread met a CAN error (the driver then reconnects)."""
        with self._lock:
            st, err = self._latest, self._error
        if err is not None:
            raise ConnectionError(f"CAN receive failed: {err}")
        if st is None or time.monotonic() - st.stamp_s > self.config.max_feedback_age_s:
            return None
        return st


class _Receiver(can.Listener):
    """python-can listener: frames to the backend, and receive errors too (a Notifier without ``on_error`` would
    end its thread and the gripper would look merely silent)."""

    def __init__(self, on_frame, on_error):
        self._on_frame, self._on_error = on_frame, on_error

    def on_message_received(self, msg: can.Message) -> None:
        self._on_frame(msg)

    def on_error(self, exc: Exception) -> None:
        self._on_error(exc)


@register_gripper("omnipicker")
def make_omnipicker(arm: str = "left", config: OmniPickerConfig | None = None, **overrides) -> OmniPicker:
    return OmniPicker(config, **overrides)
