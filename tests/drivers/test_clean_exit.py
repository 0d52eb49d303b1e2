"""Start and stop as ``ros2 launch`` does it: the process launcher (``python -m ate_bringup.launcher``) with its
nodes in one process group, interrupted by a Ctrl-C (SIGINT to the group, then the launcher's own SIGINT to each
node): the launcher and every node end with exit code 0 and print no traceback. An essential node that dies
ends its graph, with the reason.

(The DDS graph tests check the same clean exit for every node of the driver, sim, policy and teleop graphs:
``ros_testkit.running_graph`` interrupts each graph like launch and asserts it.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from ate_bringup import graph  # noqa: E402
from ate_drivers.config import load_drivers_config  # noqa: E402
from ate_description.config import dump_yaml  # noqa: E402

pytestmark = pytest.mark.slow


def _launcher(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ate_bringup.launcher", *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0, text=True)


def _wait_for_topic(topic: str, timeout_s: float) -> bool:
    from sensor_msgs.msg import JointState

    rclpy.init()
    node = rclpy.create_node("clean_exit_probe")
    got = []
    node.create_subscription(JointState, topic, got.append, 10)
    end = time.monotonic() + timeout_s
    try:
        while not got and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    return bool(got)


def test_ctrl_c_ends_the_launcher_and_every_node_with_exit_0_and_no_traceback(ros_env):
    p = _launcher(["drivers", "robot:=emulated", "cameras:=false"], ros_env)
    try:
        assert _wait_for_topic("/right/joint_states", 90.0), "driver graph did not come up"
        time.sleep(1.0)   # the grippers' serial links and the e-stop heartbeat are up too
        os.killpg(p.pid, signal.SIGINT)          # the terminal's Ctrl-C: launcher and every node
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert "started: /estop, /left/arm_driver, /left/gripper_driver, /right/arm_driver" in out


def test_each_node_started_as_launch_starts_it_exits_0_without_traceback_on_ctrl_c(ros_env, tmp_path):
    import ros_testkit
    from ate_bringup.launcher import ProcessGraph

    specs = graph.drivers({"robot": "emulated", "cameras": "false", "description": "false"})
    log_dir = tmp_path / "logs"
    g = ProcessGraph(specs, env=ros_env, log_dir=str(log_dir), process_group=True).start()
    try:
        assert _wait_for_topic("/left/joint_states", 90.0), g.exited()
        time.sleep(1.0)
    finally:
        # the terminal's SIGINT to the group, then launch's own SIGINT to each node 50 ms later (mid-shutdown)
        codes = g.interrupt_like_launch(delay_s=0.05, timeout_s=30.0)
    assert set(codes) == {s.fq_name for s in specs}
    ros_testkit.assert_clean_exit(g, log_dir, codes)


def test_an_essential_node_that_dies_ends_its_graph_with_the_reason(ros_env, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    cfg = load_drivers_config(graph.default_drivers_config(), robot="real")
    cfg.left.realman.ip, cfg.left.realman.port, cfg.fail_fast_s = "127.0.0.1", dead, 2.0
    path = tmp_path / "drivers.yaml"
    dump_yaml(cfg, path)
    p = _launcher(["drivers", "robot:=real", f"config:={path}", "arms:=left", "grippers:=false",
                   "cameras:=false"], ros_env)
    try:
        out, _ = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    # the arm node gave up (no controller, code 3): the launcher stopped the e-stop node too and says why
    assert "stopping the graph: /left/arm_driver exited with code 3" in out, out[-4000:]
    assert p.returncode == 3 and "Traceback" not in out, out[-4000:]


_FOREIGN_HANDLER_NODE = '''
import signal, sys
from rclpy.node import Node
from std_msgs.msg import String
from ate_drivers.nodes.common import spin


class Probe(Node):
    """Installs a handler as avp_stream's import does (raise KeyboardInterrupt wherever the main thread is) and
    keeps the executor busy taking messages."""

    def __init__(self):
        super().__init__("foreign_handler_probe")

        def foreign(*_):
            print("foreign handler ran", flush=True)
            raise KeyboardInterrupt

        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, foreign)
        self.pub = self.create_publisher(String, "foreign_handler_chatter", 10)
        self.sub = self.create_subscription(String, "foreign_handler_chatter", lambda m: None, 10)
        self.timer = self.create_timer(0.001, lambda: self.pub.publish(String(data="x")))
        self.create_timer(0.5, lambda: print("spinning", flush=True))

    def close(self):
        print("closed", flush=True)


sys.exit(spin(Probe))
'''


def test_a_handler_a_library_installs_while_the_node_is_built_does_not_take_over_ctrl_c(ros_env):
    """spin() puts its own SIGINT/SIGTERM handlers back after the node is built: a library's handler that raises
    KeyboardInterrupt (avp_stream's) could land inside the executor's C++ calls and end the node with a traceback."""
    p = subprocess.Popen([sys.executable, "-c", _FOREIGN_HANDLER_NODE], env={**os.environ, **ros_env},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert p.stdout.readline().strip() == "spinning"
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and "closed" in out, out[-3000:]
    assert "foreign handler ran" not in out and "Traceback" not in out, out[-3000:]


_STUCK_NODE = '''
import sys, time
from rclpy.node import Node
from ate_drivers.nodes.common import spin


class Stuck(Node):
    def __init__(self):
        super().__init__("stuck_probe")
        self.create_timer(0.2, lambda: print("spinning", flush=True))

    def close(self):
        print("closing", flush=True)
        hang_in_close()


def hang_in_close():
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(spin(Stuck))
'''


def test_a_node_that_does_not_stop_in_time_is_killed_after_printing_where_it_hung(ros_env, tmp_path):
    """The launcher's stop: a node still running after the timeout prints its threads' stacks into its log
    (SIGUSR1 -> faulthandler, registered by spin()) before it is killed, so a hang under load can be read later."""
    import ros_testkit
    from ate_bringup.graph import NodeSpec
    from ate_bringup.launcher import ProcessGraph

    (tmp_path / "stuck_probe_node.py").write_text(_STUCK_NODE)
    spec = NodeSpec("ate_drivers", "stuck", "stuck_probe_node", "stuck_probe")
    env = {**ros_env, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    log_dir = tmp_path / "logs"
    g = ProcessGraph([spec], env=env, log_dir=str(log_dir), process_group=True).start()
    end = time.monotonic() + 60
    while "spinning" not in ros_testkit.node_log(log_dir, "/stuck_probe") and time.monotonic() < end:
        time.sleep(0.2)
        if g.exited():
            break
    codes = g.interrupt_like_launch(timeout_s=3.0)
    log = ros_testkit.node_log(log_dir, "/stuck_probe", tail=10**5)
    assert codes == {"/stuck_probe": -9}, (codes, log)
    assert "closing" in log and "in hang_in_close" in log and "in close" in log, log
