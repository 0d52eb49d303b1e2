"""Description node: publishes the cell's URDF on ``/robot_description`` (std_msgs/String, transient local: late
subscribers get it) and the merged ``/joint_states`` (both arms and the grippers' finger joints) that
``robot_state_publisher``, RViz and Foxglove read. The URDF is generated at start from the DH table and the
calibration YAML (``calibration_file`` parameter; empty: the bring-up's), so a recalibrated cell shows true frames.
Logic lives in ``ate_description.urdf`` / ``ate_description.joint_states``; this node only wires topics.
"""

from __future__ import annotations

import signal
import sys

# A Ctrl-C under launch can arrive while this module still imports (this node starts last in a graph): end quietly
# with exit 0 then, as spin() does once its own handlers are installed.
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from ate_description.calibration import load_calibration  # noqa: E402
from ate_description.contract import ARMS  # noqa: E402
from ate_description.joint_states import CellJointStates  # noqa: E402
from ate_description.urdf import cell_urdf  # noqa: E402
from ate_drivers.nodes.common import ESTOP_QOS, STATE_QOS, desc, spin  # noqa: E402


class DescriptionNode(Node):
    def __init__(self):
        super().__init__("robot_description")
        self.declare_parameter("calibration_file", "", desc("calibration YAML; empty: ate_bringup's"))
        self.declare_parameter("rate_hz", 30.0, desc("/joint_states publish rate"))
        path = self.get_parameter("calibration_file").value or None
        self.urdf = cell_urdf(load_calibration(path))
        self.states = CellJointStates()
        # Latched like the e-stop: RViz or robot_state_publisher started later still receives the model.
        self.desc_pub = self.create_publisher(String, "/robot_description", ESTOP_QOS)
        self.desc_pub.publish(String(data=self.urdf))
        self.js_pub = self.create_publisher(JointState, "/joint_states", STATE_QOS)
        for arm in ARMS:
            self.create_subscription(JointState, f"/{arm}/joint_states",
                                     lambda m, a=arm: self.states.update_arm(a, m.name, m.position, _sec(m)),
                                     STATE_QOS)
            self.create_subscription(JointState, f"/{arm}/gripper/state",
                                     lambda m, a=arm: self._on_gripper(a, m), STATE_QOS)
        self.create_timer(1.0 / float(self.get_parameter("rate_hz").value), self._publish)
        self.get_logger().info(f"publishing /robot_description ({len(self.urdf)} bytes) and /joint_states")

    def _on_gripper(self, arm: str, msg: JointState) -> None:
        if msg.position:
            self.states.update_gripper(arm, float(msg.position[0]), _sec(msg))

    def _publish(self) -> None:
        names, pos, _ = self.states.merged()
        if not names:
            return
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name, msg.position = names, pos
        self.js_pub.publish(msg)

    def close(self) -> None:
        pass


def _sec(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def main(argv=None) -> int:
    return spin(DescriptionNode)


if __name__ == "__main__":
    sys.exit(main())
