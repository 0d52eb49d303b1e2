"""The real avp_stream client (VisionProStreamer, gRPC) against our hand-tracking emulator.

Two operators = two headsets = two loopback addresses (127.0.0.1, 127.0.0.2; the client's port is fixed).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

pytest.importorskip("avp_stream")
pytest.importorskip("grpc")

from ate_description.errors import UserError  # noqa: E402
from teleop.avp import AvpConfig, AvpPoseSource  # noqa: E402
from teleop.avp_server import (HandTrackingEmulator, ManualClock, float32_pose, yup_to_zup,  # noqa: E402
                               zup_head_to_yup)
from ate_description.kinematics import rot_y  # noqa: E402
from teleop_testkit import wrist_pose  # noqa: E402


def _source(emulators, ip, **cfg) -> AvpPoseSource:
    src = AvpPoseSource(AvpConfig(ip=ip, **cfg))
    emulators.sources.append(src)
    src.connect(timeout_s=10.0)
    return src


def _wait_status(src, status, timeout_s=5.0):
    if status == "ok":
        return src.wait_for(lambda s: s.status == status, timeout_s)
    return _poll(src, status, timeout_s)


def _poll(src, status, timeout_s):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        s = src.latest()
        if s is not None and s.status == status:
            return s
        time.sleep(0.02)
    return None


def test_client_reports_the_z_up_pose_the_headset_sends_in_y_up(emulators):
    """Y-up (the app's frame: y is height) -> Z-up as avp_stream converts it: a wrist 1.2 m high, 0.4 m in
    front (-z in Y-up) comes out at z = 1.2, y = 0.4. The client left-multiplies only, so a rotation about the
    Y-up vertical shows up as the same matrix with rows permuted (x, -z, y)."""
    R = rot_y(math.radians(30))                     # turning about the (Y-up) vertical
    T_yup = wrist_pose([0.1, 1.2, -0.4], R)
    head_yup = wrist_pose([0.0, 1.6, 0.0], np.eye(3))       # an upright headset at 1.6 m, looking along -z
    emulators("127.0.0.1", right_wrist=lambda t: T_yup, head=lambda t: head_yup, pinch_m=lambda t: 0.035)
    s = _source(emulators, "127.0.0.1")
    assert s.latest().ok
    got = s.latest()
    assert np.allclose(got.wrist[:3, 3], [0.1, 0.4, 1.2], atol=1e-6)
    assert np.allclose(got.wrist[:3, :3], np.array([R[0], -R[2], R[1]]), atol=1e-6)
    assert np.allclose(got.wrist, float32_pose(yup_to_zup(T_yup)), atol=1e-7)
    assert got.pinch_m == pytest.approx(0.035, abs=1e-6)
    # head: converted and turned by the client's rotate_head: an upright headset has z up and y forward
    assert np.allclose(got.head[:3, 3], [0.0, 0.0, 1.6], atol=1e-6)
    assert np.allclose(got.head[:3, :3], np.eye(3), atol=1e-6)
    assert np.allclose(zup_head_to_yup(got.head), head_yup, atol=1e-6)   # the emulator's inverse of it


def test_two_operators_at_once_each_get_their_own_headset(emulators):
    clock = ManualClock(0.0)
    path_a = lambda t: wrist_pose([0.1 * t, 1.0, -0.3], np.eye(3))          # noqa: E731
    path_b = lambda t: wrist_pose([0.0, 1.1, -0.3 - 0.1 * t], np.eye(3))    # noqa: E731
    left_b = lambda t: wrist_pose([-0.2, 1.1, -0.3], np.eye(3))             # noqa: E731
    emulators("127.0.0.1", right_wrist=path_a, clock=clock)
    emulators("127.0.0.2", right_wrist=path_b, left_wrist=left_b, clock=clock)
    a = _source(emulators, "127.0.0.1")
    b = _source(emulators, "127.0.0.2", hand="left")
    for t in (0.0, 0.5, 1.0):
        clock.set(t)
        sa = a.wait_for(lambda s: np.allclose(s.wrist, float32_pose(yup_to_zup(path_a(t))), atol=1e-6), 5.0)
        assert sa is not None and sa.ok
    # operator b tracks its LEFT hand, which stands still while its right hand moves
    sb = b.latest()
    assert np.allclose(sb.wrist[:3, 3], [-0.2, 0.3, 1.1], atol=1e-6)
    assert np.allclose(a.latest().wrist[:3, 3], [0.1, 0.3, 1.0], atol=1e-6)


def test_a_stalled_stream_goes_stale_and_recovers(emulators):
    emu = emulators("127.0.0.1")
    src = _source(emulators, "127.0.0.1", max_age_ms=150.0)
    emu.pause()
    s = _poll(src, "stale", 3.0)
    assert s is not None and s.age_s > 0.15
    emu.resume()
    assert _wait_status(src, "ok") is not None


def test_a_frozen_tracker_is_detected(emulators):
    """The still default hands send bit-identical matrices: frozen after frozen_after_ms, although fresh."""
    clock = ManualClock(0.0)
    emu = emulators("127.0.0.1", right_wrist=lambda t: wrist_pose([t, 1.0, -0.3], np.eye(3)), clock=clock)
    src = _source(emulators, "127.0.0.1", frozen_after_ms=300.0)
    s = _poll(src, "frozen", 3.0)
    assert s is not None and s.age_s < 0.15 and s.unchanged_s > 0.3
    clock.set(0.01)      # the hand moves again
    assert _wait_status(src, "ok") is not None
    emu.freeze()
    clock.set(0.02)      # the script moves, the (stuck) tracker does not
    assert _poll(src, "frozen", 3.0) is not None


def test_a_dropped_stream_reconnects_by_itself(emulators):
    emu = emulators("127.0.0.1")
    src = _source(emulators, "127.0.0.1")
    emu.drop()
    assert _poll(src, "stale", 3.0) is not None
    assert _wait_status(src, "ok", 10.0) is not None      # the client's own retry (0.5 s back-off)
    assert emu.connections == 2


def test_a_cleanly_ended_stream_is_restarted_by_the_supervisor(emulators):
    """avp_stream's client returns for good when the server ends the stream cleanly; the source starts a fresh
    client after reconnect_after_s, and the old one leaves."""
    emu = emulators("127.0.0.1")
    src = _source(emulators, "127.0.0.1", reconnect_after_s=1.0)
    emu.end()
    assert _poll(src, "stale", 3.0) is not None
    assert _wait_status(src, "ok", 10.0) is not None
    assert src.reconnects == 1 and emu.connections == 2
    time.sleep(0.3)
    assert emu.active_streams == 1


def test_no_headset_gives_a_clear_error_naming_the_ip():
    src = AvpPoseSource(AvpConfig(ip="127.0.0.3"))
    t0 = time.monotonic()
    with pytest.raises(UserError, match=r"127\.0\.0\.3:12345"):
        src.connect(timeout_s=1.0)
    assert time.monotonic() - t0 < 5.0


def test_bad_configuration_is_refused():
    with pytest.raises(UserError, match="hand"):
        AvpPoseSource(AvpConfig(hand="both"))
    with pytest.raises(UserError, match="ip"):
        AvpPoseSource(AvpConfig(ip=""))


def test_emulator_refuses_a_taken_address_and_the_benchmark_marker(emulators):
    emulators("127.0.0.1")
    with pytest.raises(RuntimeError, match="127.0.0.1:12345"):
        HandTrackingEmulator("127.0.0.1").start()
    marker = np.eye(4)
    marker[0, 0] = 777.0
    with pytest.raises(ValueError, match="777"):
        HandTrackingEmulator("127.0.0.9", head=lambda t: marker)._build(0.0)



_KEEPS_HANDLERS = """
import signal, socket, sys

def mine(*_):
    pass

for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, mine)
if sys.argv[1] == "emulator":
    from teleop.avp_server import HandTrackingEmulator

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    HandTrackingEmulator(ip="127.0.0.1", port=port).start().stop()
else:
    from teleop.avp import _streamer_class

    _streamer_class()
import avp_stream.streamer   # imported by now (a no-op that proves it)
print([signal.getsignal(s) is mine for s in (signal.SIGINT, signal.SIGTERM)])
"""


@pytest.mark.parametrize("first", ["emulator", "client"])
def test_importing_avp_stream_through_the_emulator_or_the_client_keeps_the_process_signal_handlers(first):
    """avp_stream's import installs SIGINT/SIGTERM handlers that raise KeyboardInterrupt wherever the main thread
    is; in the teleop node's dry run (emulators in the node's process) that became a traceback at Ctrl-C. A fresh
    process for each, since this one has imported avp_stream already."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _KEEPS_HANDLERS, first], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[True, True]", done.stdout[-2000:]
