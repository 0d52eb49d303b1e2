"""Gripper driver node (one per arm namespace): ``gripper/state`` and ``/diagnostics`` out, ``gripper/command`` and
``/estop`` in. Both topics are sensor_msgs/JointState with the one joint ``<arm>_gripper``: position = opening
fraction (0 closed .. 1 open), velocity = speed fraction, effort = force fraction (defaults 1 when absent)."""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import JointState

from ate_drivers import registry
from ate_drivers.gripper_driver import GripperDriver
from ate_drivers.nodes.common import COMMAND_QOS, STATE_QOS, diagnostic_array, load_config, spin, subscribe_estop
from ate_drivers.nodes.messages import gripper_state_msg, parse_gripper_command
from ate_drivers.safety import EStop


class GripperNode(Node):
    def __init__(self):
        super().__init__("gripper_driver")
        self.declare_parameter("arm", "left")
        self.arm = self.get_parameter("arm").value
        self.cfg = load_config(self)
        backend = registry.make_gripper(self.cfg.backend_names().gripper, arm=self.arm,
                                        config=self.cfg.side(self.arm).gripper)
        self.estop = EStop()
        self.driver = GripperDriver(self.arm, backend, self.cfg.safety, self.estop)
        self.joint = f"{self.arm}_gripper"
        self.pub = self.create_publisher(JointState, "gripper/state", STATE_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointState, "gripper/command", self.on_command, COMMAND_QOS)
        subscribe_estop(self, self.estop)
        self.create_timer(1.0 / self.cfg.gripper_rate_hz, self.on_tick)
        self.create_timer(self.cfg.diagnostics_period_s, self.on_diagnostics)

    def on_tick(self) -> None:
        st = self.driver.tick()
        if st is None:
            return
        self.pub.publish(gripper_state_msg(self.joint, st.position, st.fault, self.get_clock().now().to_msg()))

    def on_command(self, msg: JointState) -> None:
        try:
            position, force, speed = parse_gripper_command(msg, self.joint)
        except ValueError as e:
            self.driver.safety.refuse("wrong_length", str(e))
            return
        self.driver.on_command(position, force, speed)

    def on_diagnostics(self) -> None:
        level, message, values = self.driver.diagnostics()
        self.pub_diag.publish(diagnostic_array(self, f"gripper/{self.arm}", level, message, values))

    def close(self) -> None:
        self.driver.backend.disconnect()


def main(argv=None) -> int:
    return spin(GripperNode)


if __name__ == "__main__":
    sys.exit(main())
