"""What the ROS integration tests share: a graph started as processes that must stop cleanly, and a probe node.

Import after ``pytest.importorskip("rclpy")``. The root conftest puts this folder on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import rclpy

from ate_bringup.launcher import ProcessGraph


def node_log(log_dir: Path, fq_name: str, tail: int = 2000) -> str:
    p = Path(log_dir) / (fq_name.strip("/").replace("/", "_") + ".log")
    return p.read_text()[-tail:] if p.exists() else "(no log)"


@contextlib.contextmanager
def running_graph(specs, env: dict, tmp: Path, probe_name: str = "probe", stop_timeout_s: float = 60.0):
    """Start ``specs`` as processes in one process group, as ``ros2 launch`` runs them (logs in ``tmp/logs``),
    and an rclpy probe node; yields (graph, node). At the end the graph is interrupted as a Ctrl-C under launch
    does it (SIGINT to the group, then one to each node): every node must exit with code 0 and print no
    traceback (the tail of a failing node's log is in the message); the timeout is generous for several
    processes shutting down on a loaded 2-core machine."""
    log_dir = Path(tmp) / "logs"
    g = ProcessGraph(specs, env=env, log_dir=str(log_dir), process_group=True).start()
    rclpy.init()
    node = rclpy.create_node(probe_name)
    try:
        yield g, node
    finally:
        node.destroy_node()
        rclpy.shutdown()
        assert_clean_exit(g, log_dir, g.interrupt_like_launch(timeout_s=stop_timeout_s))


def assert_clean_exit(g: ProcessGraph, log_dir: Path, codes: dict[str, int]) -> None:
    """Every node ended with exit code 0 and its log holds no traceback."""
    bad = {n: c for n, c in codes.items() if c != 0}
    tracebacks = [n for n in codes if "Traceback (most recent call last)" in node_log(log_dir, n, tail=10**6)]
    assert not bad and not tracebacks, (bad, tracebacks, {n: node_log(log_dir, n) for n in {*bad, *tracebacks}})


class Probe:
    """A test's node: spin until a condition holds, read /diagnostics, call Trigger services."""

    def __init__(self, node):
        from diagnostic_msgs.msg import DiagnosticArray

        self.node = node
        self.diag = {}  # status name -> the newest diagnostic_msgs/DiagnosticStatus
        node.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: self.diag.update({s.name: s for s in m.status}), 50)

    def kv(self, name: str, key: str | None = None, default: str = "0"):
        """The key-values of status ``name`` (a dict), or one of them (``default`` while absent)."""
        values = {kv.key: kv.value for kv in self.diag[name].values} if name in self.diag else {}
        return values if key is None else values.get(key, default)

    def message(self, name: str) -> str:
        return self.diag[name].message if name in self.diag else ""

    def spin(self, seconds: float, until=None) -> bool:
        """Spin for ``seconds``, or until ``until()`` holds (True then); without ``until``, always True."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.02)
            if until is not None and until():
                return True
        return until is None

    def call(self, service: str, timeout_s: float = 20.0):
        from std_srvs.srv import Trigger

        cli = self.node.create_client(Trigger, service)
        assert cli.wait_for_service(timeout_sec=timeout_s), f"service {service} not offered"
        fut = cli.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(self.node, fut, timeout_sec=timeout_s)
        assert fut.result() is not None, f"{service}: no answer within {timeout_s} s"
        return fut.result()


_ESTOP_BUTTON = ("import rclpy; from std_srvs.srv import Trigger; rclpy.init(); n = rclpy.create_node('estop_button');"
                 "c = n.create_client(Trigger, '/estop/trigger'); assert c.wait_for_service(timeout_sec=20);"
                 "f = c.call_async(Trigger.Request()); rclpy.spin_until_future_complete(n, f, timeout_sec=20);"
                 "assert f.result().success; rclpy.shutdown()")


def press_estop_from_another_process(timeout_s: float = 60.0) -> None:
    """What an e-stop button on another machine does: call /estop/trigger from a process of its own."""
    import os
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", _ESTOP_BUTTON], check=True, timeout=timeout_s, env={**os.environ})


def run_until_exit(spec, env: dict, tmp: Path, timeout_s: float = 90.0) -> tuple[int, str]:
    """Start one node that is expected to stop by itself (missing hardware); its exit code and log."""
    log_dir = Path(tmp) / "logs"
    g = ProcessGraph([spec], env=env, log_dir=str(log_dir)).start()
    try:
        code = g.procs[spec.fq_name].wait(timeout=timeout_s)
    finally:
        g.stop()
    return code, node_log(log_dir, spec.fq_name, tail=10_000)
