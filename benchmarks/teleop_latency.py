"""Teleop latency benchmark: wrist sample -> joint command, in process, through the real avp_stream client.

Two emulated headsets (``teleop.avp_server``, gRPC, 90 Hz, a moving wrist) on 127.0.0.11 / 127.0.0.12 feed two
``AvpPoseSource`` (the real ``VisionProStreamer`` client); a ``DualTeleopSession`` with scripted Joy-Cons and
perfectly tracking arms turns them into joint commands. Everything runs in this process, so every timestamp is
read on one monotonic clock. Measured:

* ``transport``: emulator send -> client receipt (gRPC + the client's decoding), matched by the exact float32
  wrist translation;
* ``sample_to_command``: client receipt -> joint command returned by ``tick()`` when the tick runs as soon as
  a sample lands (the pipeline itself: pose source, mapping, filter, IK, joint filter, both arms);
* ``headset_to_command_20hz``: with the tick on its own 20 Hz timer, send time of the sample the tick used ->
  command: the newest sample's age (0-11 ms at 90 Hz) + transport + tick. A hand *motion* waits in addition
  for the next tick (up to one period, 50 ms): that is the control rate, not latency this code adds;
* ``ik_per_arm``: ``PinocchioIK.solve`` per arm per tick during teleop, and on random targets 0.1 rad from the
  seed (a hard case: several iterations);
* ``tick``: one whole ``session.tick`` (both arms).

Usage: ``python benchmarks/teleop_latency.py [--seconds 10]``; writes
``benchmarks/results/teleop_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from ate_description.calibration import CalibrationConfig
from teleop.avp import AvpConfig, AvpPoseSource
from teleop.avp_server import HandTrackingEmulator, circle, zup_to_yup
from teleop.buttons import ScriptedButtons
from teleop.configuration_teleop import TeleopConfig
from ate_description.ik import PinocchioIK
from ate_description.kinematics import fk
from teleop.session import DualTeleopSession

OUT = Path(__file__).parent / "results" / "teleop_latency.json"
ARMS = ("left", "right")
IPS = {"left": "127.0.0.11", "right": "127.0.0.12"}
HOME_Q = np.array([0.0, 0.2, 0.0, 1.7, 0.0, 1.25, 0.0])


def stats_ms(xs) -> dict:
    a = np.asarray(xs, dtype=float) * 1000.0
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max())}


class Rig:
    def __init__(self):
        cal = CalibrationConfig()
        self.emus, self.sources, self.rx = {}, {}, {arm: {} for arm in ARMS}
        for arm in ARMS:
            R0 = fk(HOME_Q)[:3, :3] @ cal.arm(arm).rotation().T
            center = (0.3, 0.25 if arm == "left" else -0.25, 1.1)
            path = circle(center_zup=center, radius_m=0.05, period_s=4.0, R_zup=R0)

            def yup(t, path=path):   # circle + tremor: every message differs
                T = path(t)
                T[:3, 3] += 1e-4 * np.array([math.sin(2 * math.pi * 7 * t), math.cos(2 * math.pi * 5 * t), 0])
                return zup_to_yup(T)
            emu = HandTrackingEmulator(IPS[arm], rate_hz=90.0, right_wrist=yup, send_log=4096)
            self.emus[arm] = emu.start()
            src = AvpPoseSource(AvpConfig(ip=IPS[arm]))
            inner = src._on_sample

            def on_sample(data, received_s, inner=inner, arm=arm):
                w = np.asarray(data["right_wrist"])[0]
                self.rx[arm][(w[0, 3], w[2, 3], -w[1, 3])] = received_s   # back to the sent Y-up translation
                inner(data, received_s)
            src._on_sample = on_sample
            self.sources[arm] = src
        cfg = TeleopConfig()
        cfg.left.avp.ip, cfg.right.avp.ip = IPS["left"], IPS["right"]
        cfg.record = False
        self.buttons = {arm: ScriptedButtons() for arm in ARMS}
        self.session = DualTeleopSession(cfg, cal, pose_sources=self.sources, button_sources=self.buttons)
        self.session.connect()
        self.q = {arm: HOME_Q.copy() for arm in ARMS}
        self.ik_times: list[float] = []
        for op in self.session.operators.values():
            solve = op.ik.solve

            def timed(T, seed, solve=solve):
                t0 = time.perf_counter()
                out = solve(T, seed)
                self.ik_times.append(time.perf_counter() - t0)
                return out
            op.ik.solve = timed

    def tick(self, now_s: float):
        for arm in ARMS:
            self.session.put_joint_state(arm, self.q[arm], now_s)
            self.session.put_gripper_state(arm, 1.0, now_s)
        out = self.session.tick(now_s)
        for arm in ARMS:
            if out.joint_targets[arm] is not None:
                self.q[arm] = out.joint_targets[arm]
        return out

    def align(self):
        for b in self.buttons.values():
            b.open()
            b.hold("right")
        for _ in range(3):
            self.tick(time.monotonic())
            time.sleep(0.05)
        for b in self.buttons.values():
            b.release("right")
        out = self.tick(time.monotonic())
        assert out.status["state"] == {"left": "teleop", "right": "teleop"}, out.status

    def sent_time(self, arm: str, sample) -> float | None:
        w = sample.wrist
        key = (w[0, 3], w[2, 3], -w[1, 3])
        for t, k in reversed(self.emus[arm].send_log):
            if k == key:
                return t
        return None

    def close(self):
        self.session.close()
        for e in self.emus.values():
            e.stop(0.2)


def transport(rig: Rig) -> list[float]:
    out = []
    for arm in ARMS:
        sent = {k: t for t, k in rig.emus[arm].send_log}
        out += [t_rx - sent[k] for k, t_rx in rig.rx[arm].items() if k in sent]
    return out


def event_driven(rig: Rig, seconds: float) -> tuple[list[float], list[float]]:
    """Tick as soon as the left headset delivers a new sample: receipt -> command."""
    lat, ticks = [], []
    src = rig.sources["left"]
    end = time.monotonic() + seconds
    seq = src.latest().seq
    while time.monotonic() < end:
        s = src.wait_for(lambda s, seq=seq: s.seq > seq, 1.0)
        if s is None:
            continue
        seq = s.seq
        t0 = time.monotonic()
        out = rig.tick(t0)
        t1 = time.monotonic()
        ticks.append(t1 - t0)
        if out.joint_targets["left"] is not None:
            lat.append(t1 - s.received_s)
    return lat, ticks


def timer_20hz(rig: Rig, seconds: float) -> list[float]:
    lat = []
    period = 0.05
    next_t = time.monotonic()
    end = next_t + seconds
    while next_t < end:
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
        samples = {arm: rig.sources[arm].latest() for arm in ARMS}
        out = rig.tick(time.monotonic())
        t1 = time.monotonic()
        for arm in ARMS:
            t_sent = rig.sent_time(arm, samples[arm])
            if out.joint_targets[arm] is not None and t_sent is not None:
                lat.append(t1 - t_sent)
    return lat


def ik_random(n: int = 500) -> list[float]:
    ik = PinocchioIK()
    rng = np.random.default_rng(0)
    times = []
    for _ in range(n):
        q = HOME_Q + rng.uniform(-0.6, 0.6, 7)
        T = fk(q)
        t0 = time.perf_counter()
        ik.solve(T, q + rng.uniform(-0.1, 0.1, 7))
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each of the two timed phases")
    args = ap.parse_args(argv)
    rig = Rig()
    try:
        rig.align()
        rig.ik_times.clear()
        ev_lat, ticks = event_driven(rig, args.seconds)
        ik_teleop = list(rig.ik_times)
        hz_lat = timer_20hz(rig, args.seconds)
        tr = transport(rig)
    finally:
        rig.close()
    ik_rand = ik_random()
    res = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "load_avg_1min": os.getloadavg()[0]},
        "setup": {"headsets": 2, "stream_hz": 90.0, "tick_hz": 20.0, "seconds_per_phase": args.seconds,
                  "motion": "5 cm circle, 4 s period, 0.1 mm tremor"},
        "transport": stats_ms(tr),
        "sample_to_command": stats_ms(ev_lat),
        "headset_to_command_20hz": stats_ms(hz_lat),
        "tick_both_arms": stats_ms(ticks),
        "ik_per_arm_teleop": stats_ms(ik_teleop),
        "ik_per_arm_random_0.1rad": stats_ms(ik_rand),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(f"teleop latency ({res['machine']['cpus']} CPUs, load {res['machine']['load_avg_1min']:.1f})")
    print(f"{'measure':34s} {'n':>6s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for key in ("transport", "sample_to_command", "headset_to_command_20hz", "tick_both_arms",
                "ik_per_arm_teleop", "ik_per_arm_random_0.1rad"):
        s = res[key]
        if s["n"]:
            print(f"{key:34s} {s['n']:6d} {s['p50_ms']:8.3f} {s['p99_ms']:8.3f} {s['max_ms']:8.3f}")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
