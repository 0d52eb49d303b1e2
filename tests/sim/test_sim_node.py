"""robot:=sim over DDS: the one-process sim cell node, started from the bring-up graph, in lockstep.

A probe node plays the consumer: it waits for each complete tick, commands the left arm, acknowledges. The
cell must advance exactly one 20 Hz tick per acknowledgement, hold still without one (publishing the tick again
for a consumer that lost a frame), follow commands through the drivers' safety layer and reset on request.
"""

from __future__ import annotations


import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from ate_bringup import graph  # noqa: E402
from ate_drivers.config import load_drivers_config  # noqa: E402
from ate_policy.config import dump_yaml  # noqa: E402
from ate_description.contract import CAMERA_NAMES, PERIOD_S, arm_joint_names  # noqa: E402

import ros_testkit  # noqa: E402
from ros_testkit import running_graph  # noqa: E402

STREAMS = ["left", "right", *CAMERA_NAMES]


class Consumer(ros_testkit.Probe):
    def __init__(self, node, acking=True):
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Header

        from ate_drivers.lockstep import TICK_DONE_TOPIC, TickCollector
        from ate_drivers.nodes.common import COMMAND_QOS, IMAGE_QOS
        from ate_drivers.nodes.messages import stamp_ns

        super().__init__(node)
        self.acking = acking
        self.col = TickCollector(STREAMS)
        self.q, self.ticks, self.repeats, self.images = {}, [], 0, {}
        self.step = np.zeros(7)
        self.cmd = node.create_publisher(JointState, "/left/joint_command", COMMAND_QOS)
        self.ack = node.create_publisher(Header, TICK_DONE_TOPIC, COMMAND_QOS)
        for arm in ("left", "right"):
            node.create_subscription(JointState, f"/{arm}/joint_states",
                                     lambda m, a=arm: self.put(a, m, np.array(m.position)), 10)
        for c in CAMERA_NAMES:
            node.create_subscription(Image, f"/cameras/{c}/image_raw", lambda m, c=c: self.put(c, m, m), IMAGE_QOS)
        self._stamp_ns = stamp_ns

    def put(self, stream, msg, value):
        if stream in ("left", "right"):
            self.q[stream] = value
        else:
            self.images[stream] = value
        self.col.put(stream, self._stamp_ns(msg.header.stamp))
        if not self.acking:
            return
        nxt = self.col.next_tick()
        if nxt is None:
            return
        t, first = nxt
        from std_msgs.msg import Header

        from ate_drivers.lockstep import ack_frame_id
        from ate_drivers.nodes.messages import joint_state_msg

        stamp = msg.header.stamp
        n = 0
        if first:
            self.ticks.append((t, self.q["left"].copy()))
            if np.any(self.step):
                self.cmd.publish(joint_state_msg(arm_joint_names("left"), self.q["left"] + self.step, stamp))
                n = 1
        else:
            self.repeats += 1
        self.ack.publish(Header(stamp=stamp, frame_id=ack_frame_id("probe", n)))


@pytest.fixture(scope="module")
def sim_graph(ros_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim_graph")
    cfg = load_drivers_config(graph.default_drivers_config(), robot="sim")
    cfg.sim.image_height, cfg.sim.image_width, cfg.sim.republish_s = 24, 32, 0.5
    path = tmp / "drivers.yaml"
    dump_yaml(cfg, path)
    specs = graph.drivers({"robot": "sim", "config": str(path), "task": "cook_bun", "sim_clock": "lockstep",
                           "lockstep_consumers": "probe"})
    with running_graph(specs, ros_env, tmp, "sim_probe", stop_timeout_s=30.0) as (g, node):
        yield g, node, tmp


def test_sim_graph_is_one_cell_node_beside_the_estop():
    specs = graph.drivers({"robot": "sim", "task": "pick_bun", "sim_clock": "lockstep",
                           "lockstep_consumers": "policy"})
    assert [s.fq_name for s in specs] == ["/estop", "/sim_cell", "/robot_description"]
    p = specs[1].parameters
    assert (p["task"], p["clock"], p["consumers"], p["robot"]) == ("pick_bun", "lockstep", "policy", "sim")
    assert p["seed"] == -1  # drivers.yaml's
    assert graph.drivers({"robot": "sim", "sim_seed": "7"})[1].parameters["seed"] == 7
    with pytest.raises(ValueError):
        graph.drivers({"robot": "sim", "sim_clock": "fast"})


def test_lockstep_cell_advances_one_tick_per_ack_and_follows_commands(sim_graph):
    g, node, tmp = sim_graph
    c = Consumer(node)
    assert c.spin(60.0, until=lambda: len(c.ticks) >= 3), f"no ticks; alive={g.alive()}, logs in {tmp}"
    c.step[0] = 0.02  # 0.4 rad/s on joint 1: within the safety layer's step limit
    # the arm follows the stream (on a loaded machine the cell may refuse the first commands until it has seen the
    # e-stop node's heartbeat: estop_unseen)
    assert c.spin(60.0, until=lambda: len(c.ticks) >= 40 and c.ticks[-1][1][0] - c.ticks[3][1][0] > 0.5), \
        [round(q[0], 3) for _, q in c.ticks]
    stamps = np.array([t for t, _ in c.ticks]) * 1e-9
    np.testing.assert_allclose(np.diff(stamps), PERIOD_S, atol=1e-6)   # one tick per ack, none skipped
    j1 = np.array([q[0] for _, q in c.ticks])
    moving = np.diff(j1) > 0.01
    assert moving[-10:].all(), j1                                     # ~0.02 rad per tick, tick after tick
    assert all(img.width == 32 and img.height == 24 for img in c.images.values())

    # without acks the cell waits (publishing the same tick again), and resumes where it stopped
    c.acking = False
    n, last = len(c.ticks), c.col.handled_ns
    c.spin(1.5)
    assert len(c.ticks) == n and c.col.complete_ns() == last + int(PERIOD_S * 1e9)  # the tick after our last ack
    c.acking = True
    assert c.spin(10.0, until=lambda: c.repeats >= 1 and len(c.ticks) >= n + 3)


def test_unsafe_commands_are_refused_by_the_cell_drivers_and_reset_gives_a_new_episode(sim_graph):
    g, node, tmp = sim_graph
    c = Consumer(node)
    c.step[:] = 0.0
    c.step[1] = 0.5  # far beyond one tick's step limit
    assert c.spin(30.0, until=lambda: len(c.ticks) >= 5)
    q_before = c.q["left"].copy()
    # the first refusal holds the cell (both arms, the supervisor); later commands are refused as held
    assert c.spin(10.0, until=lambda: int(c.kv("arm/left", "refused_too_fast")) >= 1
                  and int(c.kv("arm/left", "refused_held")) >= 2)
    assert c.spin(5.0, until=lambda: c.kv("arm/right", "cell_held", "") == "True"), c.kv("arm/right")
    assert abs(c.q["left"][1] - q_before[1]) < 0.01

    res = c.call("/sim/reset")
    assert res.success and "episode 1" in res.message
    c.step[:] = 0.0
    assert c.spin(20.0, until=lambda: c.kv("sim", "episode", "") == "1")
    assert c.kv("sim", "success", "") == "False" and c.kv("sim", "clock", "") == "lockstep"
