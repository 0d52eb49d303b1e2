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
            val = f"'{v}'" if v == "" or v.lower() in ("true", "false") or _numeric(v) else v
        out += ["-p", f"{k}:={val}"]
    for src, dst in spec.remappings:
        out += ["-r", f"{src}:={dst}"]
    return out


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def command(spec: NodeSpec) -> list[str]:
    return [sys.executable, "-m", spec.module, *ros_args(spec)]


class ProcessGraph:
    """The processes of one graph; ``stop()`` (or leaving the ``with`` block) interrupts them like Ctrl-C."""

    def __init__(self, specs: Iterable[NodeSpec], env: dict | None = None, log_dir: str | None = None):
        self.specs = list(specs)
        self.env = {**os.environ, **(env or {})}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> "ProcessGraph":
        for spec in self.specs:
            out = None
            if self.log_dir:
                os.makedirs(self.log_dir, exist_ok=True)
                out = open(os.path.join(self.log_dir, spec.fq_name.strip("/").replace("/", "_") + ".log"), "w")
            self.procs[spec.fq_name] = subprocess.Popen(command(spec), env=self.env, stdout=out,
                                                        stderr=subprocess.STDOUT if out else None)
        return self

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self.procs.items()}

    def stop(self, timeout_s: float = 10.0) -> dict[str, int]:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        codes = {}
        for name, p in self.procs.items():
            try:
                codes[name] = p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
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
    g = ProcessGraph(graph.GRAPHS[argv[0]](args)).start()
    print("started: " + ", ".join(g.procs), flush=True)
    try:
        while all(g.alive().values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    codes = g.stop()
    return max(codes.values(), default=0)


if __name__ == "__main__":
    raise SystemExit(main())
