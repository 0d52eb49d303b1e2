"""A Vision Pro hand-tracking emulator: a gRPC server that speaks avp_stream's ``handtracking`` protocol.

It implements ``handtracking.HandTrackingService/StreamHandUpdates`` with avp_stream's own generated modules
(``avp_stream.grpc_msg``), so the real ``VisionProStreamer`` client connects to it exactly as to the Tracking
Streamer app: bind it to the IP the client is given (tests: 127.0.0.1 and 127.0.0.2; the port, 12345, is fixed
by the client). It streams scripted poses: functions of a script time that return 4x4 wrist/head poses in the
**headset's Y-up frame** (what the app sends); ``zup_to_yup`` / ``zup_head_to_yup`` write a wrist / head pose
meant for the client's Z-up output.

What the client does with a message (avp_stream 2.51, ``_process_hand_update``): wrist = ``YUP2ZUP @ M``
(left multiplication only: the wrist's own axes are not permuted), where ``M`` is the message's 3x4 top block
(the bottom row is ignored and read as 0 0 0 1) in **float32** (proto ``float`` fields); the pinch distance is
the distance between skeleton joints 4 (thumb tip) and 9 (index tip), so every message carries a 27-joint
skeleton. ``Head.m00 == 777`` marks the client's benchmark replies and is never sent (a rotation entry cannot
reach it; asserted anyway).

Controls for tests: ``freeze()`` repeats the last message bit for bit (a stuck tracker), ``pause()`` keeps the
connection but sends nothing (a Wi-Fi stall), ``drop()`` aborts the open streams with UNAVAILABLE (the client
retries by itself), ``end()`` ends them cleanly (the client gives up: the pose source's supervisor must start
a fresh one), ``stop()`` shuts the server down. The script time comes from ``clock`` (default: wall time since
``start``); tests pass a ``ManualClock`` they advance with the simulated time, so the poses are deterministic
whatever the wall-clock pace.

Dry runs by hand: ``python -m teleop.avp_server --ip 127.0.0.1 --motion circle`` then point a teleop
operator's ``avp.ip`` at 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures

import numpy as np

log = logging.getLogger(__name__)

AVP_PORT = 12345
N_SKELETON_JOINTS = 27  # visionOS 2 skeleton: 25 hand joints + forearmWrist + forearmArm
THUMB_TIP, INDEX_TIP = 4, 9

# The client's Y-up -> Z-up conversion (avp_stream.streamer.YUP2ZUP): Z-up = YUP2ZUP @ Y-up.
_YUP2ZUP = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])

Pose = Callable[[float], np.ndarray]


def zup_to_yup(T) -> np.ndarray:
    """The Y-up pose to send so that the client reports ``T`` (Z-up)."""
    return _YUP2ZUP.T @ np.asarray(T, dtype=float)


def yup_to_zup(T) -> np.ndarray:
    """What the client reports (Z-up) for a sent Y-up pose (before float32 rounding)."""
    return _YUP2ZUP @ np.asarray(T, dtype=float)


def zup_head_to_yup(T) -> np.ndarray:
    """The Y-up head pose to send so that the client reports ``T``: the client converts the head like a wrist
    and then turns it by -90 deg about its x axis (``rotate_head``), so that an upright headset reads z up, y
    forward."""
    Rx90 = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])   # +90 deg about x
    return _YUP2ZUP.T @ np.asarray(T, dtype=float) @ Rx90


def float32_pose(T) -> np.ndarray:
    """``T`` as it survives the wire (float32 fields, bottom row forced to 0 0 0 1)."""
    out = np.asarray(T, dtype=np.float32).astype(float)
    out[3] = (0.0, 0.0, 0.0, 1.0)
    return out


class ManualClock:
    """A script clock the test advances (e.g. with the simulated time)."""

    def __init__(self, t: float = 0.0):
        self._t = float(t)
        self._lock = threading.Lock()

    def set(self, t: float) -> None:
        with self._lock:
            self._t = float(t)

    def __call__(self) -> float:
        with self._lock:
            return self._t


# --- scripted motions (Z-up, converted at send time) --------------------------------------------------------

def still(T, tremor_m: float = 1e-4) -> Pose:
    """A hand held still, with ``tremor_m`` of deterministic tremor (7 and 5 Hz): real hand tracking is never
    bit-identical, and the pose source would rightly call a perfectly constant stream frozen. ``tremor_m=0``
    gives a constant pose (the frozen-tracker case)."""
    T = np.array(T, dtype=float)

    def pose(t: float) -> np.ndarray:
        out = T.copy()
        wobble = np.array([math.sin(2 * math.pi * 7.0 * t), math.cos(2 * math.pi * 5.0 * t), 0.0])
        out[:3, 3] += tremor_m * wobble
        return out
    return pose


def circle(center_zup=(0.35, -0.25, 1.1), radius_m: float = 0.05, period_s: float = 4.0,
           R_zup=None) -> Pose:
    """Wrist circling in the horizontal plane (Z-up) at constant orientation ``R_zup`` (default identity)."""
    c = np.asarray(center_zup, dtype=float)
    R = np.eye(3) if R_zup is None else np.asarray(R_zup, dtype=float)

    def pose(t: float) -> np.ndarray:
        a = 2 * math.pi * t / period_s
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = c + radius_m * np.array([math.cos(a) - 1.0, math.sin(a), 0.0])
        return T
    return pose


def _fill(m, T: np.ndarray) -> None:
    for i in range(4):
        for j in range(4):
            setattr(m, f"m{i}{j}", float(T[i, j]))


class _Servicer:
    def __init__(self, emu: "HandTrackingEmulator"):
        self.emu = emu

    def StreamHandUpdates(self, request, context):  # noqa: N802  (gRPC method name)
        emu = self.emu
        gen, end_gen = emu._drop_generation, emu._end_generation
        with emu._lock:
            emu.connections += 1
            emu.active_streams += 1
        period = 1.0 / emu.rate_hz
        next_t = time.monotonic()
        try:
            while context.is_active() and not emu._stopping.is_set():
                if emu._drop_generation != gen:
                    context.abort(_grpc().StatusCode.UNAVAILABLE, "stream dropped by the emulator")
                if emu._end_generation != end_gen:
                    return   # a clean end of the stream (status OK)
                if not emu._paused:
                    msg = emu._message()
                    sent_s = time.monotonic()
                    yield msg
                    emu._log_send(msg, sent_s)
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    emu._stopping.wait(delay)
                else:
                    next_t = time.monotonic()  # fell behind (loaded machine): do not burst to catch up
        finally:
            with emu._lock:
                emu.active_streams -= 1


def _grpc():
    import grpc

    return grpc


_MESSAGES = None


def _messages():
    """``avp_stream.grpc_msg``, imported once without the library's signal handlers (see ``teleop.avp``); kept,
    since every streamed message (90 Hz) needs it."""
    global _MESSAGES
    if _MESSAGES is None:
        from teleop.avp import import_avp_stream

        _MESSAGES = import_avp_stream().grpc_msg
    return _MESSAGES


class HandTrackingEmulator:
    """gRPC server on ``ip:port`` streaming scripted hands at ``rate_hz`` (see the module docstring)."""

    def __init__(self, ip: str = "127.0.0.1", port: int = AVP_PORT, rate_hz: float = 90.0,
                 right_wrist: Pose | None = None, left_wrist: Pose | None = None, head: Pose | None = None,
                 pinch_m: Callable[[float], float] | None = None, clock: Callable[[], float] | None = None,
                 send_log: int = 0):
        if rate_hz <= 0:
            raise ValueError("rate_hz must be positive")
        self.ip, self.port, self.rate_hz = ip, int(port), float(rate_hz)
        # Defaults (Y-up, as the app sends): hands 30 cm in front of and below a head at 1.6 m, with tremor.
        self.right_wrist = right_wrist or still(zup_to_yup(_translation(0.35, -0.2, 1.1)))
        self.left_wrist = left_wrist or still(zup_to_yup(_translation(0.35, 0.2, 1.1)))
        self.head = head or still(zup_head_to_yup(_translation(0.0, 0.0, 1.6)))
        self.pinch_m = pinch_m or (lambda t: 0.08)
        self._t0 = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - self._t0)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._paused = False
        self._frozen_msg = None
        self._last_msg = None
        self._drop_generation = 0
        self._end_generation = 0
        self._server = None
        self.connections = 0
        self.active_streams = 0
        self.sent = 0
        # (send time, right-wrist translation as float32 triple) of the last N messages: lets a benchmark
        # match what the client received to when it was sent.
        self.send_log: deque = deque(maxlen=send_log) if send_log else deque(maxlen=1)
        self._keep_log = bool(send_log)

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> "HandTrackingEmulator":
        grpc = _grpc()
        handtracking_pb2_grpc = _messages().handtracking_pb2_grpc

        self._stopping.clear()
        self._t0 = time.monotonic()
        # so_reuseport off: gRPC enables it by default, and a second emulator on the same address would then
        # bind silently and share the clients with the first.
        pool = futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"avp-emu-{self.ip}")
        server = grpc.server(pool, options=[("grpc.so_reuseport", 0)])
        handtracking_pb2_grpc.add_HandTrackingServiceServicer_to_server(_Servicer(self), server)
        addr = f"{self.ip}:{self.port}"
        try:
            bound = server.add_insecure_port(addr)
        except RuntimeError as e:
            bound, err = 0, e
        else:
            err = None
        if not bound:
            raise RuntimeError(f"hand-tracking emulator cannot bind {addr} (port in use by another emulator "
                               f"or app?){f': {err}' if err else ''}")
        server.start()
        self._server = server
        log.info("hand-tracking emulator on %s at %.0f Hz", addr, self.rate_hz)
        return self

    def stop(self, grace_s: float = 0.5) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.stop(grace_s).wait()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- controls -------------------------------------------------------------------------------------------
    def freeze(self) -> None:
        """Repeat the last message bit for bit (a stuck tracker)."""
        with self._lock:
            self._frozen_msg = self._last_msg if self._last_msg is not None else self._build(self.clock())

    def unfreeze(self) -> None:
        with self._lock:
            self._frozen_msg = None

    def pause(self) -> None:
        """Send nothing, keep the connection (a Wi-Fi stall)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def drop(self) -> None:
        """Abort every open stream with UNAVAILABLE; the client reconnects by itself after its back-off."""
        with self._lock:
            self._drop_generation += 1

    def end(self) -> None:
        """End every open stream cleanly (the app's Stop): avp_stream's client then never reconnects by
        itself."""
        with self._lock:
            self._end_generation += 1

    # --- messages -------------------------------------------------------------------------------------------
    def _build(self, t: float):
        pb = _messages().handtracking_pb2

        msg = pb.HandUpdate()
        pinch = float(self.pinch_m(t))
        for hand, fn in ((msg.right_hand, self.right_wrist), (msg.left_hand, self.left_wrist)):
            _fill(hand.wristMatrix, np.asarray(fn(t), dtype=float))
            for j in range(N_SKELETON_JOINTS):
                J = np.eye(4)
                if j == THUMB_TIP:
                    J[:3, 3] = (0.09, 0.02 + pinch / 2, 0.0)
                elif j == INDEX_TIP:
                    J[:3, 3] = (0.09, 0.02 - pinch / 2, 0.0)
                _fill(hand.skeleton.jointMatrices.add(), J)
        _fill(msg.Head, np.asarray(self.head(t), dtype=float))
        if msg.Head.m00 == 777.0:  # the client's benchmark marker: it would never reach hand tracking
            raise ValueError("head pose with m00 == 777 cannot be sent (avp_stream benchmark marker)")
        return msg

    def _message(self):
        with self._lock:
            msg = self._frozen_msg if self._frozen_msg is not None else self._build(self.clock())
            self._last_msg = msg
            self.sent += 1
            return msg

    def _log_send(self, msg, sent_s: float) -> None:
        if self._keep_log:
            w = msg.right_hand.wristMatrix
            self.send_log.append((sent_s, (w.m03, w.m13, w.m23)))


def _translation(x: float, y: float, z: float) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = (x, y, z)
    return T


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m teleop.avp_server",
                                 description="Vision Pro hand-tracking emulator (avp_stream gRPC protocol)")
    ap.add_argument("--ip", default="127.0.0.1", help="address to bind (the IP the teleop's avp.ip names)")
    ap.add_argument("--rate-hz", type=float, default=90.0)
    ap.add_argument("--motion", choices=("still", "circle"), default="circle",
                    help="right wrist: still, or a horizontal circle (the left wrist stays still)")
    ap.add_argument("--radius-m", type=float, default=0.05)
    ap.add_argument("--period-s", type=float, default=6.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    right = (circle(radius_m=args.radius_m, period_s=args.period_s) if args.motion == "circle"
             else still(_translation(0.35, -0.2, 1.1)))
    emu = HandTrackingEmulator(args.ip, rate_hz=args.rate_hz, right_wrist=lambda t: zup_to_yup(right(t)))
    try:
        emu.start()
    except RuntimeError as e:
        print(f"error: {e}")
        return 2
    print(f"streaming hand tracking on {args.ip}:{AVP_PORT} ({args.motion}); Ctrl-C to stop")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
