"""What every driver node shares: config loading from parameters, QoS profiles, diagnostics and e-stop wiring."""

from __future__ import annotations

import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ate_drivers import backends  # noqa: F401  (registers the backends)
from ate_drivers.config import DriversConfig, load_drivers_config

# Commands: reliable, shallow (a late command is refused as stale anyway).
COMMAND_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# States: reliable keep-last (small messages; a recorder must not miss them on a quiet network).
STATE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# Images: best effort, newest only.
IMAGE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
# /estop: latched, so a node started after the trigger still sees it.
ESTOP_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)


def load_config(node: Node, overrides: dict | None = None) -> DriversConfig:
    """Parameters ``config_file`` (drivers YAML) and ``robot`` (real|emulated|sim, '' = the file's), then
    ``overrides`` (a nested dict of config fields a node sets from its own parameters)."""
    node.declare_parameter("config_file", "", desc("drivers YAML (ate_bringup/config/drivers.yaml)"))
    node.declare_parameter("robot", "", desc("real | emulated | sim; empty: the config file's value"))
    path = node.get_parameter("config_file").value or None
    robot = node.get_parameter("robot").value or None
    return load_drivers_config(path, robot, overrides)


def desc(text: str):
    from rcl_interfaces.msg import ParameterDescriptor
    return ParameterDescriptor(description=text)


def stamp_to_monotonic(node: Node, stamp) -> float | None:
    """A message header stamp on this process's monotonic clock (None for an unstamped message)."""
    if stamp.sec == 0 and stamp.nanosec == 0:
        return None
    age_s = (node.get_clock().now().nanoseconds - (stamp.sec * 1_000_000_000 + stamp.nanosec)) * 1e-9
    return time.monotonic() - age_s


def monotonic_to_stamp(node: Node, t_mono: float):
    """A monotonic capture time as a ROS stamp of this node's clock."""
    from rclpy.duration import Duration
    age = max(0.0, time.monotonic() - t_mono)
    return (node.get_clock().now() - Duration(nanoseconds=int(age * 1e9))).to_msg()


def diagnostic_array(node: Node, name: str, level: int, message: str, values: dict[str, str]):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    arr = DiagnosticArray()
    arr.header.stamp = node.get_clock().now().to_msg()
    st = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=name)
    st.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    arr.status = [st]
    return arr


def subscribe_estop(node: Node, estop) -> None:
    """Follow the latched ``/estop`` topic: True triggers this process's e-stop, False resets it."""
    from std_msgs.msg import Bool

    def on_estop(msg: Bool) -> None:
        if msg.data and not estop.latched:
            estop.trigger("/estop")
        elif not msg.data and estop.latched:
            estop.reset()
    node._estop_sub = node.create_subscription(Bool, "/estop", on_estop, ESTOP_QOS)


def spin(node_factory) -> int:
    """Run one node until Ctrl-C / SIGINT; the node's ``close()`` (stop the arm, release the device) always runs.

    Returns the exit code: 0 on a normal stop, the code of a ``SystemExit`` raised by the node (e.g. 3 when
    robot:=real finds no hardware), 2 for a ``UserError`` (a missing device, a bad config or checkpoint: its
    message is logged as the reason, without a traceback).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from ate_description.errors import UserError
    code = 0
    rclpy.init()
    node = None
    try:
        node = node_factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SystemExit as e:
        code = int(e.code or 0)
    except UserError as e:
        rclpy.logging.get_logger(getattr(node_factory, "__name__", "node")).fatal(str(e))
        code = 2
    finally:
        if node is not None:
            try:
                node.close()
            except Exception as e:  # a device that fails to close must not hide the exit code
                node.get_logger().error(f"close failed: {e}")
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code
