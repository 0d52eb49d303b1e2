"""The simulated cell as one ROS 2 node (``robot:=sim``): the driver graph's topics, one simulated world.

It stands in for every driver node at once (arm and gripper per namespace, the three cameras) with the same
topics and messages (``ate_drivers.nodes.messages``), and puts the same driver logic and safety layer in front
of the cell (``ate_sim.runner.SimRunner``). One process, because a camera must see the arm it films.

Out: ``/<arm>/joint_states``, ``/<arm>/wrench``, ``/<arm>/gripper/state``, ``/cameras/<name>/image_raw``,
``/diagnostics``, ``/clock`` (simulated time: the other nodes of a sim graph run with ``use_sim_time``).
In: ``/<arm>/joint_command``, ``/<arm>/gripper/command``, ``/estop``, ``/estop/heartbeat``, ``/cell/hold``,
``/sim/tick_done`` (lockstep acks). Service: ``/sim/reset`` (std_srvs/Trigger): a new episode of the task scene,
objects re-randomised (and the last episode's cell hold forgotten).

Cell supervisor: both arms live here, so the runner's supervisor holds both at once on a refusal, fault or stale
command of either; its events also go to ``/cell/events`` (the e-stop node's supervisor, which publishes
``/cell/hold``, which this node follows: a ``/cell/resume`` there resumes the arms here).

Clocks (``sim.clock`` in drivers.yaml or the ``clock`` parameter): ``realtime`` steps the physics at wall pace
and renders each camera at ``camera_fps`` as far as the CPU allows; ``lockstep`` runs the protocol of
``ate_drivers.lockstep``: one observation per 20 Hz tick, the next tick once every consumer acknowledged.
"""

from __future__ import annotations

import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import WrenchStamped
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from ate_drivers.lockstep import CLOCK_TOPIC, TICK_DONE_TOPIC, TickGate
from ate_drivers.nodes.common import (COMMAND_QOS, IMAGE_QOS, STATE_QOS, CellLink, desc, diagnostic_array,
                                      load_config, spin)
from ate_drivers.nodes.messages import (gripper_state_msg, image_msg, joint_state_msg, parse_gripper_command,
                                        stamp_ns, stamp_s, to_stamp, wrench_msg)
from ate_description.contract import ARMS, PERIOD_S, arm_joint_names
from ate_sim.runner import SimRunner


class SimNode(Node):
    def __init__(self):
        super().__init__("sim_cell")
        self.declare_parameter("task", "", desc("scene (cook_bun, pick_bun, ...: ate_sim.scenes.SCENES); empty: "
                                                "drivers.yaml sim.task"))
        self.declare_parameter("clock", "", desc("realtime | lockstep; empty: drivers.yaml sim.clock"))
        self.declare_parameter("seed", -1, desc("object randomisation seed; -1: drivers.yaml sim.seed"))
        self.declare_parameter("consumers", "", desc("lockstep: comma list of nodes that acknowledge each tick"))
        over = {}
        for key in ("task", "clock"):
            if self.get_parameter(key).value:
                over[key] = self.get_parameter(key).value
        if self.get_parameter("seed").value >= 0:
            over["seed"] = self.get_parameter("seed").value
        consumers = [c for c in str(self.get_parameter("consumers").value).split(",") if c]
        if consumers:
            over["consumers"] = consumers
        self.cfg = load_config(self, {"robot": "sim", "sim": over})
        self.sim = self.cfg.sim
        self.runner = SimRunner(self.cfg)
        self.runner.start()
        self.lockstep = self.sim.clock == "lockstep"
        self.gate = TickGate(list(self.sim.consumers))

        self.pub_clock = self.create_publisher(Clock, CLOCK_TOPIC, 10)
        self.pub_js, self.pub_wrench, self.pub_grip = {}, {}, {}
        for arm in ARMS:
            self.pub_js[arm] = self.create_publisher(JointState, f"/{arm}/joint_states", STATE_QOS)
            self.pub_wrench[arm] = self.create_publisher(WrenchStamped, f"/{arm}/wrench", STATE_QOS)
            self.pub_grip[arm] = self.create_publisher(JointState, f"/{arm}/gripper/state", STATE_QOS)
            self.create_subscription(JointState, f"/{arm}/joint_command",
                                     lambda m, a=arm: self.on_joint_command(a, m), COMMAND_QOS)
            self.create_subscription(JointState, f"/{arm}/gripper/command",
                                     lambda m, a=arm: self.on_gripper_command(a, m), COMMAND_QOS)
        self.pub_img = {n: self.create_publisher(Image, f"/cameras/{n}/image_raw", IMAGE_QOS)
                        for n in self.runner.cameras}
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # /estop, the e-stop node's heartbeat, /cell/hold; the runner's supervisor raises the events itself
        self.cell = CellLink(self, self.runner.estop, self.runner.supervisor, [], self.cfg.safety)
        self.runner.add_event_listener(self.cell.publish_event)
        self.create_service(Trigger, "/sim/reset", self.on_reset)
        self.episodes = 0
        self.republishes = 0
        self.images_published = 0
        self._last_publish_wall = time.monotonic()
        if self.lockstep:
            self.create_subscription(Header, TICK_DONE_TOPIC, self.on_ack, COMMAND_QOS)
            self.create_timer(0.05, self.on_republish_check)
            self.publish_tick()
        else:
            self.create_timer(1.0 / self.cfg.state_rate_hz, self.on_realtime_state)
            self.create_timer(1.0 / self.sim.camera_fps, self.on_realtime_cameras)
        self.create_timer(self.cfg.diagnostics_period_s, self.on_diagnostics)
        self.get_logger().info(f"sim cell: task {self.sim.task or '(empty table)'}, clock {self.sim.clock}"
                               + (f", consumers {self.sim.consumers}" if self.lockstep else ""))

    # --- publishing ----------------------------------------------------------------------------------------
    def publish_states(self) -> None:
        reading = self.runner.read()
        stamp = to_stamp(self.runner.sim_time())
        self.pub_clock.publish(Clock(clock=stamp))
        for arm in ARMS:
            st = reading.arms[arm]
            if st is not None:
                self.pub_js[arm].publish(joint_state_msg(arm_joint_names(arm), st.q_rad, stamp))
                if st.wrench is not None:
                    self.pub_wrench[arm].publish(wrench_msg(arm, st.wrench, stamp))
            g = reading.grippers[arm]
            if g is not None:
                self.pub_grip[arm].publish(gripper_state_msg(f"{arm}_gripper", g.position, g.fault, stamp))

    def publish_images(self) -> None:
        stamp = to_stamp(self.runner.sim_time())
        for name, frame in self.runner.render().items():
            self.pub_img[name].publish(image_msg(frame.image, name, stamp))
            self.images_published += 1

    def publish_tick(self) -> None:
        """Lockstep: the observation of the current tick, every stream stamped with its simulated time."""
        self.gate.begin(stamp_ns(to_stamp(self.runner.sim_time())))
        self.publish_states()
        self.publish_images()
        self._last_publish_wall = time.monotonic()

    # --- lockstep --------------------------------------------------------------------------------------------
    def on_ack(self, msg: Header) -> None:
        try:
            self.gate.on_ack(msg.frame_id, stamp_ns(msg.stamp))
        except ValueError as e:
            self.get_logger().warning(str(e))
            return
        self.maybe_step()

    def maybe_step(self) -> None:
        if self.lockstep and self.gate.ready():
            self.runner.step(PERIOD_S)
            self.publish_tick()

    def on_republish_check(self) -> None:
        # A best-effort image may be lost on the way: without it a consumer never completes the tick.
        if time.monotonic() - self._last_publish_wall > self.sim.republish_s:
            self.republishes += 1
            self.get_logger().debug(f"no ack from {self.gate.waiting_for}: publishing the tick again")
            self.publish_states()
            self.publish_images()
            self._last_publish_wall = time.monotonic()

    # --- realtime --------------------------------------------------------------------------------------------
    def on_realtime_state(self) -> None:
        self.runner.advance_to_wall()
        self.publish_states()

    def on_realtime_cameras(self) -> None:
        self.publish_images()

    # --- commands --------------------------------------------------------------------------------------------
    def on_joint_command(self, arm: str, msg: JointState) -> None:
        t = stamp_s(msg.header.stamp)
        if self.cell.heartbeat_gate(self.runner.arms[arm].safety):
            self.runner.command_arm(arm, list(msg.name), list(msg.position), t if t > 0 else None)
        self.gate.on_command(stamp_ns(msg.header.stamp))
        self.maybe_step()

    def on_gripper_command(self, arm: str, msg: JointState) -> None:
        try:
            position, force, speed = parse_gripper_command(msg, f"{arm}_gripper")
        except ValueError as e:
            self.runner.grippers[arm].safety.refuse("wrong_length", str(e))
        else:
            if self.cell.heartbeat_gate(self.runner.grippers[arm].safety):
                self.runner.command_gripper(arm, position, force, speed)
        self.gate.on_command(stamp_ns(msg.header.stamp))
        self.maybe_step()

    def on_reset(self, req, resp):
        self.episodes += 1
        seed = self.sim.seed + self.episodes
        self.runner.reset(seed)
        if self.cell.last_state is not None:   # a new episode forgets its own holds, not the cell's
            self.runner.supervisor.follow(self.cell.last_state)
        resp.success, resp.message = True, f"episode {self.episodes}: scene reset with seed {seed}"
        return resp

    # --- diagnostics -----------------------------------------------------------------------------------------
    def on_diagnostics(self) -> None:
        link = self.cell.diagnostics()
        for name, level, message, values in self.runner.diagnostics():
            values.update(link)
            self.pub_diag.publish(diagnostic_array(self, name, level, message, values))
        success = self.runner.success()
        values = {"clock": self.sim.clock, "sim_time_s": f"{self.runner.sim_time():.3f}",
                  "ticks": str(self.runner.ticks), "task": self.sim.task, "episode": str(self.episodes),
                  "success": "" if success is None else str(success), "images_published": str(self.images_published),
                  "republishes": str(self.republishes)}
        if self.lockstep:
            values["waiting_for"] = ",".join(self.gate.waiting_for)
            values["unknown_acks"] = str(self.gate.unknown_acks)
        self.pub_diag.publish(diagnostic_array(self, "sim", 0, "ok", values))

    def close(self) -> None:
        self.runner.close()


def main(argv=None) -> int:
    return spin(SimNode)


if __name__ == "__main__":
    sys.exit(main())
