"""E-stop node: ``/estop/trigger`` and ``/estop/reset`` (std_srvs/Trigger) publish the latched ``/estop``
(std_msgs/Bool, transient-local). Every arm and gripper node follows ``/estop`` and stops through its SDK."""

from __future__ import annotations

import sys

from rclpy.node import Node
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from ate_drivers.nodes.common import ESTOP_QOS, spin


class EStopNode(Node):
    def __init__(self):
        super().__init__("estop")
        self.pub = self.create_publisher(Bool, "/estop", ESTOP_QOS)
        self.create_service(Trigger, "/estop/trigger", self.on_trigger)
        self.create_service(Trigger, "/estop/reset", self.on_reset)
        # Nothing is published at start: a restarted e-stop node must not reset a latched e-stop.

    def on_trigger(self, req, resp):
        self.pub.publish(Bool(data=True))
        self.get_logger().error("E-STOP triggered")
        resp.success, resp.message = True, "e-stop latched"
        return resp

    def on_reset(self, req, resp):
        self.pub.publish(Bool(data=False))
        self.get_logger().warning("e-stop reset")
        resp.success, resp.message = True, "e-stop reset"
        return resp

    def close(self) -> None:
        pass


def main(argv=None) -> int:
    return spin(EStopNode)


if __name__ == "__main__":
    sys.exit(main())
