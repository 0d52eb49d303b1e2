"""Start graph :class:`~ate_bringup.graph.NodeSpec` lists as plain processes (``python -m module --ros-args ...``).

Used by the integration tests (no ``launch`` / ``launch_ros`` wheels exist for a venv without ROS) and usable by
hand: ``python -m ate_bringup.launcher policy task:=cook_bun robot:=sim``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

from ate_bringup.graph import NodeSpec


def ros_args(spec: NodeSpec) -> list[str]:
    out = ["--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        out += ["-r", f"__ns:=/{spec.namespace}"]
    for k, v in spec.parameters.items():
        val = ("true" if v else "false") if isinstance(v, bool) else str(v)
        if isinstance(v, str):
            # quoted where ROS's YAML parsing would read another type (on/off/yes/no are YAML 1.1 booleans)
            val = f"'{v}'" if v == "" or v.lower() in _YAML_BOOLS or _numeric(v) else v
        out += ["-p", f"{k}:={val}"]
    for src, dst in spec.remappings:
        out += ["-r", f"{src}:={dst}"]
    return out


_YAML_BOOLS = ("true", "false", "yes", "no", "on", "off", "y", "n")


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def command(spec: NodeSpec) -> list[str]:
    if not spec.module:   # a node of another ROS package (robot_state_publisher): its installed executable
        from ament_index_python.packages import get_package_prefix
        exe = os.path.join(get_package_prefix(spec.package), "lib", spec.package, spec.executable)
        return [exe, *ros_args(spec)]
    return [sys.executable, "-m", spec.module, *ros_args(spec)]


STACK_DUMP_WAIT_S = 1.0   # for a stuck node to print its stacks before it is killed


class ProcessGraph:
    """The processes of one graph; ``stop()`` (or leaving the ``with`` block) interrupts them like Ctrl-C."""

    def __init__(self, specs: Iterable[NodeSpec], env: dict | None = None, log_dir: str | None = None,
                 process_group: bool = False):
        """``process_group``: start every node in one new process group, as a terminal's ``ros2 launch`` runs
        them, so :meth:`interrupt_like_launch` can send what a Ctrl-C sends."""
        self.specs = list(specs)
        self.env = {**os.environ, **(env or {})}
        self.log_dir = log_dir
        self.process_group = process_group
        self.pgid: int | None = None
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> "ProcessGraph":
        for spec in self.specs:
            out = None
            if self.log_dir:
                os.makedirs(self.log_dir, exist_ok=True)
                out = open(os.path.join(self.log_dir, spec.fq_name.strip("/").replace("/", "_") + ".log"), "w")
            group = {}
            if self.process_group:
                group = {"process_group": 0 if self.pgid is None else self.pgid}
            p = subprocess.Popen(command(spec), env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                 **group)
            if self.process_group and self.pgid is None:
                self.pgid = p.pid
            self.procs[spec.fq_name] = p
        return self

    def exited(self) -> dict[str, int]:
        """Nodes that have ended, with their exit codes."""
        return {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}

    def interrupt_like_launch(self, delay_s: float = 0.1, timeout_s: float = 30.0) -> dict[str, int]:
        """What a Ctrl-C under ``ros2 launch`` does: SIGINT to the whole process group, then (``delay_s`` later)
        launch's own SIGINT to each node; returns the exit codes (a node still running after ``timeout_s`` is
        killed and reported as -9)."""
        if self.pgid is None:
            raise RuntimeError("start the graph with process_group=True to interrupt it like launch")
        try:
            os.killpg(self.pgid, signal.SIGINT)
        except ProcessLookupError:
            pass
        time.sleep(delay_s)
        return self.stop(timeout_s)

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self.procs.items()}

    def stop(self, timeout_s: float = 10.0) -> dict[str, int]:
        """SIGINT to every node; one still running after ``timeout_s`` is killed (code -9), a Python node after
        printing its threads' stacks into its log (``SIGUSR1``, see ``ate_drivers.nodes.common.spin``)."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        codes = {}
        python_nodes = {s.fq_name for s in self.specs if s.module}
        for name, p in self.procs.items():
            try:
                codes[name] = p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                if name in python_nodes:
                    p.send_signal(signal.SIGUSR1)
                    time.sleep(STACK_DUMP_WAIT_S)
                p.kill()
                codes[name] = p.wait()
        return codes

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv: list[str] | None = None) -> int:
    from ate_bringup import graph
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in graph.GRAPHS:
        print(f"usage: python -m ate_bringup.launcher {{{'|'.join(graph.GRAPHS)}}} [key:=value ...]\n"
              "  the same graphs and arguments as the launch files, started as plain processes")
        return 2
    bad = [a for a in argv[1:] if ":=" not in a]
    if bad:
        print(f"arguments are key:=value, got {bad}")
        return 2
    args = dict(a.split(":=", 1) for a in argv[1:])
    try:
        specs = graph.GRAPHS[argv[0]](args)
    except ValueError as e:
        print(f"error: {e}", flush=True)
        return 2
    stopping = {"signal": None}

    def on_signal(signum, _frame):
        # Ctrl-C reaches the launcher and every node (one process group); the nodes get their own SIGINT from
        # stop() too, as ros2 launch sends it. Further signals: already stopping.
        stopping["signal"] = signum
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)
    g = ProcessGraph(specs).start()
    print("started: " + ", ".join(g.procs), flush=True)
    code = 0
    while stopping["signal"] is None:
        ended = {n: c for n, c in g.exited().items() if _spec(g, n).essential}
        if ended:
            # An essential node's death ends the graph (as launch's on_exit Shutdown does), with the reason.
            reason = ", ".join(f"{n} exited with code {c}" for n, c in ended.items())
            print(f"stopping the graph: {reason}", flush=True)
            code = next((c if c > 0 else 1 for c in ended.values() if c), 0)
            break
        time.sleep(0.2)
    codes = g.stop()
    bad = {n: c for n, c in codes.items() if c not in (0,)}
    if bad and stopping["signal"] is not None:
        print(f"nodes that did not end cleanly: {bad}", flush=True)
        code = 1
    return code


def _spec(g: ProcessGraph, fq_name: str) -> NodeSpec:
    return next(s for s in g.specs if s.fq_name == fq_name)


if __name__ == "__main__":
    raise SystemExit(main())
