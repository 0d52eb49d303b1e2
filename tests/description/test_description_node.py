"""The bring-up's description node over DDS: /robot_description (latched) carries the calibration's URDF and
/joint_states merges both arms and maps each gripper opening to the URDF's finger joints."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

rclpy = pytest.importorskip("rclpy")

from ate_bringup import graph  # noqa: E402
from ate_description import contract  # noqa: E402
from ate_description.calibration import load_calibration  # noqa: E402
from ate_description.urdf import cell_urdf  # noqa: E402

from ros_testkit import Probe, running_graph  # noqa: E402


def test_description_node_publishes_the_urdf_and_merged_joint_states(ros_env, tmp_path):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    specs = graph.description({})
    assert [s.fq_name for s in specs][:1] == ["/robot_description"]
    with running_graph(specs[:1], ros_env, tmp_path) as (_, node):
        probe = Probe(node)
        got = {}
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(String, "/robot_description", lambda m: got.update(urdf=m.data), latched)
        node.create_subscription(JointState, "/joint_states", lambda m: got.update(js=m), 10)
        pubs = {t: node.create_publisher(JointState, t, 10)
                for t in ("/left/joint_states", "/right/joint_states", "/left/gripper/state", "/right/gripper/state")}
        q = {"left": [0.1 * (i + 1) for i in range(7)], "right": [-0.1 * (i + 1) for i in range(7)]}
        opening = {"left": 0.5, "right": 1.0}

        def publish():
            for arm in contract.ARMS:
                pubs[f"/{arm}/joint_states"].publish(JointState(name=contract.arm_joint_names(arm), position=q[arm]))
                pubs[f"/{arm}/gripper/state"].publish(JointState(name=[f"{arm}_gripper"], position=[opening[arm]]))

        def merged():
            publish()
            js = got.get("js")
            return js is not None and len(js.name) == 18
        assert probe.spin(60.0, until=lambda: "urdf" in got), "no /robot_description"
        assert got["urdf"] == cell_urdf(load_calibration())
        assert probe.spin(60.0, until=merged), f"no merged /joint_states: {got.get('js')}"
        pos = dict(zip(got["js"].name, got["js"].position))
        for arm in contract.ARMS:
            for name, v in zip(contract.arm_joint_names(arm), q[arm]):
                assert pos[name] == pytest.approx(v)
            # opening fraction x 120 mm, half of the gap per finger
            assert pos[f"{arm}_finger_a"] == pytest.approx(opening[arm] * 0.060)
            assert pos[f"{arm}_finger_b"] == pytest.approx(opening[arm] * 0.060)
