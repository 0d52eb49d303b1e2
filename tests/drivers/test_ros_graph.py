"""ROS integration over DDS with real rclpy: the driver graph of ``ate_bringup.graph.drivers`` started as processes
(robot:=emulated: the real SDK and python-can against in-process emulators), observed from this process.

Checks topics and rates, a command round trip (joint_command -> controller -> joint_states), the gripper, a
camera, the cell supervisor across processes (a refusal on the left arm's node holds the right arm's), an e-stop
triggered from another process reaching both arms and both grippers (asserted on what each emulated device
received, counted before the trigger), and a dead e-stop node latching every driver.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow

rclpy = pytest.importorskip("rclpy")

from ate_bringup import graph  # noqa: E402
from ate_drivers.config import load_drivers_config  # noqa: E402
from ate_policy.config import dump_yaml  # noqa: E402
from ate_description.contract import arm_joint_names  # noqa: E402

import ros_testkit  # noqa: E402
from ros_testkit import running_graph  # noqa: E402


@pytest.fixture(scope="module")
def driver_graph(ros_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graph")
    cfg = load_drivers_config(graph.default_drivers_config(), robot="emulated")
    cam = cfg.cameras["cam_high"]
    cam.width, cam.height, cam.fps = 160, 120, 15   # small frames: this is about the wiring, not bandwidth
    cfg.fail_fast_s = 30.0
    # cam_left_wrist plays a 5-frame clip, then behaves as an unplugged camera
    import cv2
    clip = str(tmp / "clip.avi")
    w = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"MJPG"), 15, (160, 120))
    for _ in range(5):
        w.write(np.full((120, 160, 3), 80, np.uint8))
    w.release()
    wrist = cfg.cameras["cam_left_wrist"]
    wrist.width, wrist.height, wrist.fps, wrist.playback_file = 160, 120, 15, clip
    path = tmp / "drivers.yaml"
    dump_yaml(cfg, path)
    specs = graph.drivers({"robot": "emulated", "config": str(path), "camera_names": "cam_high,cam_left_wrist"})
    with running_graph(specs, ros_env, tmp, "graph_probe") as (g, node):
        yield g, node, tmp


class Probe(ros_testkit.Probe):
    def __init__(self, node):
        from geometry_msgs.msg import WrenchStamped
        from sensor_msgs.msg import Image, JointState
        from ate_drivers.nodes.common import IMAGE_QOS
        super().__init__(node)
        self.js = {arm: [] for arm in ("left", "right")}
        self.grip, self.wrench, self.images = [], [], []
        for arm in ("left", "right"):
            node.create_subscription(JointState, f"/{arm}/joint_states",
                                     lambda m, a=arm: self.js[a].append((time.monotonic(), m)), 50)
        node.create_subscription(JointState, "/left/gripper/state", self.grip.append, 10)
        node.create_subscription(WrenchStamped, "/left/wrench", self.wrench.append, 10)
        node.create_subscription(Image, "/cameras/cam_high/image_raw", self.images.append, IMAGE_QOS)
        self.cmd = {a: node.create_publisher(JointState, f"/{a}/joint_command", 10) for a in ("left", "right")}
        self.grip_cmd = node.create_publisher(JointState, "/left/gripper/command", 10)
        self.JointState = JointState

    def q(self, arm: str) -> np.ndarray:
        return np.asarray(self.js[arm][-1][1].position)

    def command(self, q: np.ndarray) -> None:
        self.command_arm("left", q)

    def command_arm(self, arm: str, q: np.ndarray) -> None:
        m = self.JointState()
        m.header.stamp = self.node.get_clock().now().to_msg()
        m.name = arm_joint_names(arm)
        m.position = [float(v) for v in q]
        self.cmd[arm].publish(m)

    def stream_to(self, q_from: np.ndarray, q_to: np.ndarray, steps: int, hold: int = 6) -> None:
        """Stream a ramp at 20 Hz, then keep sending its end for ``hold`` ticks, as a 20 Hz consumer does (a
        command delayed past the watchdog on a loaded machine is refused as stale; the next one gets through)."""
        for k in range(1, steps + hold + 1):
            self.command(q_from + (q_to - q_from) * min(k, steps) / steps)
            self.spin(0.05)


def test_driver_graph_over_dds(driver_graph):
    g, node, tmp = driver_graph
    p = Probe(node)
    ready = p.spin(60.0, until=lambda: all(p.js.values()) and p.grip and p.images and len(p.diag) >= 4)
    assert ready, (f"graph not up: js={[len(v) for v in p.js.values()]} grip={len(p.grip)} "
                   f"images={len(p.images)} diag={sorted(p.diag)} alive={g.alive()}; logs in {tmp / 'logs'}")

    # topics and rates: joint_states stream on both arms, named in the contract's order, faster than 20 Hz
    n0 = {a: len(v) for a, v in p.js.items()}
    p.spin(2.0)
    rates = {a: (len(p.js[a]) - n0[a]) / 2.0 for a in p.js}
    print("joint_states rates (Hz):", rates)
    assert all(r > 20.0 for r in rates.values()), rates
    assert list(p.js["right"][-1][1].name) == arm_joint_names("right")
    assert p.wrench and p.wrench[-1].header.frame_id == "left_flange"
    img = p.images[-1]
    assert (img.width, img.height, img.encoding) == (160, 120, "rgb8") and img.header.stamp.sec > 0
    assert p.diag["arm/left"].level == b"\x00", p.diag["arm/left"].message

    # the clip camera ended: its node reports it and stays up
    assert p.spin(5.0, until=lambda: "camera/cam_left_wrist" in p.diag
                  and "playback ended" in p.diag["camera/cam_left_wrist"].message)
    assert p.diag["camera/cam_left_wrist"].level == b"\x02"
    assert g.alive()["/camera_cam_left_wrist"]

    # command round trip: joint_command -> safety -> SDK -> emulator -> joint_states
    q0 = p.q("left")
    target = q0.copy()
    target[0] += 0.3
    p.stream_to(q0, target, steps=12)             # 0.025 rad per 20 Hz command: within the step limit
    assert p.spin(3.0, until=lambda: abs(p.q("left")[0] - target[0]) < 2e-3), (p.q("left"), target)
    assert abs(p.q("right")[0] - q0[0]) < 1e-3    # the other arm did not move

    # a too-fast command is refused and counted, the arm stays ...
    stops0 = {a: int(p.kv(f"arm/{a}", "emulator_stops_received")) for a in ("left", "right")}
    p.command(target + 0.5)
    assert p.spin(5.0, until=lambda: int(p.kv("arm/left", "refused_too_fast")) >= 1)
    assert abs(p.q("left")[0] - target[0]) < 2e-3
    # ... and the cell holds both arms: the right arm's node (another process) stopped its arm through the SDK
    assert p.spin(5.0, until=lambda: p.kv("arm/right", "cell_held", "") == "True"
                  and int(p.kv("arm/right", "emulator_stops_received")) > stops0["right"]), p.kv("arm/right")
    # the supervisor's own diagnostics come from its node at their own rate: wait for them too
    assert p.spin(5.0, until=lambda: "too_fast" in p.kv("cell", "reason", "")
                  and p.diag["cell"].level == b"\x02"), p.kv("cell")
    assert p.diag["arm/right"].level == b"\x02" and "cell hold" in p.diag["arm/right"].message
    q_right = p.q("right")
    p.command_arm("right", q_right + np.r_[0.02, np.zeros(6)])
    assert p.spin(5.0, until=lambda: int(p.kv("arm/right", "refused_held")) >= 1)
    assert abs(p.q("right")[0] - q_right[0]) < 1e-3                      # held: it did not move
    assert p.call("/cell/resume").success                                # only the operator resumes
    assert p.spin(5.0, until=lambda: all(p.kv(f"arm/{a}", "cell_held", "") == "False" for a in ("left", "right")))

    # gripper round trip
    gm = p.JointState()
    gm.name, gm.position = ["left_gripper"], [0.3]
    p.grip_cmd.publish(gm)
    assert p.spin(5.0, until=lambda: abs(p.grip[-1].position[0] - 0.3) < 0.01)

    # e-stop from another process: both arms and both grippers stop (counted on the emulated devices before the
    # trigger: the listeners must have fired), commands are ignored until reset
    p.spin(1.5)   # a fresh diagnostics round
    stops = {a: int(p.kv(f"arm/{a}", "emulator_stops_received")) for a in ("left", "right")}
    grips = {a: int(p.kv(f"gripper/{a}", "emulator_commands_received")) for a in ("left", "right")}
    holds = {a: int(p.kv(f"gripper/{a}", "holds_sent")) for a in ("left", "right")}
    ros_testkit.press_estop_from_another_process()
    assert p.spin(5.0, until=lambda: all(p.kv(f"arm/{a}")["estop"] == "True" for a in ("left", "right")))
    assert p.spin(5.0, until=lambda: all(int(p.kv(f"arm/{a}", "emulator_stops_received")) > stops[a]
                                         and int(p.kv(f"gripper/{a}", "emulator_commands_received")) > grips[a]
                                         for a in ("left", "right"))), (stops, grips, p.kv("gripper/left"))
    for a in ("left", "right"):   # the gripper was told to stay at its measured opening (0x00..0xFF steps)
        gk = p.kv(f"gripper/{a}")
        assert abs(float(gk["emulator_last_command_position"]) - float(gk["position"])) <= 2 / 255, gk
        assert int(gk["holds_sent"]) == holds[a] + 1
    assert p.diag["arm/right"].message == "e-stop latched"
    q_stop = p.q("left")
    p.stream_to(q_stop, q_stop + 0.05, steps=2)
    p.spin(0.5)
    assert abs(p.q("left")[0] - q_stop[0]) < 1e-3
    assert p.spin(3.0, until=lambda: int(p.kv("arm/left").get("refused_estop", "0")) >= 1)

    assert p.call("/estop/reset").success
    assert p.spin(5.0, until=lambda: p.kv("arm/left")["estop"] == "False")
    q1 = p.q("left")
    p.stream_to(q1, q1 + np.r_[0.05, np.zeros(6)], steps=4)
    assert p.spin(3.0, until=lambda: abs(p.q("left")[0] - (q1[0] + 0.05)) < 2e-3)
    assert all(g.alive().values()), g.alive()


def test_a_dead_estop_node_latches_every_driver_within_the_heartbeat_timeout(driver_graph):
    import signal

    g, node, tmp = driver_graph
    p = Probe(node)
    assert p.spin(10.0, until=lambda: all(p.kv(f"arm/{a}", "estop", "") == "False" for a in ("left", "right")))
    stops = {a: int(p.kv(f"arm/{a}", "emulator_stops_received")) for a in ("left", "right")}
    t_kill = time.monotonic()
    g.procs["/estop"].send_signal(signal.SIGINT)              # the e-stop node goes away (cleanly, exit 0)
    assert g.procs["/estop"].wait(timeout=20) == 0
    assert p.spin(10.0, until=lambda: all(p.kv(f"arm/{a}", "estop", "") == "True"
                                          and int(p.kv(f"arm/{a}", "emulator_stops_received")) > stops[a]
                                          for a in ("left", "right")))
    # heartbeat timeout 1 s + up to one 1 s diagnostics period + a loaded machine's delays
    assert time.monotonic() - t_kill < 4.0
    assert all(p.kv(f"arm/{a}", "estop_heartbeat_lapses") == "1" for a in ("left", "right"))
    assert p.spin(3.0, until=lambda: all(p.kv(f"gripper/{a}", "estop", "") == "True" for a in ("left", "right")))


def test_real_robot_without_hardware_stops_within_seconds_naming_sim(ros_env, tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    cfg = load_drivers_config(graph.default_drivers_config(), robot="real")
    cfg.left.realman.ip, cfg.left.realman.port, cfg.fail_fast_s = "127.0.0.1", dead, 2.0
    path = tmp_path / "drivers.yaml"
    dump_yaml(cfg, path)
    spec = graph.drivers({"robot": "real", "config": str(path), "arms": "left", "grippers": False,
                          "cameras": False})[1]
    code, log = ros_testkit.run_until_exit(spec, ros_env, tmp_path, timeout_s=60)
    assert code == 3 and "robot:=sim" in log, log[-2000:]
