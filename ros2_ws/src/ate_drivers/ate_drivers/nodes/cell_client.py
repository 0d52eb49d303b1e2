"""What a node that drives the cell needs (the policy node, the teleop node): the newest sample of every stream
with its stamp, commands out, and a 20 Hz tick in either clock.

* realtime (the robot, or the sim in realtime): a timer on the node's clock calls ``on_tick(now_s)`` at the rate;
* lockstep (the sim in lockstep, ``ate_drivers.lockstep``): ``on_tick(t_k)`` runs once per tick, as soon as every
  stream of tick k is in; the commands it sent are then announced in the acknowledgement that lets the cell step.

``on_tick`` returns nothing; it reads :meth:`snapshot` and calls :meth:`send_arm` / :meth:`send_gripper`, which
stamp the commands with the tick's time. The node stays thin: everything it decides lives in pure-Python modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from geometry_msgs.msg import WrenchStamped
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from ate_drivers.lockstep import TICK_DONE_TOPIC, TickCollector, ack_frame_id
from ate_drivers.nodes.common import COMMAND_QOS, IMAGE_QOS, STATE_QOS
from ate_drivers.nodes.messages import (gripper_command_msg, image_array, joint_state_msg, stamp_ns, to_stamp,
                                        wrench_values)
from ate_description.contract import ARMS, CAMERA_NAMES, arm_joint_names


@dataclass
class Sample:
    value: object      # np.ndarray (joints, wrench, image) or float (gripper opening)
    stamp_s: float     # header stamp, seconds on the ROS clock of the graph (simulated time in a sim graph)


@dataclass
class CellSnapshot:
    """The newest sample of each stream (missing streams are absent)."""

    joints: dict[str, Sample] = field(default_factory=dict)     # arm -> (7,) rad
    grippers: dict[str, Sample] = field(default_factory=dict)   # arm -> opening fraction
    wrenches: dict[str, Sample] = field(default_factory=dict)   # arm -> (6,)
    images: dict[str, Sample] = field(default_factory=dict)     # camera -> (H, W, 3) uint8 RGB

    def complete(self, arms=ARMS, cameras=CAMERA_NAMES) -> bool:
        return all(a in self.joints and a in self.grippers for a in arms) and all(c in self.images for c in cameras)


class CellClient:
    def __init__(self, node, on_tick: Callable[[float], None], *, consumer: str, lockstep: bool,
                 rate_hz: float = 20.0, cameras=CAMERA_NAMES, arms=ARMS):
        self.node, self.on_tick, self.consumer, self.lockstep = node, on_tick, consumer, lockstep
        self.arms, self.cameras = tuple(arms), tuple(cameras)
        self._joints: dict[str, tuple[JointState, float]] = {}
        self._grippers: dict[str, tuple[JointState, float]] = {}
        self._wrenches: dict[str, tuple[WrenchStamped, float]] = {}
        self._images: dict[str, tuple[Image, float]] = {}
        self._sent_this_tick = 0
        self._sent_last = 0   # commands of the last handled tick: a re-acknowledgement announces them again
        self._tick_stamp = None
        self.ticks = 0
        self.pub_arm = {a: node.create_publisher(JointState, f"/{a}/joint_command", COMMAND_QOS) for a in self.arms}
        self.pub_grip = {a: node.create_publisher(JointState, f"/{a}/gripper/command", COMMAND_QOS)
                         for a in self.arms}
        for a in self.arms:
            node.create_subscription(JointState, f"/{a}/joint_states", lambda m, a=a: self._put("joints", a, m),
                                     STATE_QOS)
            node.create_subscription(JointState, f"/{a}/gripper/state", lambda m, a=a: self._put("grippers", a, m),
                                     STATE_QOS)
            node.create_subscription(WrenchStamped, f"/{a}/wrench", lambda m, a=a: self._put("wrenches", a, m),
                                     STATE_QOS)
        for c in self.cameras:
            node.create_subscription(Image, f"/cameras/{c}/image_raw", lambda m, c=c: self._put("images", c, m),
                                     IMAGE_QOS)
        if lockstep:
            self.collector = TickCollector([f"joints/{a}" for a in self.arms] + [f"grippers/{a}" for a in self.arms]
                                           + [f"images/{c}" for c in self.cameras])
            self.pub_ack = node.create_publisher(Header, TICK_DONE_TOPIC, COMMAND_QOS)
        else:
            self.collector = None
            node.create_timer(1.0 / rate_hz, self._on_timer)

    # --- streams in ------------------------------------------------------------------------------------------
    def _put(self, kind: str, key: str, msg) -> None:
        getattr(self, f"_{kind}")[key] = (msg, stamp_ns(msg.header.stamp) * 1e-9)
        if self.collector is not None and kind != "wrenches":
            self.collector.put(f"{kind}/{key}", stamp_ns(msg.header.stamp))
            nxt = self.collector.next_tick()
            if nxt is not None:
                t_ns, first = nxt
                if first:
                    self._run_tick(t_ns * 1e-9)
                self._ack(t_ns, self._sent_this_tick if first else self._sent_last)

    def snapshot(self) -> CellSnapshot:
        snap = CellSnapshot()
        for a, (m, t) in self._joints.items():
            snap.joints[a] = Sample(self._ordered(a, m), t)
        for a, (m, t) in self._grippers.items():
            if len(m.position) == 1:
                snap.grippers[a] = Sample(float(m.position[0]), t)
        for a, (m, t) in self._wrenches.items():
            snap.wrenches[a] = Sample(wrench_values(m), t)
        for c, (m, t) in self._images.items():
            snap.images[c] = Sample(image_array(m), t)
        return snap

    @staticmethod
    def _ordered(arm: str, msg: JointState) -> np.ndarray:
        names = arm_joint_names(arm)
        if list(msg.name) == names:
            return np.asarray(msg.position, dtype=float)
        index = {n: i for i, n in enumerate(msg.name)}
        return np.asarray([msg.position[index[n]] for n in names], dtype=float)

    # --- ticks -----------------------------------------------------------------------------------------------
    def _on_timer(self) -> None:
        self._run_tick(self.node.get_clock().now().nanoseconds * 1e-9)

    def _run_tick(self, t_s: float) -> None:
        self._tick_stamp = to_stamp(t_s)
        self._sent_this_tick = 0
        self.ticks += 1
        try:
            self.on_tick(t_s)
        finally:
            self._sent_last = self._sent_this_tick

    def _ack(self, t_ns: int, n_commands: int) -> None:
        h = Header()
        h.stamp.sec, h.stamp.nanosec = t_ns // 1_000_000_000, t_ns % 1_000_000_000
        h.frame_id = ack_frame_id(self.consumer, n_commands)
        self.pub_ack.publish(h)

    # --- commands out ----------------------------------------------------------------------------------------
    def send_arm(self, arm: str, q_rad) -> None:
        self.pub_arm[arm].publish(joint_state_msg(arm_joint_names(arm), q_rad, self._tick_stamp))
        self._sent_this_tick += 1

    def send_gripper(self, arm: str, opening: float, force: float = 1.0, speed: float = 1.0) -> None:
        self.pub_grip[arm].publish(gripper_command_msg(f"{arm}_gripper", opening, self._tick_stamp, force, speed))
        self._sent_this_tick += 1
