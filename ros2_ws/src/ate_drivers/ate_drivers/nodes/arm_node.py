"""Arm driver node (one per arm, namespace ``left`` / ``right``): ``joint_states``, ``wrench``, ``/diagnostics``
out; ``joint_command`` and ``/estop`` in. All logic is in ``ate_drivers.arm_driver.ArmDriver``."""

from __future__ import annotations

import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import WrenchStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState

from ate_drivers import registry
from ate_drivers.arm_driver import ArmDriver
from ate_drivers.nodes.common import (COMMAND_QOS, STATE_QOS, diagnostic_array, link_cell, load_config, spin,
                                      stamp_to_monotonic)
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
        self.driver = ArmDriver(self.arm, backend, self.cfg.safety, self.estop, self.cfg.reconnect)
        self.names = arm_joint_names(self.arm)
        self.pub_js = self.create_publisher(JointState, "joint_states", STATE_QOS)
        self.pub_wrench = self.create_publisher(WrenchStamped, "wrench", STATE_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointState, "joint_command", self.on_command, COMMAND_QOS)
        # /estop, the e-stop node's heartbeat and the cell supervisor (a hold of either arm stops this one)
        self.cell = link_cell(self, self.estop, self.cfg.safety, [("arm", self.arm, self.driver)])
        self._tick_n = 0
        self._t_start = time.monotonic()
        self._tool_power_done = False
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
        if not self._tool_power_done:   # the gripper on the flange needs tool power
            try:
                self.driver.backend.set_tool_voltage(self.cfg.side(self.arm).realman.tool_voltage)
                self._tool_power_done = True
            except Exception as e:
                self.get_logger().warning(f"tool voltage: {e}")
        now = self.get_clock().now().to_msg()
        self.pub_js.publish(joint_state_msg(self.names, st.q_rad, now))
        if st.wrench is not None:
            self.pub_wrench.publish(wrench_msg(self.arm, st.wrench, now))

    def on_command(self, msg: JointState) -> None:
        if self.cell.gate(self.arm, self.driver.safety):
            self.driver.on_command(list(msg.name), list(msg.position), stamp_to_monotonic(self, msg.header.stamp))
        self.cell.poll()

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
    return spin(ArmNode)


if __name__ == "__main__":
    sys.exit(main())
