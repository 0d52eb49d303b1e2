"""Vision Pro pose source over the real ``avp_stream`` client (``VisionProStreamer``, gRPC to ``{ip}:12345``).

avp_stream 2.51 facts this module works with (read from its source, pinned by tests against our emulator):

* the constructor starts a gRPC thread and then **blocks until the first sample, forever** (it only prints a
  warning every 10 s). We subclass it so the constructor returns at once and a supervisor thread here waits
  for the first sample with a timeout; ``connect()`` then fails with an error naming the headset's IP;
* every processed sample replaces ``streamer.latest`` (a new dict); we hook the processing method to stamp the
  receive time (``time.monotonic``) the moment it arrives, so the age is exact and nothing polls;
* ``record=True`` (the library's default) appends every sample to a list forever: we pass ``record=False``;
* the constructor also starts an HTTP server on 0.0.0.0:8888 for WebRTC discovery; hand tracking over gRPC
  does not use it, two streamers in one process would fight over the port, so it is not started;
* wrist and head matrices come converted Y-up -> Z-up by left-multiplying ``YUP2ZUP`` (rows x, -z, y);
* when the server ends a stream cleanly the client returns and never reconnects; on a gRPC error it retries
  with a back-off of its own. A supervisor here therefore starts a fresh client when no sample came for
  ``reconnect_after_s``; the old client's thread ends at its next sample (it raises a ``BaseException`` that
  the library's ``except Exception`` does not swallow) or when its own retries run out;
* importing ``avp_stream.streamer`` installs SIGINT/SIGTERM handlers that raise ``KeyboardInterrupt``; we put
  the previous handlers back so a ROS node or a test runner keeps its own shutdown behaviour.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np

from ate_description.errors import UserError
from teleop.pose_source import SampleTracker, WristSample

log = logging.getLogger(__name__)

AVP_PORT = 12345  # fixed by the avp_stream client
HANDS = ("left", "right")


@dataclass
class AvpConfig:
    ip: str = "192.168.1.101"
    hand: str = "right"                 # the hand whose wrist drives the arm (the other holds the Joy-Con)
    # The app must be streaming when teleop starts; beyond this the start fails with a message naming the IP.
    connect_timeout_s: float = 10.0
    # Nothing new for 3 ticks: the sample is stale and the arm holds (the app streams at ~90 Hz, so this is a
    # real stall of Wi-Fi or of the app, not jitter).
    max_age_ms: float = 150.0
    # Bit-identical wrist matrices for this long: the tracker is stuck (real tracking always jitters).
    frozen_after_ms: float = 500.0
    # No sample for this long: start a fresh client (the library does not reconnect after a clean stream end).
    reconnect_after_s: float = 3.0

    def validate(self) -> None:
        if self.hand not in HANDS:
            raise UserError(f"avp.hand must be 'left' or 'right', got {self.hand!r}")
        if not self.ip:
            raise UserError("avp.ip is empty: set the Vision Pro's IP address "
                            "(the Tracking Streamer app shows it)")
        if min(self.connect_timeout_s, self.max_age_ms, self.frozen_after_ms, self.reconnect_after_s) <= 0:
            raise UserError("avp timeouts must be positive")


_STREAMER_CLASS = None
_IMPORT_LOCK = threading.RLock()


class _ClientClosed(BaseException):
    """Raised inside a closed client's stream loop to end its thread (a BaseException: the library's retry
    loop catches ``Exception`` and would otherwise reconnect)."""


def import_avp_stream():
    """Import ``avp_stream`` (client and messages) keeping this process's SIGINT/SIGTERM handlers: the library's
    import installs handlers that raise ``KeyboardInterrupt`` wherever the main thread happens to be (inside a ROS
    executor's C++ call that became a traceback at Ctrl-C). Every import of avp_stream here goes through this."""
    with _IMPORT_LOCK:
        in_main = threading.current_thread() is threading.main_thread()
        saved = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) if in_main else None
        import avp_stream.grpc_msg.handtracking_pb2
        import avp_stream.grpc_msg.handtracking_pb2_grpc
        import avp_stream.streamer

        if saved is not None:
            signal.signal(signal.SIGINT, saved[0])
            signal.signal(signal.SIGTERM, saved[1])
    return avp_stream


def _streamer_class():
    """The avp_stream client subclass (imported lazily: avp_stream pulls in aiortc, av and OpenCV)."""
    global _STREAMER_CLASS
    with _IMPORT_LOCK:
        if _STREAMER_CLASS is not None:
            return _STREAMER_CLASS
        VisionProStreamer = import_avp_stream().streamer.VisionProStreamer

        class TeleopStreamer(VisionProStreamer):
            """VisionProStreamer whose constructor does not block and which reports each sample on arrival."""

            def __init__(self, ip: str, on_sample):
                self._teleop_on_sample = on_sample
                self._teleop_closed = False
                super().__init__(ip=ip, record=False)

            def _start_info_server(self, port=8888):
                pass  # WebRTC discovery endpoint; unused by gRPC hand tracking (see module docstring)

            def _start_hand_tracking(self):
                threading.Thread(target=self._teleop_stream, daemon=True, name=f"avp-grpc-{self.ip}").start()

            def _teleop_stream(self):
                try:
                    self.stream()
                except _ClientClosed:
                    pass   # closed by the pose source: the gRPC call and channel go with this thread's frames

            def _process_hand_update(self, hand_update, source="grpc"):
                if self._teleop_closed:
                    raise _ClientClosed  # the library's stream loop catches Exception only: this ends it
                before = self.latest
                super()._process_hand_update(hand_update, source)
                latest = self.latest
                if latest is not None and latest is not before:
                    self._teleop_on_sample(latest, time.monotonic())

            def cleanup(self):
                # Nothing to tear down for gRPC hand tracking: leave the library's exit list, quietly.
                import avp_stream.streamer as s

                if self in s._active_streamers:
                    s._active_streamers.remove(self)

            def close(self):
                self._teleop_closed = True
                self.cleanup()

        _STREAMER_CLASS = TeleopStreamer
        return TeleopStreamer


class AvpPoseSource:
    """One operator's Vision Pro: newest wrist pose of the configured hand, its age, lost/frozen detection."""

    def __init__(self, cfg: AvpConfig | None = None):
        self.cfg = cfg or AvpConfig()
        self.cfg.validate()
        self.tracker = SampleTracker(self.cfg.max_age_ms, self.cfg.frozen_after_ms, time.monotonic)
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = None
        self._client_started_s = 0.0
        self.reconnects = 0
        self.last_error = ""

    # --- lifecycle ------------------------------------------------------------------------------------------
    def connect(self, timeout_s: float | None = None) -> None:
        """Start the client and wait for the first sample; ``UserError`` naming the IP when none comes."""
        timeout_s = self.cfg.connect_timeout_s if timeout_s is None else timeout_s
        if self._thread is None:
            self._thread = threading.Thread(target=self._supervise, daemon=True, name=f"avp-{self.cfg.ip}")
            self._thread.start()
        if not self._first.wait(timeout_s):
            err = f" ({self.last_error})" if self.last_error else ""
            self.close()
            raise UserError(
                f"no hand-tracking sample from the Vision Pro at {self.cfg.ip}:{AVP_PORT} within "
                f"{timeout_s:g} s: is the Tracking Streamer app open and started on that headset, on the "
                f"same network, and is the IP right (teleop.yaml <arm>.avp.ip)?{err}")

    def close(self) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None

    # --- data -----------------------------------------------------------------------------------------------
    def latest(self) -> WristSample | None:
        return self.tracker.latest()

    def wait_for(self, predicate, timeout_s: float) -> WristSample | None:
        return self.tracker.wait_for(predicate, timeout_s)

    def _on_sample(self, data: dict, received_s: float) -> None:
        hand = self.cfg.hand
        self.tracker.put(np.asarray(data[f"{hand}_wrist"])[0], float(data[f"{hand}_pinch_distance"]),
                         np.asarray(data["head"])[0], received_s)
        self._first.set()

    # --- supervisor: (re)connect ----------------------------------------------------------------------------
    def _new_client(self) -> None:
        try:
            self._client = _streamer_class()(self.cfg.ip, self._on_sample)
        except Exception as e:  # noqa: BLE001  (bad IP string, library failure: reported, retried)
            self.last_error = f"{type(e).__name__}: {e}"
            log.error("Vision Pro %s: client failed to start: %s", self.cfg.ip, self.last_error)
            self._client = None
        self._client_started_s = time.monotonic()

    def _supervise(self) -> None:
        self._new_client()
        while not self._stop.wait(0.1):
            now = time.monotonic()
            s = self.tracker.latest()
            last_rx = s.received_s if s is not None else float("-inf")
            quiet_s = now - max(last_rx, self._client_started_s)
            if quiet_s > self.cfg.reconnect_after_s:
                log.warning("Vision Pro %s: no sample for %.1f s, starting a fresh client", self.cfg.ip,
                            quiet_s)
                if self._client is not None:
                    self._client.close()
                self.reconnects += 1
                self._new_client()
