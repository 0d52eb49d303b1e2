"""The RealMan backend through the real ``Robotic_Arm`` SDK (and its libapi_c.so) against the controller emulator."""

from __future__ import annotations

import math
import socket
import time

import numpy as np
import pytest

from ate_drivers.arm.realman import ArmCommError, RealmanArm
from ate_drivers.interfaces import ArmBackend
from ate_description.kinematics import fk, pose6_from_matrix

HOME_DEG = [0.0, 20.0, 0.0, 60.0, 0.0, 40.0, 0.0]  # the emulator fixture's start position (conftest)

CONNECT_SEQUENCE = ["get_arm_software_info", "get_arm_current_trajectory", "get_realtime_push",
                    "get_current_work_frame", "get_current_tool_frame", "get_install_pose", "get_joint_min_pos",
                    "get_joint_max_pos", "get_joint_max_acc", "get_joint_max_speed", "get_DH_data"]


def test_connect_answers_the_sdk_handshake_and_reads_state_in_radians(emulator, arm):
    assert isinstance(arm, ArmBackend) and arm.is_connected
    assert [r.msg["command"] for r in emulator.received[: len(CONNECT_SEQUENCE)]] == CONNECT_SEQUENCE
    st = arm.read_state()
    np.testing.assert_allclose(st.q_rad, np.radians(HOME_DEG), atol=1e-5)
    expected_pose = pose6_from_matrix(fk(np.radians(HOME_DEG)))
    np.testing.assert_allclose(st.pose, expected_pose, atol=2e-3)  # wire resolution 0.001 mm / 0.001 rad
    assert st.errors == []


def test_wrench_is_read_in_newtons(emulator, arm):
    np.testing.assert_allclose(arm.read_wrench(), emulator.wrench, atol=1e-3)


def test_streamed_20hz_targets_for_5s_are_followed(emulator, arm):
    q0 = np.radians(HOME_DEG)
    worst_lag = 0.0
    t0 = time.monotonic()
    for k in range(100):  # 5 s at 20 Hz
        target = q0 + 0.3 * math.sin(2 * math.pi * 0.4 * k * 0.05) * np.ones(7)
        assert arm.send_joint_targets(target)
        # next tick, but at least 25 ms after the send (a loaded machine may run late): time to reach it
        time.sleep(max(0.025, t0 + (k + 1) * 0.05 - time.monotonic()))
        worst_lag = max(worst_lag, float(np.max(np.abs(arm.read_state().q_rad - target))))
    sent = emulator.canfd_targets_deg()
    assert len(sent) == 100 and emulator.rejected_frames == 0
    np.testing.assert_allclose(np.radians(sent[-1]), target, atol=1e-4)  # degrees x 1000 on the wire
    # The emulated joints move at the controller's speed limits, so they track a 0.4 Hz sine within a tick.
    assert worst_lag < 0.02
    assert emulator.commands("movej_canfd")[0].msg["follow"] is True


def test_stop_halts_motion_toward_a_far_target(emulator, arm):
    q = np.radians(HOME_DEG)
    target = q.copy()
    for _ in range(5):  # 5 frames of 9 deg each on joint 1: within the controller's 10 deg per frame
        time.sleep(0.021)
        target[0] += math.radians(9)
        arm.send_joint_targets(target)
    arm.stop()  # right after the last frame: the joint is still >= 9 deg short of the target
    held = arm.read_state().q_rad
    time.sleep(0.1)
    np.testing.assert_allclose(arm.read_state().q_rad, held, atol=1e-4)
    assert held[0] < target[0] - math.radians(5)
    assert len(emulator.commands("set_arm_stop")) == 1


def test_frames_faster_than_the_controller_allows_are_dropped_not_queued(emulator, arm):
    q = np.radians(HOME_DEG)
    assert arm.send_joint_targets(q) is True
    assert arm.send_joint_targets(q) is False  # < 20 ms later
    time.sleep(0.05)
    assert len(emulator.commands("movej_canfd")) == 1 and arm.frames_dropped_rate == 1


def test_tool_voltage_24v_is_sdk_type_3(emulator, arm):
    arm.set_tool_voltage(24)
    assert emulator.tool_voltage_type == 3
    with pytest.raises(ValueError, match="tool voltage"):
        arm.set_tool_voltage(48)


def test_bad_targets_raise_before_reaching_the_sdk(emulator, arm):
    with pytest.raises(ValueError):
        arm.send_joint_targets(np.array([0.0] * 6))
    with pytest.raises(ValueError):
        arm.send_joint_targets(np.array([np.nan] * 7))
    assert emulator.commands("movej_canfd") == []


def test_dropped_connection_raises_and_a_new_connect_works(emulator, arm):
    emulator.drop_connections()
    time.sleep(0.1)
    with pytest.raises(ArmCommError):
        arm.read_state()
    assert not arm.is_connected
    arm.disconnect()
    arm.connect()
    np.testing.assert_allclose(arm.read_state().q_rad, np.radians(HOME_DEG), atol=1e-5)


@pytest.mark.parametrize("fault", ["malformed", "delay"])
def test_malformed_and_late_replies_are_errors(emulator, arm, fault):
    if fault == "malformed":
        emulator.faults.malformed.add("get_current_arm_state")
    else:
        emulator.faults.delay_s["get_current_arm_state"] = 0.5  # > reply_timeout_ms = 150
    with pytest.raises(ArmCommError) as e:
        arm.read_state()
    assert e.value.code in (-2, -3)


def test_refused_stop_is_reported_with_code_1(emulator, arm):
    emulator.faults.refuse.add("set_arm_stop")
    with pytest.raises(ArmCommError) as e:
        arm.stop()
    assert e.value.code == 1


def test_controller_error_codes_surface_in_the_state(emulator, arm):
    emulator.faults.errors = [0x1002]
    assert arm.read_state().errors == [0x1002]


def test_connect_to_nothing_fails_fast_with_a_hint():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="robot:=sim"):
        RealmanArm(ip="127.0.0.1", port=port).connect()
    assert time.monotonic() - t0 < 10
