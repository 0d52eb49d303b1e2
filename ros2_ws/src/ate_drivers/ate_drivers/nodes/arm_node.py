"""Arm driver node (one per arm, namespace ``left`` / ``right``): ``joint_states``, ``wrench``, ``/diagnostics``
out; ``joint_command`` (20 Hz targets), ``joint_trajectory`` (a whole chunk) and ``/estop`` in; service
``clear_error`` (std_srvs/Trigger: clear the controller's errors, after which commands flow again). All logic is
in ``ate_drivers.arm_driver.ArmDriver`` (which streams frames to the controller from its own thread)."""

from __future__ import annotations

import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import WrenchStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState

from ate_drivers import registry
from ate_drivers.arm_driver import ArmDriver
from ate_drivers.nodes.common import (COMMAND_QOS, STATE_QOS, diagnostic_array, load_config, monotonic_to_stamp,
                                      link_cell, spin, stamp_to_monotonic)
from ate_drivers.nodes.messages import joint_state_msg, wrench_msg
from ate_drivers.safety import EStop
from ate_description.contract import arm_joint_names


class ArmNode(Node):
    def __init__(self):
        super().__init__("arm_driver")
        self.declare_parameter("arm", "left")
        self.arm = self.get_parameter("arm").value
        self.cfg = load_config(self)
        side = self.cfg.side(self.arm)
        backend = registry.make_arm(self.cfg.backend_names().arm, arm=self.arm, config=side.realman)
        self.estop = EStop()
        # robot:=real: an unstamped command is refused (it would skip the stale check).
        self.driver = ArmDriver(self.arm, backend, self.cfg.safety, self.estop, self.cfg.reconnect,
                                require_stamps=self.cfg.robot == "real")
        self.names = arm_joint_names(self.arm)
        self.pub_js = self.create_publisher(JointState, "joint_states", STATE_QOS)
        self.pub_wrench = self.create_publisher(WrenchStamped, "wrench", STATE_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointState, "joint_command", self.on_command, COMMAND_QOS)
        # /estop, the e-stop node's heartbeat and the cell supervisor (a hold of either arm stops this one)
        self.cell = link_cell(self, self.estop, self.cfg.safety, [("arm", self.arm, self.driver)])
        from std_srvs.srv import Trigger
        from trajectory_msgs.msg import JointTrajectory
        self.create_service(Trigger, "clear_error", self.on_clear_error)
        # A whole chunk at once: streamed on its own timeline (no tick of interpolation, unlike joint_command).
        self.create_subscription(JointTrajectory, "joint_trajectory", self.on_trajectory, COMMAND_QOS)
        self._tick_n = 0
        self._t_start = time.monotonic()
        self.create_timer(1.0 / self.cfg.state_rate_hz, self.on_tick)
        self.create_timer(self.cfg.diagnostics_period_s, self.on_diagnostics)
        self.get_logger().info(f"arm {self.arm}: robot:={self.cfg.robot}, backend {self.cfg.backend_names().arm}")

    def on_tick(self) -> None:
        self._tick_n += 1
        st = self.driver.tick(read_wrench=self._tick_n % max(self.cfg.wrench_every_n, 1) == 0)
        self.cell.poll()
        if st is None:
            if (self.driver.reconnects == 0 and self.cfg.robot == "real"
                    and time.monotonic() - self._t_start > self.cfg.fail_fast_s):
                self.get_logger().fatal(f"arm {self.arm}: no controller after {self.cfg.fail_fast_s:.0f} s "
                                        f"({self.driver.last_error}); without hardware use robot:=sim")
                raise SystemExit(3)
            return
        # Tool power for the gripper is applied by the backend at every (re)connect. States carry their
        # capture time (the backend's monotonic stamp), not the publish time.
        stamp = monotonic_to_stamp(self, st.stamp_s)
        self.pub_js.publish(joint_state_msg(self.names, st.q_rad, stamp))
        if st.wrench is not None:
            self.pub_wrench.publish(wrench_msg(self.arm, st.wrench, stamp))

    def on_command(self, msg: JointState) -> None:
        if self.cell.gate(self.arm, self.driver.safety):
            self.driver.on_command(list(msg.name), list(msg.position), stamp_to_monotonic(self, msg.header.stamp))
        self.cell.poll()

    def on_trajectory(self, msg) -> None:
        if self.cell.gate(self.arm, self.driver.safety):
            times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
            self.driver.on_trajectory(list(msg.joint_names), times, [list(p.positions) for p in msg.points],
                                      stamp_to_monotonic(self, msg.header.stamp))
        self.cell.poll()

    def on_clear_error(self, request, response):
        response.success, response.message = self.driver.clear_error()
        return response

    def on_diagnostics(self) -> None:
        level, message, values = self.driver.diagnostics()
        values.update(self.cell.diagnostics())
        emu = getattr(self.driver.backend, "emulator", None)
        if emu is not None:   # robot:=emulated: what the emulated controller received (tests assert on the device)
            values["emulator_stops_received"] = str(len(emu.commands("set_arm_stop")))
        if self.cell.supervisor.held(self.arm) and level < 2:
            level, message = 2, f"cell hold: {self.cell.supervisor.reason()}; call /cell/resume"
        self.pub_diag.publish(diagnostic_array(self, f"arm/{self.arm}", level, message, values))

    def close(self) -> None:
        self.driver.close()


def main(argv=None) -> int:
    # The stream thread must wake every frame period (5 ms): do not let the executor thread keep the GIL for
    # the interpreter's default 5 ms switch interval.
    sys.setswitchinterval(0.0005)
    return spin(ArmNode)


if __name__ == "__main__":
    sys.exit(main())
