"""Arm loop benchmark: the command path from a 20 Hz target to the controller, on this machine.

Side by side in one run (the emulated controller runs in this process, so both ends of each time are read on
one monotonic clock):
* ``direct``: ``RealmanArm.send_joint_targets`` (the real SDK) -> emulator receives ``movej_canfd`` (SDK
  latency);
* ``stream``: 20 Hz targets -> ``ArmDriver`` (safety layer, stream thread at the controller's rate) -> SDK ->
  emulator: frame-gap jitter at the controller rate, how many gaps exceed high follow's 10 ms, and the latency
  the stream adds (the delay that best aligns the frames with the 20 Hz input, plus the time to a target's
  first frame);
* ``chunks``: the same motion handed over as whole chunks (``ArmDriver.on_trajectory``): the delay that remains;
* ``ros``: the same, with the targets published over DDS to the arm node (a separate process); plus the
  interval between the ``joint_states`` messages it publishes;
* ``estop``: two arms in one process sharing one e-stop (the lab PC's layout): trigger -> ``set_arm_stop`` at
  each emulated controller, and no frame after it;
* ``estop_ros``: the cell as launched: the e-stop node and one arm node per arm (three processes, DDS); a
  ``/estop/trigger`` call from this process -> ``set_arm_stop`` at both emulated controllers.

Usage: ``python benchmarks/arm_loop.py [--seconds 10]`` (``--seconds 2`` is the quick run); writes
``benchmarks/results/arm_loop.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ate_description.contract import PERIOD_S, arm_joint_names
from ate_description.limits import load_safety
from ate_drivers.arm.realman import RealmanArm
from ate_drivers.arm.realman_emulator import HIGH_FOLLOW_PERIOD_S, RealmanEmulator
from ate_drivers.arm_driver import ArmDriver
from ate_drivers.safety import EStop

HOME_DEG = [0.0, 20.0, 0.0, 60.0, 0.0, 40.0, 0.0]
NAMES = arm_joint_names("left")
OUT = Path(__file__).parent / "results" / "arm_loop.json"


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q)) if len(xs) else float("nan")


def target(k: int) -> np.ndarray:
    """20 Hz target k: joints 1 and 4 swing 0.25 rad at 0.5 Hz (peak 0.79 rad/s), the kind of motion a policy makes."""
    q = np.radians(HOME_DEG)
    s = 0.25 * np.sin(2 * np.pi * 0.5 * k * PERIOD_S)
    q[0] += s
    q[3] -= s
    return q


def stream_delay(sent: list[tuple[float, np.ndarray]], emu: RealmanEmulator) -> tuple[float, float]:
    """(delay s, rms residual rad): the shift of the piecewise-linear 20 Hz input that best matches the frames."""
    ts = np.array([t for t, _ in sent])
    qs = np.array([q[0] for _, q in sent])
    frames = [(r.t, np.radians(r.msg["joint"][0] / 1000.0)) for r in emu.commands("movej_canfd")]
    ft = np.array([t for t, _ in frames])
    fq = np.array([q for _, q in frames])
    keep = (ft > ts[0] + 0.3) & (ft < ts[-1])
    best = (float("nan"), float("inf"))
    for lag in np.arange(-0.02, 0.2, 0.0005):
        r = float(np.sqrt(np.mean((fq[keep] - np.interp(ft[keep] - lag, ts, qs)) ** 2)))
        if r < best[1]:
            best = (float(lag), r)
    return best


def first_frame_latency(sent: list[tuple[float, np.ndarray]], emu: RealmanEmulator) -> list[float]:
    """Time from each target to the first frame after it (the stream reacts at its next frame)."""
    ft = np.array([r.t for r in emu.commands("movej_canfd")])
    out = []
    for t, _ in sent:
        i = np.searchsorted(ft, t)
        if i < len(ft):
            out.append(float(ft[i] - t))
    return out


def gap_stats(emu: RealmanEmulator, t0: float, t1: float, period: float) -> dict:
    ft = np.array([t for t in emu.frame_times() if t0 <= t <= t1])
    gaps = np.diff(ft)
    return {"frames": int(len(ft)), "period_ms": period * 1e3, "gap_ms_p50": 1e3 * pct(gaps, 50),
            "gap_ms_p99": 1e3 * pct(gaps, 99), "gap_ms_max": 1e3 * float(np.max(gaps)) if len(gaps) else float("nan"),
            "share_within_period_plus_2ms": float(np.mean(gaps <= period + 0.002)) if len(gaps) else float("nan"),
            "gaps_over_10ms": int(np.sum(gaps > HIGH_FOLLOW_PERIOD_S)), "emulator_follow_stops": emu.follow_stops}


def settle(drv: ArmDriver, seconds: float) -> None:
    """Let the stream run on for ``seconds`` while the state is still read at 20 Hz, as the arm node's timer does:
    the tracking guard compares each frame with the last measured joints, so a bare sleep while a chunk still
    moves the arm would leave it comparing against a stale state and hold (a benchmark artefact)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        drv.tick()
        time.sleep(min(PERIOD_S, max(0.0, end - time.monotonic())))


def bench_direct(n: int) -> dict:
    with RealmanEmulator(q0_deg=HOME_DEG) as emu:
        arm = RealmanArm(ip="127.0.0.1", port=emu.port)
        arm.connect()
        lat = []
        for k in range(n):
            m = len(emu.commands("movej_canfd"))
            t = time.monotonic()
            arm.send_joint_targets(target(k))
            t_end = t + 0.02
            while len(emu.commands("movej_canfd")) == m and time.monotonic() < t_end:
                time.sleep(0.0001)
            got = emu.commands("movej_canfd")
            if len(got) > m:
                lat.append(got[m].t - t)
            time.sleep(PERIOD_S)
        arm.disconnect()
    return {"commands": n, "received": len(lat), "latency_ms_p50": 1e3 * pct(lat, 50),
            "latency_ms_p99": 1e3 * pct(lat, 99)}


def bench_stream(seconds: float) -> dict:
    sys.setswitchinterval(0.0005)   # as the arm node does for its stream thread
    with RealmanEmulator(q0_deg=HOME_DEG) as emu:
        drv = ArmDriver("left", RealmanArm(ip="127.0.0.1", port=emu.port), load_safety())
        assert drv.tick() is not None, drv.last_error
        sent = []
        t0 = time.monotonic()
        for k in range(int(seconds / PERIOD_S)):
            t = time.monotonic()
            drv.on_command(NAMES, target(k), stamp_s=t)
            sent.append((t, target(k)))
            drv.tick()
            time.sleep(max(0.0, t0 + (k + 1) * PERIOD_S - time.monotonic()))
        t1 = time.monotonic()
        settle(drv, 0.3)
        drv.close()
        period = drv.backend.frame_period_s
        res = gap_stats(emu, t0 + 0.1, t1, period)
        delay, resid = stream_delay(sent, emu)
        first = first_frame_latency(sent, emu)
    res.update({"targets": len(sent), "stream_delay_ms": delay * 1e3, "stream_rms_residual_rad": resid,
                "driver_holds": drv.holds, "last_hold": drv.last_hold,
                "first_frame_ms_p50": 1e3 * pct(first, 50), "first_frame_ms_p99": 1e3 * pct(first, 99)})
    return res


def bench_chunk(seconds: float) -> dict:
    """The same motion handed over as chunks (20 points, 1 s ahead, a new one every 0.25 s, as a policy re-plans):
    the stream follows the chunks' timeline, so the delay it adds is only the limiter's."""
    sys.setswitchinterval(0.0005)
    with RealmanEmulator(q0_deg=HOME_DEG) as emu:
        drv = ArmDriver("left", RealmanArm(ip="127.0.0.1", port=emu.port), load_safety())
        assert drv.tick() is not None, drv.last_error
        drv.on_command(NAMES, target(0), stamp_s=time.monotonic())
        time.sleep(0.3)
        sent = []
        t0 = time.monotonic()
        n_ticks = int(seconds / PERIOD_S)
        for k in range(n_ticks):
            t = t0 + k * PERIOD_S
            if k % 5 == 0:
                drv.on_trajectory(NAMES, [PERIOD_S * (i + 1) for i in range(20)],
                                  [target(k + i + 1) for i in range(20)], stamp_s=t)
            sent.append((t, target(k)))
            drv.tick()
            time.sleep(max(0.0, t0 + (k + 1) * PERIOD_S - time.monotonic()))
        t1 = time.monotonic()
        settle(drv, 0.3)
        drv.close()
        res = gap_stats(emu, t0 + 0.1, t1, drv.backend.frame_period_s)
        delay, resid = stream_delay(sent, emu)
    res.update({"chunks": (n_ticks + 4) // 5, "stream_delay_ms": delay * 1e3, "stream_rms_residual_rad": resid,
                "driver_holds": drv.holds, "last_hold": drv.last_hold})
    return res


def bench_ros(seconds: float) -> dict:
    import rclpy
    from sensor_msgs.msg import JointState

    from ate_bringup.graph import NodeSpec
    from ate_bringup.launcher import ProcessGraph
    from ate_description.config import dump_yaml
    from ate_description.limits import default_drivers_config
    from ate_drivers.config import load_drivers_config

    os.environ["ROS_DOMAIN_ID"] = str(random.randint(1, 100))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    with RealmanEmulator(q0_deg=HOME_DEG) as emu, tempfile.TemporaryDirectory() as tmp:
        cfg = load_drivers_config(default_drivers_config(), robot="real")
        cfg.left.realman.ip, cfg.left.realman.port = "127.0.0.1", emu.port
        if hasattr(cfg.safety, "estop_timeout_s"):
            cfg.safety.estop_timeout_s = 0.0     # no e-stop node in this graph: its heartbeat check is off
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
            sent, k = [], 0
            js_t.clear()
            t_next = time.monotonic()
            t_start, t_end = t_next, t_next + seconds
            while time.monotonic() < t_end:
                rclpy.spin_once(node, timeout_sec=max(0.0, t_next - time.monotonic()))
                if time.monotonic() >= t_next:
                    m = JointState()
                    m.header.stamp = node.get_clock().now().to_msg()
                    m.name = NAMES
                    m.position = [float(v) for v in target(k)]
                    t = time.monotonic()
                    pub.publish(m)
                    sent.append((t, target(k)))
                    k += 1
                    t_next += PERIOD_S
            t1 = time.monotonic()
            while time.monotonic() - t1 < 0.3:
                rclpy.spin_once(node, timeout_sec=0.02)
            node.destroy_node()
            rclpy.shutdown()
        period = 1.0 / cfg.left.realman.stream_rate_hz
        res = gap_stats(emu, t_start + 0.3, t1, period)
        delay, resid = stream_delay(sent, emu)
        first = first_frame_latency(sent, emu)
    dt = np.diff(js_t)
    res.update({"targets": len(sent), "stream_delay_ms": delay * 1e3, "stream_rms_residual_rad": resid,
                "first_frame_ms_p50": 1e3 * pct(first, 50), "first_frame_ms_p99": 1e3 * pct(first, 99),
                "joint_states_hz": (len(js_t) - 1) / (js_t[-1] - js_t[0]),
                "joint_states_period_ms_p50": 1e3 * pct(dt, 50), "joint_states_period_ms_p99": 1e3 * pct(dt, 99)})
    return res


def bench_estop(n: int) -> dict:
    """Two streaming arms, one shared e-stop: trigger -> set_arm_stop at both controllers, frames after it."""
    emus = [RealmanEmulator(q0_deg=HOME_DEG).start() for _ in range(2)]
    lat = {"left": [], "right": []}
    frames_after = 0
    try:
        estop = EStop()
        drivers = [ArmDriver(arm, RealmanArm(ip="127.0.0.1", port=e.port), load_safety(), estop)
                   for arm, e in zip(("left", "right"), emus)]
        for d in drivers:
            assert d.tick() is not None, d.last_error
        direction = np.array([1.0, 0, 0, -1.0, 0, 0, 0])
        for i in range(n):
            t0 = time.monotonic()
            base = {d.arm: d.state.q_rad.copy() for d in drivers}
            sign = 1.0 if i % 2 == 0 else -1.0
            for k in range(6):                    # both arms streaming, moving at 0.6 rad/s when the stop comes
                for d in drivers:
                    q = base[d.arm] + sign * 0.03 * (k + 1) * direction
                    d.on_command(arm_joint_names(d.arm), q, stamp_s=time.monotonic())
                    d.tick()
                time.sleep(max(0.0, t0 + (k + 1) * PERIOD_S - time.monotonic()))
            t = time.monotonic()
            estop.trigger("benchmark")
            time.sleep(0.05)
            for d, e in zip(drivers, emus):
                stops = [r.t for r in e.commands("set_arm_stop") if r.t >= t]
                lat[d.arm].append(stops[0] - t if stops else float("nan"))
                frames_after += sum(1 for r in e.commands("movej_canfd") if r.t > (stops[0] if stops else t))
            estop.reset()
            for d in drivers:
                d.tick()
        for d in drivers:
            d.close()
    finally:
        for e in emus:
            e.stop()
    both = [max(a, b) for a, b in zip(lat["left"], lat["right"])]
    return {"triggers": n, "left_ms_p50": 1e3 * pct(lat["left"], 50), "right_ms_p50": 1e3 * pct(lat["right"], 50),
            "both_stopped_ms_p50": 1e3 * pct(both, 50), "both_stopped_ms_max": 1e3 * float(np.nanmax(both)),
            "frames_after_stop": frames_after}


def bench_estop_ros(n: int) -> dict:
    """The e-stop node and two arm nodes as processes: /estop/trigger -> set_arm_stop at both controllers."""
    import rclpy
    from std_srvs.srv import Trigger

    from ate_bringup import graph
    from ate_bringup.launcher import ProcessGraph
    from ate_description.config import dump_yaml
    from ate_description.limits import default_drivers_config
    from ate_drivers.config import load_drivers_config

    os.environ["ROS_DOMAIN_ID"] = str(random.randint(1, 100))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    emus = {arm: RealmanEmulator(q0_deg=HOME_DEG).start() for arm in ("left", "right")}
    lat = {"left": [], "right": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_drivers_config(default_drivers_config(), robot="real")
            for arm, e in emus.items():
                cfg.side(arm).realman.ip, cfg.side(arm).realman.port = "127.0.0.1", e.port
            path = Path(tmp) / "drivers.yaml"
            dump_yaml(cfg, path)
            specs = graph.drivers({"robot": "real", "config": str(path), "grippers": "false", "cameras": "false",
                                   "description": "false"})
            with ProcessGraph(specs, log_dir=str(Path(tmp) / "logs")):
                rclpy.init()
                node = rclpy.create_node("estop_bench")
                trig = node.create_client(Trigger, "/estop/trigger")
                reset = node.create_client(Trigger, "/estop/reset")
                if not (trig.wait_for_service(timeout_sec=60) and reset.wait_for_service(timeout_sec=60)):
                    raise RuntimeError(f"e-stop node did not come up; see {tmp}/logs")
                t_up = time.monotonic()   # both arm nodes connected (each stops its arm once on connect)
                while (time.monotonic() - t_up < 60
                       and not all(e.commands("set_arm_stop") for e in emus.values())):
                    time.sleep(0.1)
                time.sleep(1.0)
                for _ in range(n):
                    before = {a: len(e.commands("set_arm_stop")) for a, e in emus.items()}
                    t = time.monotonic()
                    fut = trig.call_async(Trigger.Request())
                    rclpy.spin_until_future_complete(node, fut, timeout_sec=10)
                    end = time.monotonic() + 5.0
                    while time.monotonic() < end and not all(len(e.commands("set_arm_stop")) > before[a]
                                                             for a, e in emus.items()):
                        time.sleep(0.001)
                    for a, e in emus.items():
                        stops = e.commands("set_arm_stop")[before[a]:]
                        lat[a].append(stops[0].t - t if stops else float("nan"))
                    fut = reset.call_async(Trigger.Request())
                    rclpy.spin_until_future_complete(node, fut, timeout_sec=10)
                    time.sleep(0.5)
                node.destroy_node()
                rclpy.shutdown()
    finally:
        for e in emus.values():
            e.stop()
    both = [max(a, b) for a, b in zip(lat["left"], lat["right"])]
    return {"triggers": n, "left_ms_p50": 1e3 * pct(lat["left"], 50), "right_ms_p50": 1e3 * pct(lat["right"], 50),
            "both_stopped_ms_p50": 1e3 * pct(both, 50), "both_stopped_ms_max": 1e3 * float(np.nanmax(both)),
            "missed": int(sum(1 for x in both if not np.isfinite(x)))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-ros", action="store_true", help="skip the ROS arm-node path")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    logging.getLogger("ate_drivers.safety").setLevel(logging.CRITICAL)   # the e-stop rounds log each trigger
    direct = bench_direct(int(args.seconds / PERIOD_S))
    stream = bench_stream(args.seconds)
    chunk = bench_chunk(args.seconds)
    ros = None if args.no_ros else bench_ros(args.seconds)
    estop = bench_estop(max(5, int(args.seconds * 2)))
    estop_ros = None if args.no_ros else bench_estop_ros(max(5, int(args.seconds)))
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
           "load_average": os.getloadavg()[0], "python": sys.version.split()[0], "seconds": args.seconds,
           "command_rate_hz": 1 / PERIOD_S, "direct_sdk": direct, "stream": stream, "stream_chunks": chunk, "ros_arm_node": ros,
           "estop_both_arms": estop, "estop_ros_nodes": estop_ros}
    print(f"arm loop, {args.seconds:.0f} s of 20 Hz targets ({res['machine']}, load {res['load_average']:.1f})")
    print(f"SDK direct: {direct['received']}/{direct['commands']} frames, latency p50 {direct['latency_ms_p50']:.2f} ms"
          f", p99 {direct['latency_ms_p99']:.2f} ms")
    print(f"{'stream (frames at the controller)':<36}{'frames':>7}{'gap p50':>9}{'gap p99':>9}{'max':>8}"
          f"{'<=T+2ms':>9}{'>10ms':>7}{'delay':>8}{'1st frame':>10}")
    for name, r in (("driver thread, same process", stream), ("ROS arm node (DDS -> node)", ros)):
        if r is None:
            continue
        print(f"{name:<36}{r['frames']:>7}{r['gap_ms_p50']:>8.2f}m{r['gap_ms_p99']:>8.2f}m{r['gap_ms_max']:>7.1f}m"
              f"{100 * r['share_within_period_plus_2ms']:>8.1f}%{r['gaps_over_10ms']:>7}"
              f"{r['stream_delay_ms']:>7.1f}m{r['first_frame_ms_p50']:>9.2f}m")
    print(f"the same motion as 1 s chunks every 0.25 s (joint_trajectory): delay {chunk['stream_delay_ms']:.1f} ms, "
          f"rms residual {chunk['stream_rms_residual_rad']:.4f} rad, {chunk['gaps_over_10ms']} gaps > 10 ms")
    if ros is not None:
        print(f"joint_states: {ros['joint_states_hz']:.1f} Hz, period p50 {ros['joint_states_period_ms_p50']:.1f} ms, "
              f"p99 {ros['joint_states_period_ms_p99']:.1f} ms (configured 100 Hz)")
    print(f"e-stop -> set_arm_stop on both arms: p50 {estop['both_stopped_ms_p50']:.2f} ms, max "
          f"{estop['both_stopped_ms_max']:.2f} ms over {estop['triggers']} triggers; frames after the stop: "
          f"{estop['frames_after_stop']}")
    if estop_ros is not None:
        print(f"e-stop through the cell's nodes (/estop/trigger -> e-stop node -> both arm nodes -> set_arm_stop): "
              f"p50 {estop_ros['both_stopped_ms_p50']:.1f} ms, max {estop_ros['both_stopped_ms_max']:.1f} ms over "
              f"{estop_ros['triggers']} triggers, {estop_ros['missed']} missed")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
