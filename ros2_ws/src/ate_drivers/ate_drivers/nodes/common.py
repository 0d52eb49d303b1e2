"""What every driver node shares: config loading from parameters, QoS profiles, diagnostics, e-stop and cell
supervisor wiring (:class:`CellLink`), and a spin that ends cleanly under ``ros2 launch``."""

from __future__ import annotations

import json
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
# /cell/hold: the cell supervisor's hold state, latched like the e-stop.
HOLD_QOS = ESTOP_QOS
# /cell/events: every hold event must reach the supervisor (reliable, a burst fits).
EVENT_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# /estop/heartbeat: only the newest matters.
HEARTBEAT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)

HOLD_TOPIC = "/cell/hold"
EVENT_TOPIC = "/cell/events"
RESUME_SERVICE = "/cell/resume"
HEARTBEAT_TOPIC = "/estop/heartbeat"


def load_config(node: Node, overrides: dict | None = None) -> DriversConfig:
    """Parameters ``config_file`` (drivers YAML) and ``robot`` (real|emulated|sim, '' = the file's), then
    ``overrides`` (a nested dict of config fields a node sets from its own parameters)."""
    node.declare_parameter("config_file", "", desc("drivers YAML (ate_bringup/config/drivers.yaml)"))
    node.declare_parameter("robot", "", desc("real | emulated | sim; empty: the config file's value"))
    node.declare_parameter("safety", "", desc("JSON object: the task's overrides of drivers.yaml's safety section"))
    path = node.get_parameter("config_file").value or None
    robot = node.get_parameter("robot").value or None
    over = dict(overrides or {})
    safety = node.get_parameter("safety").value
    if safety:
        from ate_description.errors import UserError
        try:
            over["safety"] = {**json.loads(safety), **over.get("safety", {})}
        except (ValueError, TypeError) as e:
            raise UserError(f"parameter safety:={safety!r} is not a JSON object: {e}") from e
    return load_drivers_config(path, robot, over)


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


class CellLink:
    """A driver process's link to the cell: its e-stop and the cell supervisor.

    * ``/estop`` (latched) triggers and resets this process's :class:`~ate_drivers.safety.EStop`;
    * ``/estop/heartbeat``: the e-stop node's liveliness; when it lapses for ``safety.estop_timeout_s`` this
      process's e-stop latches (only ``/estop/reset`` clears it), and before the first beat commands are refused
      (``estop_unseen``);
    * the local :class:`~ate_drivers.supervisor.CellSupervisor` over this process's arms holds at once on what
      its :class:`~ate_drivers.supervisor.DriverWatch` es report, publishes each event on ``/cell/events`` and
      follows ``/cell/hold`` (the cell's supervisor in the e-stop node couples the arms across processes).

    The node calls :meth:`poll` after each command and state tick, and :meth:`gate` before passing a command on.
    """

    def __init__(self, node: Node, estop, supervisor, watches, safety):
        from std_msgs.msg import Bool, Header, String

        from ate_drivers.supervisor import HeartbeatWatch

        self.node, self.estop, self.supervisor, self.watches = node, estop, supervisor, list(watches)
        self.heartbeat = HeartbeatWatch(safety.estop_timeout_s)
        self._String = String
        self.pub_events = node.create_publisher(String, EVENT_TOPIC, EVENT_QOS)
        self.events_sent = 0
        self._epoch = None
        self.last_state: dict | None = None   # the cell's newest /cell/hold

        def on_estop(msg: Bool) -> None:
            if msg.data and not estop.latched:
                estop.trigger("/estop")
            elif not msg.data and estop.latched:
                estop.reset()
        self._subs = [node.create_subscription(Bool, "/estop", on_estop, ESTOP_QOS),
                      node.create_subscription(Header, HEARTBEAT_TOPIC, lambda _: self.heartbeat.beat(),
                                               HEARTBEAT_QOS),
                      node.create_subscription(String, HOLD_TOPIC, self._on_hold, HOLD_QOS)]
        if self.heartbeat.enabled:
            node.create_timer(min(0.05, self.heartbeat.timeout_s / 4), self._check_heartbeat)

    def _check_heartbeat(self) -> None:
        if self.heartbeat.check():
            self.estop.trigger(f"the e-stop node's heartbeat stopped ({self.heartbeat.timeout_s:.2f} s): "
                               "latched until /estop/reset")

    def _on_hold(self, msg) -> None:
        from ate_drivers.supervisor import state_from_json

        st = state_from_json(msg.data)
        epoch = st.get("epoch")
        if epoch != self._epoch:
            # A (re)started cell supervisor: it knows nothing of holds made before; tell it ours again.
            self._epoch = epoch
            self.supervisor.rebase(int(st.get("resumes", 0)))
            for ev in self.supervisor.standing_events():
                self.publish_event(ev)
        self.last_state = st
        self.supervisor.follow(st)

    def publish_event(self, ev) -> None:
        self.pub_events.publish(self._String(data=ev.to_json()))
        self.events_sent += 1

    def poll(self) -> None:
        """Turn what the drivers counted since the last poll into hold events: hold here, tell the cell."""
        t = time.monotonic()
        for w in self.watches:
            for ev in w.poll(t):
                self.supervisor.report(ev)
                self.publish_event(ev)

    def gate(self, arm: str, safety_filter) -> bool:
        """True when a command for ``arm`` may go on; otherwise it is refused (and counted) with the reason."""
        from ate_drivers.supervisor import gate

        return gate(self.supervisor, arm, safety_filter) and self.heartbeat_gate(safety_filter)

    def heartbeat_gate(self, safety_filter) -> bool:
        """False (and the command refused, ``estop_unseen``) while no heartbeat of the e-stop node is current."""
        if not self.heartbeat.alive() and not self.estop.latched:
            age = self.heartbeat.age_s()
            safety_filter.refuse("estop_unseen", "no heartbeat from the e-stop node yet" if age is None
                                 else f"no heartbeat from the e-stop node for {age:.2f} s")
            return False
        return True

    def diagnostics(self) -> dict[str, str]:
        age = self.heartbeat.age_s()
        return {"cell_held": str(self.supervisor.held()), "cell_hold_reason": self.supervisor.reason(),
                "estop_heartbeat_age_s": "none" if age is None else f"{age:.3f}",
                "estop_heartbeat_lapses": str(self.heartbeat.lapses), "hold_events_sent": str(self.events_sent)}


def link_cell(node: Node, estop, safety, drivers: list[tuple[str, str, object]]) -> CellLink:
    """The :class:`CellLink` of a driver node: a local supervisor over the arms of ``drivers`` ((kind, arm,
    driver) with kind ``arm`` or ``gripper``), whose holds stop those drivers at once."""
    from ate_drivers.supervisor import CellSupervisor, DriverWatch, apply_holds

    arms = tuple(dict.fromkeys(arm for _, arm, _ in drivers))
    supervisor = CellSupervisor(safety.coupling, arms=arms, name=node.get_fully_qualified_name())
    apply_holds(supervisor, [(arm, drv) for _, arm, drv in drivers])
    return CellLink(node, estop, supervisor, [DriverWatch(kind, arm, drv) for kind, arm, drv in drivers], safety)


def follow_cell_hold(node: Node, on_state) -> None:
    """For a node that commands the cell (policy, teleop): ``on_state(state dict)`` for every ``/cell/hold``."""
    from std_msgs.msg import String

    from ate_drivers.supervisor import state_from_json

    node._cell_hold_sub = node.create_subscription(String, HOLD_TOPIC, lambda m: on_state(state_from_json(m.data)),
                                                   HOLD_QOS)


def report_cell_event(node: Node, event) -> None:
    """Publish one :class:`~ate_drivers.supervisor.HoldEvent` on ``/cell/events`` (publisher made on first use)."""
    from std_msgs.msg import String

    pub = getattr(node, "_cell_event_pub", None)
    if pub is None:
        pub = node._cell_event_pub = node.create_publisher(String, EVENT_TOPIC, EVENT_QOS)
    pub.publish(String(data=event.to_json()))


def spin(node_factory) -> int:
    """Run one node until Ctrl-C / SIGINT / SIGTERM; the node's ``close()`` (hold the arm, release the device)
    always runs, and the process ends with exit code 0 and no traceback.

    Under ``ros2 launch`` a Ctrl-C reaches a node twice: the terminal sends SIGINT to the whole process group,
    then launch sends each node its own SIGINT (and SIGTERM after a timeout). The first signal ends the spin (or
    the node's construction, e.g. a model warm-up); later ones are ignored, so they cannot interrupt ``close()``
    or ``destroy_node()`` half-way (which printed tracebacks and exit code -2 before).

    ``SIGUSR1`` prints every thread's stack to the node's stderr (``faulthandler``): the process launcher sends
    it to a node that has not stopped in time before killing it, so its log says where it hung.

    Returns the exit code: 0 on a normal stop, the code of a ``SystemExit`` raised by the node (e.g. 3 when
    robot:=real finds no hardware), 2 for a ``UserError`` (a missing device, a bad config or checkpoint: its
    message is logged as the reason, without a traceback).
    """
    import faulthandler
    import signal

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from ate_description.errors import UserError

    stop = {"signal": None, "constructing": True}

    def ignore_signals() -> None:
        # SIG_IGN, not a Python handler: the interpreter's finalisation restores Python handlers to the default
        # (a late SIGINT would then kill the process with -2), but keeps an ignored signal ignored.
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)

    def on_signal(signum, _frame):
        # launch's own SIGINT after the group's, and its SIGTERM, find the signals ignored: already stopping
        ignore_signals()
        stop["signal"] = signum
        if stop["constructing"]:
            raise KeyboardInterrupt     # leave a long construction (model load, warm-up) at once
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    code = 0
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = node_factory()
        stop["constructing"] = False
        if stop["signal"] is None:
            # ours again: a library imported while the node was built may have put in its own (avp_stream's
            # raise KeyboardInterrupt wherever the main thread is, even inside the executor's C++ calls, where it
            # surfaced as a RuntimeError traceback at Ctrl-C)
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, on_signal)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        # A short wait, so a signal (handled between waits) ends the loop within 50 ms even on an idle node.
        while stop["signal"] is None and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SystemExit as e:
        code = int(e.code or 0) if not isinstance(e.code, str) else 1
        if isinstance(e.code, str):
            rclpy.logging.get_logger(getattr(node_factory, "__name__", "node")).fatal(e.code)
    except UserError as e:
        rclpy.logging.get_logger(getattr(node_factory, "__name__", "node")).fatal(str(e))
        code = 2
    finally:
        stop["constructing"] = False
        ignore_signals()                # from here on: shutting down, whatever arrives
        if node is not None:
            try:
                node.close()
            except Exception as e:  # noqa: BLE001  (a device that fails to close must not hide the exit code)
                node.get_logger().error(f"close failed: {e}")
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001
                pass
        if rclpy.ok():
            rclpy.shutdown()
    return code
