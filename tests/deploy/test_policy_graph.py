"""The deployment graph over DDS (issue 7): ``graph.policy`` -- what ``policy.launch.py task:=cook_bun
robot:=sim`` starts -- as processes with real rclpy: the e-stop node, the sim cell in lockstep and the policy
node running a tiny, randomly initialised PI0 checkpoint (saved as ``ate_policy train`` saves one).

The policy drives both arms for 10 s of simulated time at 20 Hz with zero missed ticks; an e-stop mid-chunk
stops every target; the episode restarts only after the e-stop is reset and /policy/start is called. The node
runs with ``viz:=true viz_mode:=web`` all along (Rerun, docs/visualization.md): no tick above is missed with
it on, and its recording holds every tick with nothing dropped.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from ate_bringup import graph  # noqa: E402
from ate_drivers.config import load_drivers_config  # noqa: E402
from ate_policy.config import dump_yaml  # noqa: E402

import ros_testkit  # noqa: E402
from ros_testkit import running_graph  # noqa: E402

pytestmark = pytest.mark.slow


class Probe(ros_testkit.Probe):
    def __init__(self, node):
        from sensor_msgs.msg import JointState

        super().__init__(node)
        self.commands, self.grip_commands, self.q = [], [], {}
        node.create_subscription(JointState, "/left/joint_command",
                                 lambda m: self.commands.append((time.monotonic(), m.header.stamp.sec * 10**9
                                                                 + m.header.stamp.nanosec)), 50)
        node.create_subscription(JointState, "/right/gripper/command", lambda m: self.grip_commands.append(m), 50)
        self.stamp = {}
        for arm in ("left", "right"):
            node.create_subscription(JointState, f"/{arm}/joint_states",
                                     lambda m, a=arm: (self.q.update({a: np.array(m.position)}),
                                                       self.stamp.update({a: m.header.stamp})), 10)
        self.rogue = node.create_publisher(JointState, "/left/joint_command", 10)


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
                          "device": "cpu", "viz": "true", "viz_mode": "web", "viz_rrd": str(tmp / "policy.rrd")})
    env = {**ros_env, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "osmesa"}
    with running_graph(specs, env, tmp, "policy_probe") as (g, node):
        yield g, Probe(node), tmp


def test_policy_graph_is_drivers_plus_the_policy_node():
    specs = graph.policy({"robot": "sim", "task": "pick_bun", "checkpoint": "/ckpt"})
    assert [s.fq_name for s in specs] == ["/estop", "/sim_cell", "/robot_description", "/policy"]
    sim, pol = specs[1].parameters, specs[-1].parameters
    assert (sim["clock"], sim["consumers"], sim["task"]) == ("lockstep", "policy", "pick_bun")
    assert pol["lockstep"] is True and pol["use_sim_time"] is True and pol["checkpoint"] == "/ckpt"
    assert pol["config_file"] == sim["config_file"]     # the runtime limits itself to the drivers' limits
    custom = graph.policy({"robot": "sim", "config": "/lab/drivers.yaml"})
    assert custom[-1].parameters["config_file"] == custom[1].parameters["config_file"] == "/lab/drivers.yaml"
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
    assert p.spin(240.0, until=lambda: int(p.kv("policy", "ticks")) >= 220), p.kv("policy")
    d = p.kv("policy")
    assert d["state"] == "running" and d["clock"] == "lockstep"
    assert int(d["missed_ticks"]) == 0, d
    # every tick after the first chunk (the lockstep inference delay) sent targets
    assert int(d["actions"]) >= int(d["ticks"]) - int(d["lockstep_delay_ticks"]) - 1, d
    stamps = np.array(sorted({s for _, s in p.commands})) * 1e-9
    assert len(stamps) >= 200
    np.testing.assert_allclose(np.diff(stamps[-200:]), 0.05, atol=1e-6)   # one target per 20 Hz tick, no gap
    assert len(p.grip_commands) >= 200
    # through the cell's safety layer (its diagnostics come once a wall second: wait for the next)
    assert p.spin(10.0, until=lambda: int(p.kv("arm/left", "accepted")) >= 200), p.kv("arm/left")
    assert np.max(np.abs(p.q["left"] - q0)) > 1e-3                         # the arm moved


def test_viz_logs_every_tick_drops_nothing_and_serves_the_web_viewer(policy_graph):
    import re
    import urllib.request
    import warnings

    from ate_policy.viz.rrd import read_rrd

    g, p, tmp = policy_graph
    assert p.spin(240.0, until=lambda: int(p.kv("policy", "ticks")) >= 60), p.kv("policy")
    d = p.kv("policy")
    assert d["viz_dropped"] == "0" and int(d["missed_ticks"]) == 0, d
    # the web viewer the node started answers on localhost with its page
    text = (tmp / "logs" / "policy.log").read_text()
    url = re.search(r"http://127\.0\.0\.1:\d+/\S*", text)
    assert url, text[-2000:]
    with urllib.request.urlopen(url.group(0), timeout=10) as r:
        assert r.status == 200 and b"rerun" in r.read().lower()
    # the recording (still being written: read as a stream) holds every tick of the episode, in order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = read_rrd(tmp / "policy.rrd")
    ticks = sorted(rows["/arms/left/q"]["Scalars:scalars"])
    assert len(ticks) >= 40 and ticks == list(range(len(ticks))), ticks[:5]
    frames = sorted(rows["/cameras/cam_high"]["EncodedImage:blob"])
    assert len(frames) >= 40 and frames == list(range(len(frames)))
    chunks, events = sorted(rows["/policy/chunk"]["Tensor:data"]), sorted(rows["/events/chunk"]["TextLog:text"])
    # read mid-write: the newest chunk's tensor and its event line may straddle the last flush
    n = min(len(chunks), len(events))
    assert n and chunks[:n] == events[:n] and abs(len(chunks) - len(events)) <= 1, (chunks[-3:], events[-3:])


def test_estop_mid_chunk_stops_every_target_until_reset_and_start(policy_graph):
    g, p, tmp = policy_graph
    assert p.spin(120.0, until=lambda: p.kv("policy", "state", "") == "running")
    ros_testkit.press_estop_from_another_process()
    assert p.spin(10.0, until=lambda: p.kv("policy", "estop", "") == "True"
                  and p.kv("arm/left", "estop", "") == "True" and p.kv("arm/right", "estop", "") == "True")
    p.spin(1.0)  # commands already on the wire when the e-stop landed
    n_cmd, q_stop = len(p.commands), {a: q.copy() for a, q in p.q.items()}
    sim_t = float(p.kv("sim", "sim_time_s"))
    assert p.spin(30.0, until=lambda: float(p.kv("sim", "sim_time_s")) > sim_t + 1.0)  # time goes on ...
    assert len(p.commands) == n_cmd                                        # ... without a single target
    for a in ("left", "right"):
        assert np.max(np.abs(p.q[a] - q_stop[a])) < 1e-3
    assert p.message("policy") == "e-stop latched"
    assert not p.call("/policy/start").success                             # refused while latched
    assert p.call("/estop/reset").success
    assert p.spin(10.0, until=lambda: p.kv("policy", "estop", "") == "False")
    p.spin(1.0)
    assert len(p.commands) == n_cmd                                        # reset alone does not restart
    assert p.call("/policy/start").success
    assert p.spin(60.0, until=lambda: len(p.commands) > n_cmd + 20)
    assert int(p.kv("policy", "missed_ticks")) == 0


def test_a_refused_command_holds_the_cell_and_the_policy_flushes_reports_it_and_waits_for_resume(policy_graph):
    from sensor_msgs.msg import JointState

    from ate_description.contract import arm_joint_names

    g, p, tmp = policy_graph
    assert p.spin(120.0, until=lambda: p.kv("policy", "state", "") == "running" and "left" in p.stamp)
    # a rogue command on the left arm, far beyond one tick's step: the cell's drivers refuse it ...
    m = JointState()
    m.header.stamp = p.stamp["left"]
    m.name = arm_joint_names("left")
    m.position = [float(v) for v in p.q["left"] + 0.5]
    p.rogue.publish(m)
    # ... the supervisor holds both arms, and the policy flushes its chunks and reports the hold (an error)
    assert p.spin(20.0, until=lambda: p.kv("policy", "held", "") == "held"), p.kv("policy")
    assert "too_fast" in p.kv("policy", "held_detail", "") and p.diag["policy"].level == b"\x02"
    # the supervisor's diagnostics are periodic: they may report the hold a moment after the policy's do
    assert p.spin(10.0, until=lambda: p.kv("cell", "held", "") == "True"
                  and p.kv("cell", "held_right", "") == "True"), p.kv("cell")
    p.spin(1.0)
    n_cmd, q_held = len(p.commands), {a: q.copy() for a, q in p.q.items()}
    sim_t = float(p.kv("sim", "sim_time_s"))
    assert p.spin(30.0, until=lambda: float(p.kv("sim", "sim_time_s")) > sim_t + 1.0)  # time goes on ...
    assert len(p.commands) == n_cmd                                                    # ... no target
    for a in ("left", "right"):
        assert np.max(np.abs(p.q[a] - q_held[a])) < 1e-3
    # it never resumes by itself: start is refused while the cell holds; resume, then start
    res = p.call("/policy/start")
    assert not res.success and "/cell/resume" in res.message
    assert p.call("/cell/resume").success
    assert p.spin(10.0, until=lambda: p.kv("cell", "held", "") == "False")
    assert p.call("/policy/start").success
    assert p.spin(60.0, until=lambda: len(p.commands) > n_cmd + 20)
    assert p.kv("policy", "held", "x") == ""
