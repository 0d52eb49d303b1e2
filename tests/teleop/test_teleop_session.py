"""The dual-operator session on scripted sources: alignment, following, clutch, stream loss, unreachable
targets, homing, grippers, e-stop. Every command passes the arm driver's real safety filter (Rig.tick)."""

from __future__ import annotations

import numpy as np
import pytest

from ate_description.kinematics import rotation_log
from teleop_testkit import HOME_Q, Rig, teleop_config

pytest.importorskip("pinocchio")


def test_aligning_never_moves_the_arm():
    rig = Rig()
    rig.tick(3)
    assert rig.state("left") == "idle" and rig.out.joint_targets["left"] is None
    rig.buttons["left"].hold("right")
    rig.tick(4)                                   # init held: aligned, the arm holds
    assert rig.state("left") == "aligned" and rig.out.joint_targets["left"] is None
    rig.move_wrist("left", [0.2, 0.0, 0.1])       # settling the hand while aligned moves nothing
    rig.tick(2)
    rig.buttons["left"].release("right")
    rig.tick()
    assert rig.state("left") == "teleop"
    for _ in range(20):                           # a still hand: the arm stays where it was
        rig.tick()
        assert np.max(np.abs(rig.arms["left"].q - HOME_Q)) < 1e-3
    assert rig.state("right") == "idle" and np.array_equal(rig.arms["right"].q, HOME_Q)


def test_the_first_command_after_alignment_starts_from_the_measured_joints():
    """The arm was moved by hand while idle (its measured joints are far from any old command)."""
    rig = Rig()
    rig.align("left")
    rig.tick(5)
    rig.buttons["left"].hold("left")              # home ...
    rig.tick()
    rig.buttons["left"].release("left")
    rig.tick(60)
    assert rig.state("left") == "idle"
    rig.arms["left"].q = HOME_Q + np.array([0.3, -0.1, 0.2, 0.1, 0.0, -0.2, 0.5])   # moved by hand
    rig.t += 1.0                                  # ... long after the last command (driver watchdog expired)
    q_moved = rig.arms["left"].q.copy()
    rig.align("left")
    rig.tick()
    assert np.max(np.abs(rig.arms["left"].q - q_moved)) < 1e-3


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_10cm_of_wrist_moves_the_flange_10cm_along_the_mapped_axis(axis):
    rig = Rig()
    rig.align("right")
    T0 = rig.flange("right")
    d = np.zeros(3)
    d[axis] = 0.10
    for _ in range(20):                           # 10 cm over 1 s
        rig.move_wrist("right", d / 20)
        rig.tick()
    rig.tick(40)
    T1 = rig.flange("right")
    assert np.allclose(T1[:3, 3] - T0[:3, 3], d, atol=1e-3)
    assert np.degrees(np.linalg.norm(rotation_log(T0[:3, :3].T @ T1[:3, :3]))) < 0.5


def test_clutch_lets_the_hand_move_without_the_arm_and_continues_from_there():
    rig = Rig()
    rig.align("left")
    rig.move_wrist("left", [0.05, 0, 0])
    rig.tick(30)
    q_before = rig.arms["left"].q.copy()
    T_before = rig.flange("left")
    rig.buttons["left"].hold("l")                 # clutch
    rig.tick()
    assert rig.state("left") == "aligned"
    for _ in range(10):
        rig.move_wrist("left", [-0.03, 0.0, 0.02])   # 30 cm back, 20 cm up while clutched
        rig.tick()
        assert rig.out.joint_targets["left"] is None
    rig.buttons["left"].release("l")
    for _ in range(20):
        rig.tick()
        assert rig.state("left") == "teleop"
        assert np.max(np.abs(rig.arms["left"].q - q_before)) < 1e-3   # released: nothing jumps
    rig.move_wrist("left", [0.0, 0.04, 0.0])
    rig.tick(40)
    assert np.allclose(rig.flange("left")[:3, 3] - T_before[:3, 3], [0, 0.04, 0], atol=1e-3)


def test_a_lost_stream_holds_the_arm_and_a_short_gap_resumes():
    rig = Rig()
    rig.align("left")
    rig.tick(5)
    rig.poses["left"].dropped = True              # Wi-Fi gone
    q_hold = rig.arms["left"].q.copy()
    rig.move_wrist("left", [0.05, 0, 0])          # whatever the hand does now is not seen
    rig.tick(4)                                   # > max_age_ms (150 ms)
    assert rig.state("left") == "hold" and rig.out.status["hold_reason"]["left"] == "stale"
    assert rig.out.joint_targets["left"] is None
    assert np.array_equal(rig.arms["left"].q, q_hold)
    rig.poses["left"].dropped = False             # back after 0.2 s: teleop continues by itself
    rig.tick()
    assert rig.state("left") == "teleop"
    rig.tick(40)
    assert rig.flange("left")[0, 3] > 0.248 + 0.045


def test_after_a_long_loss_the_operator_must_realign():
    rig = Rig()
    rig.align("left")
    rig.poses["left"].dropped = True
    rig.tick(30)                                  # 1.5 s
    rig.poses["left"].dropped = False
    rig.move_wrist("left", [0.1, 0, 0])
    q_hold = rig.arms["left"].q.copy()
    rig.tick(10)
    assert rig.state("left") == "hold" and rig.out.status["hold_reason"]["left"] == "realign"
    assert np.array_equal(rig.arms["left"].q, q_hold)
    assert "re-align" in rig.out.status["last_error"]
    rig.align("left")
    assert rig.state("left") == "teleop"
    rig.tick(5)
    assert np.max(np.abs(rig.arms["left"].q - q_hold)) < 1e-3   # re-aligned where the hand is now


def test_a_frozen_tracker_or_a_silent_joycon_holds_the_arm():
    rig = Rig()
    rig.align()
    rig.poses["left"].frozen_pose = rig.wrist["left"].copy()
    rig.tick(12)                                  # > frozen_after_ms (500 ms)
    assert rig.state("left") == "hold" and rig.out.status["hold_reason"]["left"] == "frozen"
    rig.buttons["right"].close()                  # the right operator's Joy-Con disappears
    rig.tick()
    assert rig.state("right") == "hold" and rig.out.status["hold_reason"]["right"] == "buttons_lost"
    assert rig.out.joint_targets["right"] is None


def test_unreachable_targets_hold_and_the_arm_never_breaks_a_limit():
    rig = Rig()
    rig.align("left")
    for _ in range(30):                           # the hand walks 1.5 m away
        rig.move_wrist("left", [0.05, 0.0, 0.0])
        rig.tick()
    rig.tick(60)
    reason = rig.out.status["hold_reason"]["left"]
    assert reason in ("unreachable", "clamped")
    assert rig.out.status["unreachable_ticks"]["left"] > 0
    lim = rig.safety["left"].q_max
    assert np.all(np.abs(rig.arms["left"].q) <= lim)
    rig.move_wrist("left", [-1.5, 0.0, 0.0])      # back into the workspace: it follows again
    rig.tick(80)
    assert rig.out.status["hold_reason"]["left"] == ""
    assert np.allclose(rig.flange("left")[:3, 3], [0.248, 0.0, 0.251], atol=2e-3)


def test_home_moves_at_the_step_limit_then_idles():
    rig = Rig(q0=HOME_Q + np.array([0.5, 0.0, -0.3, 0.2, 0.0, 0.0, 0.8]))
    rig.press("right", "left")                    # home
    steps = []
    for _ in range(40):
        q0 = rig.arms["right"].q.copy()
        rig.tick()
        steps.append(np.max(np.abs(rig.arms["right"].q - q0)))
    assert rig.state("right") == "idle"
    assert np.allclose(rig.arms["right"].q, HOME_Q, atol=1e-6)
    assert max(steps) <= rig.cfg.safety.max_step_rad * rig.cfg.filter.step_fraction + 1e-12


def test_gripper_toggle_stick_and_pinch():
    cfg = teleop_config()
    cfg.right.gripper.mode = "stick"
    cfg.left.gripper.mode = "pinch"
    rig = Rig(cfg)
    rig.tick()
    assert rig.out.gripper_targets["left"] is None     # nothing commanded before the operator asks
    rig.press("right", "zl")                           # toggle works in every mode: open -> closed
    assert rig.out.gripper_targets["right"] == 0.0
    rig.buttons["right"].stick = (0.0, 1.0)            # stick up: opens at 1.5 /s
    rig.tick(10)
    assert rig.out.gripper_targets["right"] == pytest.approx(0.75)
    rig.buttons["right"].stick = (0.0, 0.0)
    rig.tick(5)
    assert rig.out.gripper_targets["right"] == pytest.approx(0.75)
    rig.align("left")                                  # pinch follows the hand in teleop
    rig.poses["left"].pinch_fn = lambda t: 0.05        # half way between 0.02 (closed) and 0.08 (open)
    rig.tick()
    assert rig.out.gripper_targets["left"] == pytest.approx(0.5)


def test_shared_episode_rules_with_the_real_recorder(tmp_path):
    """Record needs both arms in teleop; either operator starts, stops or discards; home is refused while
    recording; e-stop discards and idles both arms until it is reset. The saved episode's actions are the
    commands sent (with a perfectly tracking arm, the next state)."""
    pytest.importorskip("lerobot")
    from ate_policy.recording.recorder import EpisodeRecorder, RecorderConfig

    rc = RecorderConfig(root=str(tmp_path / "ds"), task="rules", image_height=48, image_width=64)
    cfg = teleop_config()
    cfg.task = "rules"
    rig = Rig(cfg, recorder=EpisodeRecorder(rc))
    cams = ("cam_high", "cam_left_wrist", "cam_right_wrist")
    rig.images = {c: np.full((48, 64, 3), 100, np.uint8) for c in cams}
    rig.align("left")
    rig.press("left", "up")                                   # record with the right arm idle: refused
    assert not rig.out.status["recording"] and "right not in teleop" in rig.out.status["last_error"]
    rig.session.clear_errors()
    rig.align("right")
    rig.press("right", "up")                                  # the right operator starts it
    assert rig.out.status["recording"]
    assert rig.out.status["state"] == {"left": "recording", "right": "recording"}
    rig.tick(9)
    rig.press("left", "left")                                 # home while recording: refused
    assert rig.state("left") == "recording" and "home refused" in rig.out.status["last_error"]
    rig.press("left", "down")                                 # the left operator discards it
    rig.session.wait_idle()
    assert not rig.out.status["recording"] and rig.session.status()["episodes"] == 0
    rig.press("left", "up")                                   # a new take
    for _ in range(19):
        rig.move_wrist("left", [0.002, 0.0, 0.0])
        rig.tick()
    rig.press("right", "up")                                  # stopped (saved) by the other operator
    assert rig.out.status["saving"] or rig.session.status()["episodes"] == 1
    rig.session.wait_idle()
    assert rig.session.status()["episodes"] == 1 and rig.session.status()["episode_frames"] == 20
    rig.press("right", "up")
    rig.tick(3)
    rig.press("left", "capture")                              # e-stop
    assert rig.out.estop_requested and rig.out.status["estop"] and not rig.out.status["recording"]
    assert rig.out.status["state"] == {"left": "idle", "right": "idle"}
    assert rig.out.joint_targets == {"left": None, "right": None}
    rig.align()
    assert rig.out.status["state"] == {"left": "idle", "right": "idle"}   # latched: nothing moves
    rig.session.set_estop(False)
    rig.align()
    assert rig.out.status["state"] == {"left": "teleop", "right": "teleop"}
    rig.session.close()

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/ate_dual", root=rc.root)
    assert ds.num_episodes == 1 and ds.num_frames == 20
    state = np.stack([ds.hf_dataset[i]["observation.state"].numpy() for i in range(20)])
    action = np.stack([ds.hf_dataset[i]["action"].numpy() for i in range(20)])
    assert np.allclose(action[:-1], state[1:], atol=1e-6)     # float32 on disk
    assert state[-1, 0:7].tolist() != state[0, 0:7].tolist()  # the left arm moved during the take
    assert ds.meta.tasks.index[0] == "rules"


def test_recording_without_a_task_is_refused_at_start(tmp_path):
    from ate_description.errors import UserError
    from teleop.session import DualTeleopSession
    from teleop_testkit import calibration

    cfg = teleop_config()
    cfg.record = True
    cfg.recorder.root = str(tmp_path / "ds")
    with pytest.raises(UserError, match="task"):
        DualTeleopSession(cfg, calibration())
    assert not (tmp_path / "ds").exists()


def test_scripted_buttons_of_both_operators_count_from_the_connected_session():
    """A slow second headset must not eat the first operator's script: every headset connects before any
    scripted clock starts (CI once saw the left init window pass while the right headset answered)."""
    import time

    from teleop.buttons import ScriptedButtons
    from teleop.pose_source import ScriptedPoseSource
    from teleop.session import DualTeleopSession
    from teleop_testkit import calibration

    class SlowPoseSource(ScriptedPoseSource):
        def connect(self, timeout_s=None):
            time.sleep(0.4)
            super().connect(timeout_s)

    poses = {arm: SlowPoseSource(lambda t: np.eye(4), time.monotonic) for arm in ("left", "right")}
    buttons = {arm: ScriptedButtons([(0.0, 0.3, "right")]) for arm in ("left", "right")}
    session = DualTeleopSession(teleop_config(), calibration(), pose_sources=poses, button_sources=buttons)
    session.connect(timeout_s=1.0)
    try:
        held = {arm: "right" in buttons[arm].read().pressed for arm in ("left", "right")}
    finally:
        session.close()
    assert held == {"left": True, "right": True}


def test_a_session_built_from_config_alone_runs_unattended(emulators):
    """What a node does with `buttons_source: scripted` against emulated headsets (robot:=sim CI runs): no
    injected sources; real avp_stream clients from the config, scripted buttons counted from connect()."""
    import time

    from teleop.session import DualTeleopSession
    from teleop_testkit import calibration

    emulators("127.0.0.1")
    emulators("127.0.0.2")
    cfg = teleop_config()
    for arm in ("left", "right"):
        cfg.operator(arm).buttons_source = "scripted"
        cfg.operator(arm).button_script = [(0.1, 0.6, "right")]     # init held 0.1 .. 0.6 s after connect
    session = DualTeleopSession(cfg, calibration())
    session.connect(timeout_s=10.0)
    try:
        states = []
        deadline = time.monotonic() + 5.0      # ticks at ~20 Hz until both arms teleoperate (a loaded CI box
        while time.monotonic() < deadline:     # stalls a tick now and then; the 0.5 s window absorbs that)
            now = time.monotonic()
            for arm in ("left", "right"):
                session.put_joint_state(arm, HOME_Q, now)
                session.put_gripper_state(arm, 1.0, now)
            states.append(session.tick(now).status["state"])
            if states[-1] == {"left": "teleop", "right": "teleop"}:
                break
            time.sleep(0.05)
    finally:
        session.close()
    assert {"left": "aligned", "right": "aligned"} in states
    assert states[-1] == {"left": "teleop", "right": "teleop"}
