"""E-stop node, and the cell's safety supervisor: every graph that starts drivers includes it.

E-stop: ``/estop/trigger`` and ``/estop/reset`` (std_srvs/Trigger) publish the latched ``/estop`` (std_msgs/Bool,
transient-local); every arm and gripper node follows it and stops through its SDK (grippers hold their measured
opening). A teleop Joy-Con publishes ``/estop`` itself as well. ``/estop/heartbeat`` (std_msgs/Header, every
``safety.estop_timeout_s / 5``) is the node's liveliness: a driver that stops hearing it latches its e-stop.

Cell supervisor (``ate_drivers.supervisor.CellSupervisor``): hold events of every process arrive on
``/cell/events`` (std_msgs/String, JSON); with ``safety.coupling: coupled`` an event on one arm holds both. The
hold state is published latched on ``/cell/hold`` (std_msgs/String, JSON: held, per arm kind/detail/source,
coupling, resumes) and as ``/diagnostics`` ``cell``; ``/cell/resume`` (std_srvs/Trigger) is the operator's
explicit resume (refused while the e-stop is latched).
"""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import Trigger

from ate_drivers.nodes.common import (ESTOP_QOS, EVENT_QOS, EVENT_TOPIC, HEARTBEAT_QOS, HEARTBEAT_TOPIC, HOLD_QOS,
                                      HOLD_TOPIC, RESUME_SERVICE, diagnostic_array, load_config, spin)
from ate_drivers.supervisor import CellSupervisor, HoldEvent, state_to_json


class EStopNode(Node):
    def __init__(self):
        super().__init__("estop")
        self.cfg = load_config(self)
        safety = self.cfg.safety
        self.latched = False
        self.pub = self.create_publisher(Bool, "/estop", ESTOP_QOS)
        self.create_service(Trigger, "/estop/trigger", self.on_trigger)
        self.create_service(Trigger, "/estop/reset", self.on_reset)
        # Nothing is published on /estop at start: a restarted e-stop node must not reset a latched e-stop.
        # Others may publish /estop too (a teleop Joy-Con): follow it, so a resume is refused while it latches.
        self.create_subscription(Bool, "/estop", self.on_estop, ESTOP_QOS)
        self.pub_beat = self.create_publisher(Header, HEARTBEAT_TOPIC, HEARTBEAT_QOS)
        if safety.estop_timeout_s > 0:
            self.create_timer(safety.estop_timeout_s / 5.0, self.on_heartbeat)

        self.supervisor = CellSupervisor(safety.coupling, name="cell")
        self.pub_hold = self.create_publisher(String, HOLD_TOPIC, HOLD_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.supervisor.add_listener(self.publish_hold)
        self.create_subscription(String, EVENT_TOPIC, self.on_event, EVENT_QOS)
        self.create_service(Trigger, RESUME_SERVICE, self.on_resume)
        self.create_timer(self.cfg.diagnostics_period_s, self.on_diagnostics)
        self.bad_events = 0
        self.publish_hold(self.supervisor.state())
        self.get_logger().info(f"e-stop and cell supervisor up (coupling {safety.coupling}, heartbeat timeout "
                               f"{safety.estop_timeout_s} s)")

    # --- e-stop ----------------------------------------------------------------------------------------------
    def on_trigger(self, req, resp):
        self.latched = True
        self.pub.publish(Bool(data=True))
        self.get_logger().error("E-STOP triggered")
        resp.success, resp.message = True, "e-stop latched"
        return resp

    def on_reset(self, req, resp):
        self.latched = False
        self.pub.publish(Bool(data=False))
        self.get_logger().warning("e-stop reset")
        resp.success, resp.message = True, "e-stop reset"
        return resp

    def on_estop(self, msg: Bool) -> None:
        self.latched = bool(msg.data)

    def on_heartbeat(self) -> None:
        h = Header()
        h.stamp = self.get_clock().now().to_msg()
        h.frame_id = "estop"
        self.pub_beat.publish(h)

    # --- cell supervisor -------------------------------------------------------------------------------------
    def on_event(self, msg: String) -> None:
        try:
            ev = HoldEvent.from_json(msg.data)
        except (ValueError, KeyError, TypeError) as e:
            # An event we cannot read is still an event: hold everything rather than miss one.
            self.bad_events += 1
            ev = HoldEvent("cell", None, "bad_event", f"unreadable /cell/events message: {e}")
        self.supervisor.report(ev)

    def on_resume(self, req, resp):
        resp.success, resp.message = self.supervisor.resume("e-stop latched: reset it first" if self.latched
                                                             else "")
        (self.get_logger().warning if resp.success else self.get_logger().error)(resp.message)
        return resp

    def publish_hold(self, state: dict) -> None:
        self.pub_hold.publish(String(data=state_to_json(state)))

    def on_diagnostics(self) -> None:
        level, message, values = self.supervisor.diagnostics()
        values["estop"] = str(self.latched)
        values["bad_events"] = str(self.bad_events)
        self.pub_diag.publish(diagnostic_array(self, "cell", level, message, values))

    def close(self) -> None:
        pass


def main(argv=None) -> int:
    return spin(EStopNode)


if __name__ == "__main__":
    sys.exit(main())
