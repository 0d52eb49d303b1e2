"""Message conversions every node of the cell shares (driver nodes, the sim node, the policy and teleop nodes).

One place for how a joint state, a gripper state or command, a wrench and an image look on the wire
(docs/architecture.md (bring-up graph)), so producers and consumers cannot drift apart:

* ``joint_states`` / ``joint_command``: sensor_msgs/JointState with the contract's named joints, radians;
* ``gripper/state`` / ``gripper/command``: sensor_msgs/JointState with the one joint ``<arm>_gripper``:
  position = opening fraction (0 closed .. 1 open); on commands velocity = speed fraction and effort = force
  fraction (1 when absent); on states effort carries the fault code (the text is in /diagnostics);
* ``wrench``: geometry_msgs/WrenchStamped in the flange frame ``<arm>_flange``;
* ``cameras/<name>/image_raw``: sensor_msgs/Image, rgb8, stamped with the capture time.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import WrenchStamped
from sensor_msgs.msg import Image, JointState

NS_PER_S = 1_000_000_000


def stamp_ns(stamp) -> int:
    """A builtin_interfaces/Time as integer nanoseconds (exact: lockstep ticks are matched on it)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def stamp_s(stamp) -> float:
    return stamp_ns(stamp) * 1e-9


def to_stamp(t_s: float):
    """Seconds (e.g. simulated time) as a builtin_interfaces/Time, rounded to the nanosecond."""
    from builtin_interfaces.msg import Time

    ns = int(round(t_s * NS_PER_S))
    return Time(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def joint_state_msg(names, positions, stamp) -> JointState:
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(names)
    msg.position = [float(v) for v in positions]
    return msg


def gripper_state_msg(joint: str, position: float, fault: int, stamp) -> JointState:
    msg = joint_state_msg([joint], [position], stamp)
    msg.effort = [float(fault)]  # fault code rides along; the text is in /diagnostics
    return msg


def gripper_command_msg(joint: str, position: float, stamp, force: float = 1.0, speed: float = 1.0) -> JointState:
    msg = joint_state_msg([joint], [position], stamp)
    msg.velocity, msg.effort = [float(speed)], [float(force)]
    return msg


def parse_gripper_command(msg: JointState, joint: str) -> tuple[float, float, float]:
    """(position, force, speed) of a gripper command; ValueError naming what is wrong."""
    if list(msg.name) not in ([], [joint]) or len(msg.position) != 1:
        raise ValueError(f"expected one position for {joint}, got names {list(msg.name)} and "
                         f"{len(msg.position)} positions")
    speed = msg.velocity[0] if len(msg.velocity) == 1 else 1.0
    force = msg.effort[0] if len(msg.effort) == 1 else 1.0
    return float(msg.position[0]), float(force), float(speed)


def wrench_msg(arm: str, wrench, stamp) -> WrenchStamped:
    w = WrenchStamped()
    w.header.stamp = stamp
    w.header.frame_id = f"{arm}_flange"
    f = [float(v) for v in wrench]
    w.wrench.force.x, w.wrench.force.y, w.wrench.force.z = f[:3]
    w.wrench.torque.x, w.wrench.torque.y, w.wrench.torque.z = f[3:6]
    return w


def wrench_values(msg: WrenchStamped) -> np.ndarray:
    f, t = msg.wrench.force, msg.wrench.torque
    return np.array([f.x, f.y, f.z, t.x, t.y, t.z], dtype=float)


def image_msg(image: np.ndarray, frame_id: str, stamp) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = "rgb8"
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    return msg


def image_array(msg: Image) -> np.ndarray:
    """An rgb8 / bgr8 Image as an (H, W, 3) uint8 RGB array; ValueError for other encodings."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"image encoding {msg.encoding!r} not supported (rgb8 or bgr8)")
    a = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if a.size != msg.height * msg.step or msg.step < msg.width * 3:
        raise ValueError(f"image of {msg.width}x{msg.height} with step {msg.step} holds {a.size} bytes")
    a = a.reshape(msg.height, msg.step)[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
    return a[..., ::-1].copy() if msg.encoding == "bgr8" else a.copy()
