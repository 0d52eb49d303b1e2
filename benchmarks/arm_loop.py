"""Arm loop benchmark: command-to-controller latency and joint_states rate/jitter of the arm node.

Side by side in one run, on this machine:
* ``direct``: ``RealmanArm.send_joint_targets`` (the real SDK) -> emulator receives ``movej_canfd``;
* ``ros``: a 20 Hz ``joint_command`` stream published over DDS -> the arm node (a separate process, the real SDK,
  the safety layer) -> emulator receives it; plus the interval between ``joint_states`` messages it publishes.

The emulated controller runs in this process, so both ends of each latency are read on one monotonic clock.
Usage: ``python benchmarks/arm_loop.py [--seconds 10]``; writes ``benchmarks/results/arm_loop.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ate_drivers.arm.realman import RealmanArm
from ate_drivers.arm.realman_emulator import RealmanEmulator
from ate_description.contract import PERIOD_S, arm_joint_names

HOME_DEG = [0.0, 20.0, 0.0, 60.0, 0.0, 40.0, 0.0]
OUT = Path(__file__).parent / "results" / "arm_loop.json"


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q)) if len(xs) else float("nan")


def triangle(k: int) -> float:
    """A slow back-and-forth joint offset (rad): 0.002 rad per command, never a jump the safety layer refuses."""
    return 0.002 * (k % 50 if (k // 50) % 2 == 0 else 50 - k % 50)


def match_latencies(sent: list[tuple[float, np.ndarray]], emu: RealmanEmulator) -> list[float]:
    """Latency of each sent target: the first later movej_canfd frame carrying the same joints (0.001 deg on the
    wire). A target overtaken before it went out (deferred, then replaced by a newer one) has no frame."""
    frames = [(r.t, np.asarray(r.msg["joint"]) / 1000.0) for r in emu.commands("movej_canfd")]
    out, j = [], 0
    for t_send, q_deg in sent:
        while j < len(frames) and frames[j][0] < t_send:
            j += 1
        for i in range(j, min(j + 5, len(frames))):
            if np.allclose(frames[i][1], q_deg, atol=2e-3):
                out.append(frames[i][0] - t_send)
                j = i + 1
                break
    return out


def bench_direct(n: int) -> dict:
    with RealmanEmulator(q0_deg=HOME_DEG) as emu:
        arm = RealmanArm(ip="127.0.0.1", port=emu.port)
        arm.connect()
        sent = []
        q0 = np.radians(HOME_DEG)
        for k in range(n):
            q = q0 + triangle(k)
            t = time.monotonic()
            arm.send_joint_targets(q)
            sent.append((t, np.degrees(q)))
            time.sleep(PERIOD_S)
        time.sleep(0.1)
        lat = match_latencies(sent, emu)
        arm.disconnect()
    return {"commands": n, "received": len(lat), "latency_ms_p50": 1e3 * pct(lat, 50),
            "latency_ms_p99": 1e3 * pct(lat, 99)}


def bench_ros(seconds: float) -> dict:
    import rclpy
    from sensor_msgs.msg import JointState

    from ate_bringup.graph import NodeSpec
    from ate_bringup.launcher import ProcessGraph
    from ate_drivers.config import load_drivers_config
    from ate_bringup import graph
    from ate_policy.config import dump_yaml

    os.environ["ROS_DOMAIN_ID"] = str(random.randint(1, 100))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    with RealmanEmulator(q0_deg=HOME_DEG) as emu, tempfile.TemporaryDirectory() as tmp:
        cfg = load_drivers_config(graph.default_drivers_config(), robot="real")
        cfg.left.realman.ip, cfg.left.realman.port = "127.0.0.1", emu.port
        path = Path(tmp) / "drivers.yaml"
        dump_yaml(cfg, path)
        spec = NodeSpec("ate_drivers", "arm_node", "ate_drivers.nodes.arm_node", "arm_driver", "left",
                        {"config_file": str(path), "robot": "real", "arm": "left"})
        with ProcessGraph([spec], log_dir=str(Path(tmp) / "logs")):
            rclpy.init()
            node = rclpy.create_node("arm_loop_bench")
            js_t: list[float] = []
            last_q: list = []

            def on_js(m):
                js_t.append(time.monotonic())
                last_q[:] = [np.asarray(m.position)]
            node.create_subscription(JointState, "/left/joint_states", on_js, 50)
            pub = node.create_publisher(JointState, "/left/joint_command", 10)
            t0 = time.monotonic()
            while not last_q and time.monotonic() - t0 < 60:
                rclpy.spin_once(node, timeout_sec=0.05)
            if not last_q:
                raise RuntimeError(f"arm node did not come up; see {tmp}/logs")
            q0 = last_q[0].copy()
            sent, k = [], 0
            js_t.clear()
            t_next = time.monotonic()
            t_end = t_next + seconds
            while time.monotonic() < t_end:
                rclpy.spin_once(node, timeout_sec=max(0.0, t_next - time.monotonic()))
                if time.monotonic() >= t_next:
                    q = q0 + triangle(k)
                    m = JointState()
                    m.header.stamp = node.get_clock().now().to_msg()
                    m.name = arm_joint_names("left")
                    m.position = [float(v) for v in q]
                    t = time.monotonic()
                    pub.publish(m)
                    sent.append((t, np.degrees(q)))
                    k += 1
                    t_next += PERIOD_S
            t1 = time.monotonic()
            while time.monotonic() - t1 < 0.3:
                rclpy.spin_once(node, timeout_sec=0.02)
            node.destroy_node()
            rclpy.shutdown()
        lat = match_latencies(sent, emu)
    dt = np.diff(js_t)
    return {"commands": len(sent), "received": len(lat), "latency_ms_p50": 1e3 * pct(lat, 50),
            "latency_ms_p99": 1e3 * pct(lat, 99), "joint_states_hz": (len(js_t) - 1) / (js_t[-1] - js_t[0]),
            "joint_states_period_ms_p50": 1e3 * pct(dt, 50), "joint_states_period_ms_p99": 1e3 * pct(dt, 99)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    direct = bench_direct(int(args.seconds / PERIOD_S))
    ros = bench_ros(args.seconds)
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
           "python": sys.version.split()[0], "seconds": args.seconds, "command_rate_hz": 1 / PERIOD_S,
           "direct_sdk": direct, "ros_arm_node": ros,
           "latency_ratio_ros_over_direct_p50": ros["latency_ms_p50"] / direct["latency_ms_p50"]}
    print(f"arm loop, {args.seconds:.0f} s of 20 Hz commands ({res['machine']})")
    print(f"{'path':<16}{'sent':>6}{'recv':>6}{'lat p50 ms':>12}{'lat p99 ms':>12}")
    for name, r in (("SDK direct", direct), ("ROS arm node", ros)):
        print(f"{name:<16}{r['commands']:>6}{r['received']:>6}{r['latency_ms_p50']:>12.2f}{r['latency_ms_p99']:>12.2f}")
    print(f"joint_states: {ros['joint_states_hz']:.1f} Hz, period p50 {ros['joint_states_period_ms_p50']:.1f} ms, "
          f"p99 {ros['joint_states_period_ms_p99']:.1f} ms (configured 100 Hz)")
    print(f"latency ratio ROS/direct (p50): {res['latency_ratio_ros_over_direct_p50']:.1f}x")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
