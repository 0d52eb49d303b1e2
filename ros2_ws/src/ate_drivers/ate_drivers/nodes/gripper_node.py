"""Gripper driver node (one per arm namespace): ``gripper/state`` and ``/diagnostics`` out, ``gripper/command`` and
``/estop`` in. Both topics are sensor_msgs/JointState with the one joint ``<arm>_gripper``: position = opening
fraction (0 closed .. 1 open), velocity = speed fraction, effort = force fraction (defaults 1 when absent).

The state is stamped with the feedback's capture time. On the e-stop, a cell hold (``/cell/hold``) or a silent
e-stop node the gripper holds its measured opening (``GripperDriver.hold``) and refuses commands; a CAN error
disconnects it and it reconnects (``ate_drivers.gripper_driver``)."""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import JointState

from ate_description.calibration import load_calibration
from ate_drivers import registry
from ate_drivers.gripper_driver import GripperDriver
from ate_drivers.nodes.common import (COMMAND_QOS, STATE_QOS, diagnostic_array, link_cell, load_config,
                                      monotonic_to_stamp, spin)
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
        # The stroke table of `python -m calibration gripper` (the bring-up's calibration.yaml); empty = unmapped.
        mapping = load_calibration().arm(self.arm).gripper
        self.driver = GripperDriver(self.arm, backend, self.cfg.safety, self.estop, mapping=mapping)
        self.joint = f"{self.arm}_gripper"
        self.pub = self.create_publisher(JointState, "gripper/state", STATE_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointState, "gripper/command", self.on_command, COMMAND_QOS)
        self.cell = link_cell(self, self.estop, self.cfg.safety, [("gripper", self.arm, self.driver)])
        self._last_stamp = None
        self.create_timer(1.0 / self.cfg.gripper_rate_hz, self.on_tick)
        self.create_timer(self.cfg.diagnostics_period_s, self.on_diagnostics)

    def on_tick(self) -> None:
        st = self.driver.tick()
        self.cell.poll()
        if st is None or st.stamp_s == self._last_stamp:
            return   # no new feedback: nothing new to say (a repeated state would look fresh)
        self._last_stamp = st.stamp_s
        self.pub.publish(gripper_state_msg(self.joint, st.position, st.fault, monotonic_to_stamp(self, st.stamp_s)))

    def on_command(self, msg: JointState) -> None:
        try:
            position, force, speed = parse_gripper_command(msg, self.joint)
        except ValueError as e:
            self.driver.safety.refuse("wrong_length", str(e))
        else:
            if self.cell.gate(self.arm, self.driver.safety):
                self.driver.on_command(position, force, speed)
        self.cell.poll()

    def on_diagnostics(self) -> None:
        level, message, values = self.driver.diagnostics()
        values.update(self.cell.diagnostics())
        emu = getattr(self.driver.backend, "emulator", None)
        if emu is not None:   # robot:=emulated: what the emulated gripper received (tests assert on the device)
            values["emulator_commands_received"] = str(len(emu.received))
            if emu.received:
                values["emulator_last_command_position"] = f"{emu.received[-1].position:.4f}"
        if self.cell.supervisor.held(self.arm) and level < 2:
            level, message = 2, f"cell hold: {self.cell.supervisor.reason()}; call /cell/resume"
        self.pub_diag.publish(diagnostic_array(self, f"gripper/{self.arm}", level, message, values))

    def close(self) -> None:
        self.driver.close()   # holds the measured opening, then closes the CAN bus


def main(argv=None) -> int:
    return spin(GripperNode)


if __name__ == "__main__":
    sys.exit(main())
