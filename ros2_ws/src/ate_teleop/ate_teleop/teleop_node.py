"""Teleop node: two operators, each with a Vision Pro and a Joy-Con, drive one arm each and record episodes.

Thin: ``teleop.session.DualTeleopSession`` holds everything (pose and button sources, frame mapping, IK and
filters, the per-operator state machines, the shared episode and its recorder); ``CellClient`` gives it the
newest joint states, gripper states, wrenches and camera frames and sends what it commands, at 20 Hz (a timer,
or the sim cell's lockstep ticks).

Parameters: ``config_file`` (teleop.yaml; empty: ate_bringup/config/teleop.yaml), ``task`` (the recorded
instruction comes from tasks/<task>.yaml), ``dataset`` (recorder root), ``left_avp_ip`` / ``right_avp_ip``,
``lockstep``. Out: ``/teleop/status`` (std_msgs/String, JSON: state per operator, recording, episode count,
frames, dropped frames, last error) and ``/diagnostics`` (``teleop``). A Joy-Con e-stop press publishes the
latched ``/estop`` itself (the drivers stop even when the e-stop node is down) and calls ``/estop/trigger`` with a
timeout (an unanswered call is reported and never blocks a later press); the latched ``/estop`` puts both
operators to idle and discards an episode being recorded. ``/cell/hold`` (the cell supervisor): a held arm's
operator goes to idle (re-align after ``/cell/resume``) and a recording is discarded.
"""

from __future__ import annotations

import json
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from ate_drivers.nodes.cell_client import CellClient
from ate_drivers.nodes.common import ESTOP_QOS, desc, diagnostic_array, follow_cell_hold, spin

ESTOP_CALL_TIMEOUT_S = 1.0
"""An /estop/trigger call unanswered this long is reported (the e-stop node is down); /estop was published anyway."""


def teleop_overrides(instruction: str, dataset: str, left_ip: str, right_ip: str) -> dict:
    """The launch arguments as overrides of teleop.yaml (empty = keep the file's value)."""
    over: dict = {"task": instruction}
    if dataset:
        over["recorder"] = {"root": dataset}
    for arm, ip in (("left", left_ip), ("right", right_ip)):
        if ip:
            over[arm] = {"avp": {"ip": ip}}
    return over


class TeleopNode(Node):
    def __init__(self):
        super().__init__("teleop")
        from ate_description.errors import UserError
        from ate_policy.runtime import load_task
        from teleop.configuration_teleop import load_teleop_config
        from teleop.session import DualTeleopSession

        for name, default, text in (
                ("config_file", "", "teleop YAML; empty: ate_bringup/config/teleop.yaml"),
                ("task", "cook_bun", "tasks/<task>.yaml: the instruction recorded with each episode"),
                ("dataset", "", "LeRobot dataset folder to record into; empty: teleop.yaml's recorder.root"),
                ("left_avp_ip", "", "left operator's Vision Pro; empty: teleop.yaml's"),
                ("right_avp_ip", "", "right operator's Vision Pro; empty: teleop.yaml's"),
                ("robot", "real", "real | emulated | sim (informational)"),
                ("lockstep", False, "tick on the sim cell's lockstep observations"),
                ("viz", False, "log the cell to Rerun (docs/visualization.md)"),
                ("viz_mode", "native", "native (a viewer window) | web (localhost) | off"),
                ("viz_rrd", "", "also save the Rerun recording to this .rrd file"),
                ("dry_run", False, "emulated headsets with a moving hand + scripted Joy-Con presses "
                                   "(teleop.dry_run)")):
            self.declare_parameter(name, default, desc(text))
        p = {k: self.get_parameter(k).value for k in ("config_file", "task", "dataset", "left_avp_ip",
                                                        "right_avp_ip", "lockstep")}
        instruction = load_task(p["task"]).instruction
        over = teleop_overrides(instruction, p["dataset"], p["left_avp_ip"], p["right_avp_ip"])
        self.headsets = None
        if self.get_parameter("dry_run").value:   # no hardware: emulated headsets, scripted buttons
            from teleop.dry_run import EmulatedHeadsets, dry_run_overrides
            over = dry_run_overrides(over)
            self.headsets = EmulatedHeadsets().start()
        cfg = load_teleop_config(p["config_file"] or None, over)
        self.session = DualTeleopSession(cfg)
        self.get_logger().info(f"connecting to the headsets {cfg.left.avp.ip} / {cfg.right.avp.ip} and Joy-Cons")
        try:
            self.session.connect()
        except UserError as e:
            self.session.close()
            raise UserError(f"{e}. For a dry run without headsets or Joy-Cons: robot:=sim with emulated headsets "
                            "(`python -m teleop.avp_server --ip 127.0.0.1`) and buttons_source: scripted "
                            "(docs/teleop.md)") from e
        self.get_logger().info(f"teleop ready; recording '{instruction}' into {cfg.recorder.root}")
        self._estop_call = None
        self._estop_call_t = 0.0
        self._estop_published = False   # our own latched /estop True is out (cleared again on reset)
        self.estop_client = self.create_client(Trigger, "/estop/trigger")
        self.pub_estop = self.create_publisher(Bool, "/estop", ESTOP_QOS)
        self.pub_status = self.create_publisher(String, "/teleop/status", 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Bool, "/estop", self.on_estop, ESTOP_QOS)
        follow_cell_hold(self, lambda st: self.session.set_cell_hold(
            [a for a, v in st.get("arms", {}).items() if v.get("held") and a in ("left", "right")],
            st.get("reason", "")))
        self.client = CellClient(self, self.on_tick, consumer="teleop", lockstep=bool(p["lockstep"]),
                                 rate_hz=cfg.rate_hz)
        self.last_status: dict = {}
        # The loop's achieved rate, live: a warning line and diagnostics the moment it falls below rate_hz (a
        # recording loop that misses ticks writes repeated frames; docs/data.md).
        from ate_policy.recording.rate import RateMonitor
        self.loop_rate = RateMonitor(cfg.rate_hz, name="teleop loop")
        self.loop_rate.add_listener(lambda line: self.get_logger().warning(line))
        self.viz = None
        if self.get_parameter("viz").value:   # Rerun, off the control path (ate_policy.viz)
            from ate_policy.viz.live import TeleopViz
            self.viz = TeleopViz(self.get_parameter("viz_mode").value, self.get_parameter("viz_rrd").value)
            self.get_logger().info(f"viz: {self.viz.web_url or self.get_parameter('viz_mode').value}")
        self.create_timer(1.0, self.on_diagnostics)

    def on_tick(self, now_s: float) -> None:
        self.loop_rate.tick(now_s)
        snap = self.client.snapshot()
        s = self.session
        for arm, smp in snap.joints.items():
            s.put_joint_state(arm, smp.value, smp.stamp_s)
        for arm, smp in snap.grippers.items():
            s.put_gripper_state(arm, smp.value, smp.stamp_s)
        for arm, smp in snap.wrenches.items():
            s.put_wrench(arm, smp.value, smp.stamp_s)
        for cam, smp in snap.images.items():
            s.put_image(cam, smp.value, smp.stamp_s)
        out = s.tick(now_s)
        for arm, q in out.joint_targets.items():
            if q is not None:
                self.client.send_arm(arm, q)
        for arm, opening in out.gripper_targets.items():
            if opening is not None:
                self.client.send_gripper(arm, opening)
        if out.estop_requested:
            self.request_estop()
        elif self._estop_call is not None and time.monotonic() - self._estop_call_t > ESTOP_CALL_TIMEOUT_S:
            self.get_logger().error(f"/estop/trigger did not answer within {ESTOP_CALL_TIMEOUT_S} s (is the e-stop "
                                    "node down?); /estop was published directly")
            self.estop_client.remove_pending_request(self._estop_call)
            self._estop_call = None
        for line in out.events:
            self.get_logger().info(line)
        out.status["loop"] = self.loop_rate.status()
        self.last_status = out.status
        if self.viz is not None:
            self.viz.tick(now_s, {a: m.value for a, m in snap.joints.items()},
                          {a: m.value for a, m in snap.grippers.items()},
                          {a: m.value for a, m in snap.wrenches.items()},
                          {c: m.value for c, m in snap.images.items()}, out.joint_targets, out.gripper_targets,
                          out.status, out.events)
        self.pub_status.publish(String(data=json.dumps(out.status, default=str)))

    def request_estop(self) -> None:
        """A Joy-Con e-stop press: the latched /estop at once, from this node, and the e-stop node's service."""
        self.pub_estop.publish(Bool(data=True))
        self._estop_published = True
        if self._estop_call is None:
            self._estop_call_t = time.monotonic()
            call = self._estop_call = self.estop_client.call_async(Trigger.Request())
            call.add_done_callback(lambda _: setattr(self, "_estop_call", None) if self._estop_call is call else None)

    def on_estop(self, msg: Bool) -> None:
        self.session.set_estop(msg.data)
        if not msg.data and self._estop_published:
            # reset: our latched True must not outlive it for a node that joins later
            self._estop_published = False
            self.pub_estop.publish(Bool(data=False))

    def on_diagnostics(self) -> None:
        st = self.last_status or self.session.status()
        error = st.get("last_error", "")
        level = 2 if st.get("estop") else (1 if error else 0)
        message = "e-stop latched" if st.get("estop") else (error or "ok")
        if level == 0 and st.get("loop", {}).get("rate_warning"):
            level, message = 1, st["loop"]["rate_warning"]
        flat = {}
        for k, v in st.items():
            if isinstance(v, dict):
                flat.update({f"{k}.{a}": str(x) for a, x in v.items()})
            else:
                flat[k] = str(v)
        self.pub_diag.publish(diagnostic_array(self, "teleop", level, message, flat))

    def close(self) -> None:
        self.session.close()
        if self.headsets is not None:
            self.headsets.stop()
        if self.viz is not None:
            self.viz.close()


def main(argv=None) -> int:
    return spin(TeleopNode)


if __name__ == "__main__":
    sys.exit(main())
