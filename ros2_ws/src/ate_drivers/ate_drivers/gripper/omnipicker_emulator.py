"""An OmniPicker emulator: on python-can's ``virtual`` bus, or behind a pty speaking the USB-CAN-A serial framing.

The jaw moves toward the commanded opening at a finite speed (full stroke in ``stroke_time_s`` at speed 1);
``stall_at`` makes it stop on an object while closing (state 2, stalled); ``faults.fault`` reports a fault code.
Feedback goes out after every command and periodically (``feedback_period_s``), as the gripper's does.

Serial framing of the seeedstudio USB-CAN-A (what python-can's ``seeedstudio`` interface writes and reads):
data frame ``0xAA, 0xC0 | ext<<5 | rtr<<4 | dlc, id (2 or 4 bytes, little endian), data, 0x55``; the adapter's
20-byte configuration frame starts ``0xAA 0x55`` and is skipped.
Run by hand: ``python -m ate_drivers.gripper.omnipicker_emulator --pty`` prints the serial device to use.
"""

from __future__ import annotations

import argparse
import os
import struct
import threading
import time
from dataclasses import dataclass, field

import can

from ate_drivers.gripper import omnipicker_protocol as proto


@dataclass
class GripperFaults:
    fault: int = 0              # reported fault code (0 ok, 1 over-temperature, ...)
    silent: bool = False        # stop sending feedback (unplugged / dead gripper)


@dataclass
class OmniPickerEmulator:
    position: float = 1.0
    stroke_time_s: float = 1.0
    feedback_period_s: float = 0.02
    stall_at: float | None = None
    command_id: int = proto.COMMAND_ID
    feedback_id: int = proto.FEEDBACK_ID
    faults: GripperFaults = field(default_factory=GripperFaults)
    received: list[proto.Command] = field(default_factory=list)

    def __post_init__(self):
        self.target = self.position
        self.speed = 1.0
        self.state = 0
        self._t = time.monotonic()
        self._lock = threading.RLock()
        self._running = False
        self._threads: list[threading.Thread] = []
        self._send = None
        self.channel: str | None = None

    # --- physics -------------------------------------------------------------------------------------------
    def _advance(self) -> None:
        now = time.monotonic()
        dt, self._t = now - self._t, now
        step = self.speed * dt / self.stroke_time_s
        lo = self.stall_at if (self.stall_at is not None and self.target < self.stall_at <= self.position + 1e-9) \
            else 0.0
        goal = max(self.target, lo)
        d = goal - self.position
        self.position += max(-step, min(step, d))
        if abs(goal - self.position) < 1e-6:
            self.state = 2 if (goal > self.target + 1e-6) else 0
        else:
            self.state = 1

    def _feedback(self) -> bytes:
        with self._lock:
            self._advance()
            return proto.encode_feedback(self.faults.fault, self.state, min(max(self.position, 0.0), 1.0),
                                         self.speed if self.state == 1 else 0.0, 0.0)

    def _on_command(self, arb_id: int, data: bytes) -> None:
        if arb_id != self.command_id:
            return
        try:
            cmd = proto.decode_command(data)
        except ValueError:
            return
        with self._lock:
            self._advance()
            self.received.append(cmd)
            self.target, self.speed = cmd.position, max(cmd.speed, 0.01)
        self._emit()

    def _emit(self) -> None:
        if not self.faults.silent and self._send is not None:
            self._send(self.feedback_id, self._feedback())

    def _periodic(self) -> None:
        while self._running:
            self._emit()
            time.sleep(self.feedback_period_s)

    def _spawn(self, fn) -> None:
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self._threads.append(t)

    # --- transports ----------------------------------------------------------------------------------------
    def start_virtual(self, channel: str) -> "OmniPickerEmulator":
        """Join python-can's in-process ``virtual`` bus ``channel``."""
        self.channel = channel
        bus = can.Bus(interface="virtual", channel=channel)
        self._bus = bus
        self._send = lambda i, d: bus.send(can.Message(arbitration_id=i, data=d, is_extended_id=False))
        self._running = True

        def rx():
            while self._running:
                m = bus.recv(0.05)
                if m is not None:
                    self._on_command(m.arbitration_id, bytes(m.data))
        self._spawn(rx)
        self._spawn(self._periodic)
        return self

    def start_pty(self) -> "OmniPickerEmulator":
        """Open a pty; ``self.channel`` is the serial device python-can's ``seeedstudio`` interface opens."""
        import tty
        master, slave = os.openpty()
        tty.setraw(slave)
        self._master, self._slave = master, slave
        self.channel = os.ttyname(slave)
        wlock = threading.Lock()

        def send(arb_id: int, data: bytes) -> None:
            frame = bytes([0xAA, 0xC0 | len(data)]) + struct.pack("<H", arb_id) + data + b"\x55"
            with wlock:
                try:
                    os.write(master, frame)
                except OSError:
                    pass
        self._send = send
        self._running = True
        self._spawn(self._pty_reader)
        self._spawn(self._periodic)
        return self

    def _pty_reader(self) -> None:
        buf = bytearray()

        def need(n):
            while len(buf) < n and self._running:
                try:
                    chunk = os.read(self._master, 256)
                except OSError:
                    return False
                if not chunk:
                    return False
                buf.extend(chunk)
            return len(buf) >= n
        while self._running:
            if not need(2):
                return
            if buf[0] != 0xAA:
                del buf[0]
                continue
            if buf[1] == 0x55:           # adapter configuration frame (20 bytes)
                if not need(20):
                    return
                del buf[:20]
                continue
            typ = buf[1]
            n_id = 4 if typ & 0x20 else 2
            dlc = typ & 0x0F
            total = 2 + n_id + dlc + 1
            if not need(total):
                return
            frame, buf[:] = bytes(buf[:total]), buf[total:]
            if frame[-1] != 0x55:
                continue
            arb_id = int.from_bytes(frame[2:2 + n_id], "little")
            self._on_command(arb_id, frame[2 + n_id:2 + n_id + dlc])

    def stop(self) -> None:
        self._running = False
        # The pty's slave end first: once no slave end is open the reader's read on the master ends (EIO).
        self._close_fd("_slave")
        for t in self._threads:
            t.join(timeout=1.0)
        if getattr(self, "_bus", None) is not None:
            self._bus.shutdown()
            self._bus = None
        self._close_fd("_master")

    def _close_fd(self, name: str) -> None:
        # Once only: a second os.close of the same number could close a descriptor reused since.
        fd = getattr(self, name, None)
        if fd is not None:
            setattr(self, name, None)
            try:
                os.close(fd)
            except OSError:
                pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="OmniPicker gripper emulator for dry runs")
    ap.add_argument("--pty", action="store_true", help="serve on a pty with USB-CAN-A framing (default)")
    ap.add_argument("--virtual", default=None, help="join python-can's virtual bus CHANNEL instead")
    args = ap.parse_args(argv)
    emu = OmniPickerEmulator()
    if args.virtual:
        emu.start_virtual(args.virtual)
    else:
        emu.start_pty()
    print(f"OmniPicker emulator on {emu.channel} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
