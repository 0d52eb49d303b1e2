"""The deployment graph over DDS (issue 7): ``graph.policy`` -- what ``policy.launch.py task:=cook_bun
robot:=sim`` starts -- as processes with real rclpy: the e-stop node, the sim cell in lockstep and the policy
node running a tiny, randomly initialised PI0 checkpoint (saved as ``ate_policy train`` saves one).

The policy drives both arms for 10 s of simulated time at 20 Hz with zero missed ticks; an e-stop mid-chunk
stops every target; the episode restarts only after the e-stop is reset and /policy/start is called.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from ate_bringup import graph  # noqa: E402
from ate_bringup.launcher import ProcessGraph  # noqa: E402
from ate_drivers.config import load_drivers_config  # noqa: E402
from ate_policy.config import dump_yaml  # noqa: E402

pytestmark = pytest.mark.slow


class Probe:
    def __init__(self, node):
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import JointState

        self.node = node
        self.diag, self.commands, self.grip_commands, self.q = {}, [], [], {}
        node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 50)
        node.create_subscription(JointState, "/left/joint_command",
                                 lambda m: self.commands.append((time.monotonic(), m.header.stamp.sec * 10**9
                                                                 + m.header.stamp.nanosec)), 50)
        node.create_subscription(JointState, "/right/gripper/command", lambda m: self.grip_commands.append(m), 50)
        for arm in ("left", "right"):
            node.create_subscription(JointState, f"/{arm}/joint_states",
                                     lambda m, a=arm: self.q.update({a: np.array(m.position)}), 10)

    def _diag(self, msg):
        for s in msg.status:
            self.diag[s.name] = {kv.key: kv.value for kv in s.values} | {"_message": s.message}

    def kv(self, name, key, default="0"):
        return self.diag.get(name, {}).get(key, default)

    def spin(self, seconds, until=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            if until is not None and until():
                return True
        return until is None

    def call(self, service):
        from std_srvs.srv import Trigger

        cli = self.node.create_client(Trigger, service)
        assert cli.wait_for_service(timeout_sec=20), service
        fut = cli.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(self.node, fut, timeout_sec=20)
        return fut.result()


@pytest.fixture(scope="module")
def policy_graph(ros_env, tmp_path_factory):
    from ate_policy.runtime.tiny_checkpoint import write_tiny_checkpoint
    from ate_sim.cell import HOME_Q

    tmp = tmp_path_factory.mktemp("policy_graph")
    # Random weights, statistics centred on the home posture with a small spread: targets stay near home and
    # within the safety layer's step limit, so the test watches the runtime, not refusals.
    ckpt = write_tiny_checkpoint(tmp / "run", chunk_size=10, image_hw=(48, 64),
                                 action_mean=np.concatenate([HOME_Q, [1.0], HOME_Q, [1.0]]), action_std=0.005)
    cfg = load_drivers_config(graph.default_drivers_config(), robot="sim")
    cfg.sim.image_height, cfg.sim.image_width = 48, 64
    drivers_yaml = tmp / "drivers.yaml"
    dump_yaml(cfg, drivers_yaml)
    specs = graph.policy({"robot": "sim", "task": "cook_bun", "checkpoint": str(ckpt), "config": str(drivers_yaml),
                          "device": "cpu"})
    env = {**ros_env, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "osmesa"}
    g = ProcessGraph(specs, env=env, log_dir=str(tmp / "logs")).start()
    rclpy.init()
    node = rclpy.create_node("policy_probe")
    yield g, Probe(node), tmp
    node.destroy_node()
    rclpy.shutdown()
    codes = g.stop(timeout_s=60.0)
    logs = {n: (tmp / "logs" / (n.strip("/").replace("/", "_") + ".log")).read_text()[-2000:] for n in codes}
    assert all(c in (0, -2) for c in codes.values()), (codes, logs)


def test_policy_graph_is_drivers_plus_the_policy_node():
    specs = graph.policy({"robot": "sim", "task": "pick_bun", "checkpoint": "/ckpt"})
    assert [s.fq_name for s in specs] == ["/estop", "/sim_cell", "/policy"]
    sim, pol = specs[1].parameters, specs[2].parameters
    assert (sim["clock"], sim["consumers"], sim["task"]) == ("lockstep", "policy", "pick_bun")
    assert pol["lockstep"] is True and pol["use_sim_time"] is True and pol["checkpoint"] == "/ckpt"
    real = graph.policy({})
    assert [s.fq_name for s in real][-1] == "/policy" and real[-1].parameters["lockstep"] is False
    assert real[-1].parameters["robot"] == "real" and "/left/arm_driver" in [s.fq_name for s in real]
    rt = graph.policy({"robot": "sim", "sim_clock": "realtime"})
    assert rt[1].parameters["consumers"] == "" and rt[-1].parameters["lockstep"] is False


def test_tiny_pi0_drives_the_sim_cell_for_10_s_at_20_hz_without_a_missed_tick(policy_graph):
    g, p, tmp = policy_graph
    up = p.spin(180.0, until=lambda: int(p.kv("policy", "ticks")) >= 1 and "left" in p.q)
    assert up, f"graph not up: alive={g.alive()}, diag={sorted(p.diag)}; logs in {tmp / 'logs'}"
    q0 = p.q["left"].copy()
    assert p.spin(240.0, until=lambda: int(p.kv("policy", "ticks")) >= 220), p.diag.get("policy")
    d = p.diag["policy"]
    assert d["state"] == "running" and d["clock"] == "lockstep"
    assert int(d["missed_ticks"]) == 0, d
    # every tick after the first chunk (the lockstep inference delay) sent targets
    assert int(d["actions"]) >= int(d["ticks"]) - int(d["lockstep_delay_ticks"]) - 1, d
    stamps = np.array(sorted({s for _, s in p.commands})) * 1e-9
    assert len(stamps) >= 200
    np.testing.assert_allclose(np.diff(stamps[-200:]), 0.05, atol=1e-6)   # one target per 20 Hz tick, no gap
    assert len(p.grip_commands) >= 200
    assert int(p.kv("arm/left", "accepted")) >= 200                       # through the cell's safety layer
    assert np.max(np.abs(p.q["left"] - q0)) > 1e-3                         # the arm moved


def test_estop_mid_chunk_stops_every_target_until_reset_and_start(policy_graph):
    g, p, tmp = policy_graph
    assert p.spin(120.0, until=lambda: p.kv("policy", "state", "") == "running")
    code = ("import rclpy; from std_srvs.srv import Trigger; rclpy.init(); n = rclpy.create_node('estop_button');"
            "c = n.create_client(Trigger, '/estop/trigger'); assert c.wait_for_service(timeout_sec=20);"
            "f = c.call_async(Trigger.Request()); rclpy.spin_until_future_complete(n, f, timeout_sec=20);"
            "assert f.result().success; rclpy.shutdown()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert p.spin(10.0, until=lambda: p.kv("policy", "estop", "") == "True"
                  and p.kv("arm/left", "estop", "") == "True" and p.kv("arm/right", "estop", "") == "True")
    p.spin(1.0)  # commands already on the wire when the e-stop landed
    n_cmd, q_stop = len(p.commands), {a: q.copy() for a, q in p.q.items()}
    sim_t = float(p.kv("sim", "sim_time_s"))
    assert p.spin(30.0, until=lambda: float(p.kv("sim", "sim_time_s")) > sim_t + 1.0)  # time goes on ...
    assert len(p.commands) == n_cmd                                        # ... without a single target
    for a in ("left", "right"):
        assert np.max(np.abs(p.q[a] - q_stop[a])) < 1e-3
    assert p.diag["policy"]["_message"] == "e-stop latched"
    assert not p.call("/policy/start").success                             # refused while latched
    assert p.call("/estop/reset").success
    assert p.spin(10.0, until=lambda: p.kv("policy", "estop", "") == "False")
    p.spin(1.0)
    assert len(p.commands) == n_cmd                                        # reset alone does not restart
    assert p.call("/policy/start").success
    assert p.spin(60.0, until=lambda: len(p.commands) > n_cmd + 20)
    assert int(p.kv("policy", "missed_ticks")) == 0
