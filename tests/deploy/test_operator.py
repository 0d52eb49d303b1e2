"""The operator console (``python -m ate_deploy.operator``): its e-stop publishes the latched /estop itself, so
it stops the cell even when the e-stop node is down, and a service that is not there is reported, not waited on."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")


def test_the_operator_estop_publishes_the_latched_estop_without_an_estop_node(ros_env):
    from std_msgs.msg import Bool

    from ate_drivers.nodes.common import ESTOP_QOS

    p = subprocess.Popen([sys.executable, "-m", "ate_deploy.operator"], env={**os.environ, **ros_env},
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        p.stdin.write("e\n")   # no e-stop node runs: the service call times out, /estop is published anyway
        p.stdin.flush()
        time.sleep(4.0)
        rclpy.init()
        node = rclpy.create_node("operator_probe")
        got = []
        # a late subscriber still gets it: the operator's /estop is latched (transient-local)
        node.create_subscription(Bool, "/estop", lambda m: got.append(m.data), ESTOP_QOS)
        end = time.monotonic() + 20
        while not got and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
        rclpy.shutdown()
        p.stdin.write("s\nq\n")
        p.stdin.flush()
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert got == [True], out
    assert "/estop/trigger: not offered" in out and "/policy/start: not offered" in out, out
    assert p.returncode == 0 and "Traceback" not in out
