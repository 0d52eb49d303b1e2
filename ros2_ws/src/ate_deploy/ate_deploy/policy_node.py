"""Policy node: the ATE-fine-tuned pi0 (any LeRobot policy) drives both arms and grippers at 20 Hz.

Thin: the task YAML (``ate_policy.runtime.load_task``), the checkpoint (``load_policy``), the 20 Hz runtime with
asynchronous chunk inference (``PolicyRuntime``) and the stream <-> contract conversions
(``ate_policy.runtime.io``) hold every decision; this node wires them to the cell (``CellClient``: newest camera
frames and joint/gripper states in, ``/<arm>/joint_command`` and ``/<arm>/gripper/command`` out, a 20 Hz timer
or the lockstep ticks of the sim cell).

Services (std_srvs/Trigger): ``/policy/start`` (start or resume an episode), ``/policy/pause`` (hold the arms,
drop the plan), ``/policy/reset`` (end the episode). ``/estop`` latched: the episode ends at once and no target is
published until the e-stop is reset and ``/policy/start`` is called again. ``/diagnostics``: ``policy`` with the
runtime's counters and timing (inference latency, queue depth, missed ticks, holds by reason).

Start: with ``autostart`` (the sim's default) the first episode starts once the policy is warm; otherwise (the
real robot: the bring-up refuses autostart there) the arms do not move until an operator calls ``/policy/start``
(``python -m ate_deploy.operator`` is a keyboard prompt for it).

Cell hold: the node follows ``/cell/hold`` (the cell supervisor). A hold flushes every chunk and holds the
runtime; it resumes only when the cell was resumed (``/cell/resume``) *and* ``/policy/start`` is called. The
node's own escalation, an inference call past its deadline (the runtime abandons it), goes to the supervisor as
a hold event on ``/cell/events``, so both arms hold and the operator sees why.
"""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from ate_drivers.nodes.cell_client import CellClient
from ate_drivers.nodes.common import ESTOP_QOS, desc, diagnostic_array, follow_cell_hold, report_cell_event, spin
from ate_policy.runtime.io import observation_from_streams, targets_from_action


class PolicyNode(Node):
    def __init__(self):
        super().__init__("policy")
        from ate_policy.runtime import PolicyRuntime, load_task
        from ate_policy.runtime.policy import load_policy

        self.declare_parameter("task", "cook_bun", desc("tasks/<task>.yaml by name, or a YAML path"))
        self.declare_parameter("checkpoint", "", desc("policy checkpoint; empty: the task YAML's"))
        self.declare_parameter("device", "", desc("cuda | cpu | auto; empty: the task YAML's"))
        self.declare_parameter("robot", "real", desc("real | emulated | sim (informational)"))
        self.declare_parameter("config_file", "", desc("the drivers YAML whose safety limits (with the task's "
                                                       "overrides) the runtime's step limiter stays inside"))
        self.declare_parameter("lockstep", False, desc("tick on the sim cell's lockstep observations"))
        self.declare_parameter("viz", False, desc("log the cell to Rerun (docs/visualization.md)"))
        self.declare_parameter("viz_mode", "native", desc("native (a viewer window) | web (localhost) | off"))
        self.declare_parameter("viz_rrd", "", desc("also save the Rerun recording to this .rrd file"))
        self.declare_parameter("autostart", False, desc("start the first episode once warm (sim); else an "
                                                        "operator calls /policy/start"))
        p = {k: self.get_parameter(k).value for k in ("task", "checkpoint", "device", "lockstep", "autostart",
                                                       "robot")}
        if p["autostart"] and p["robot"] == "real":
            from ate_description.errors import UserError
            raise UserError("autostart with robot:=real: the arms must not move without an operator; call "
                            "/policy/start (python -m ate_deploy.operator) once the cell is ready")
        over: dict = {"runtime": {"clock": "lockstep" if p["lockstep"] else "realtime"}}
        if p["checkpoint"]:
            over["checkpoint"] = p["checkpoint"]
        if p["device"]:
            over["device"] = {"device": p["device"]}
        self.task = load_task(p["task"], over)
        log = self.get_logger()
        log.info(f"task {self.task.name}: loading {self.task.checkpoint}")
        policy = load_policy(self.task.checkpoint, self.task.device, image_hw=self.task.image_hw,
                             instruction=self.task.instruction, blending=self.task.runtime.blending)
        from ate_description.limits import load_safety

        safety = load_safety(self.get_parameter("config_file").value or None, self.task.safety)
        self.runtime = PolicyRuntime(policy, self.task.runtime, instruction=self.task.instruction, safety=safety)
        warm = self.runtime.warmup()
        log.info(f"warm: {len(warm)} inference runs, last {warm[-1] * 1e3:.0f} ms" if warm else "no warm-up")
        self.viz = None
        if self.get_parameter("viz").value:   # Rerun, off the control path (ate_policy.viz)
            from ate_policy.viz.live import PolicyViz
            self.viz = PolicyViz(self.runtime, self.get_parameter("viz_mode").value,
                                 self.get_parameter("viz_rrd").value)
            log.info(f"viz: {self.viz.web_url or self.get_parameter('viz_mode').value}")
        self.autostart = bool(p["autostart"])
        self.estopped = False
        self.cell_hold: dict = {}      # the cell supervisor's newest state
        self.escalated = False         # this node's own hold event was sent (once per hold)
        self.last_result = None
        self.client = CellClient(self, self.on_tick, consumer="policy", lockstep=bool(p["lockstep"]),
                                 rate_hz=self.task.runtime.rate_hz)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Bool, "/estop", self.on_estop, ESTOP_QOS)
        follow_cell_hold(self, self.on_cell_hold)
        for name, fn in (("start", self.on_start), ("pause", self.on_pause), ("reset", self.on_reset)):
            self.create_service(Trigger, f"/policy/{name}", fn)
        self.create_timer(1.0, self.on_diagnostics)

    # --- the tick --------------------------------------------------------------------------------------------
    def on_tick(self, now_s: float) -> None:
        if self.estopped:
            return
        snap = self.client.snapshot()
        if self.autostart and self.runtime.state == "idle" and snap.complete():
            self.autostart = False
            self.runtime.start()
            self.get_logger().info("episode started")
        obs = observation_from_streams({a: (s.value, s.stamp_s) for a, s in snap.joints.items()},
                                       {a: (s.value, s.stamp_s) for a, s in snap.grippers.items()},
                                       {c: (s.value, s.stamp_s) for c, s in snap.images.items()})
        self.last_result = res = self.runtime.tick(obs, now_s)
        if self.viz is not None:
            self.viz.tick(res, obs, {a: s.value for a, s in snap.wrenches.items()})
        if res.reason == "inference_deadline" and not self.escalated:
            # the runtime abandoned a hung inference call: the cell holds both arms, the operator is told why
            from ate_drivers.supervisor import HoldEvent
            self.escalated = True
            report_cell_event(self, HoldEvent("policy", None, "inference_deadline", res.detail, now_s))
        if res.action is None:
            return
        for arm, (q, opening) in targets_from_action(res.action).items():
            self.client.send_arm(arm, q)
            self.client.send_gripper(arm, opening)

    # --- episode control -------------------------------------------------------------------------------------
    def on_estop(self, msg: Bool) -> None:
        if msg.data and not self.estopped:
            self.estopped = True
            self.runtime.reset()
            self.get_logger().error("e-stop: episode ended, no targets until reset and /policy/start")
            if self.viz is not None:
                self.viz.event("estop", "e-stop latched: episode ended")
        elif not msg.data and self.estopped:
            self.estopped = False
            self.get_logger().warning("e-stop reset: call /policy/start to begin an episode")

    def on_cell_hold(self, state: dict) -> None:
        self.cell_hold = state
        if state.get("held"):
            if self.runtime.held is None or self.runtime.held[0] != "held":
                self.runtime.hold("held", state.get("reason", "the cell holds"))
                self.get_logger().error(f"cell hold: {state.get('reason', '')}; chunks flushed, no targets until "
                                        "/cell/resume and /policy/start")

    def on_start(self, req, resp):
        if self.estopped:
            resp.success, resp.message = False, "e-stop latched: reset it first"
            return resp
        if self.cell_hold.get("held"):
            resp.success, resp.message = False, f"the cell holds ({self.cell_hold.get('reason', '')}): call " \
                                                 "/cell/resume first"
            return resp
        self.escalated = False
        if self.runtime.held is not None:
            self.runtime.resume()   # the operator's explicit resume, after the cell resumed
        if self.runtime.state == "paused":
            self.runtime.resume()
        else:
            self.runtime.start()
        resp.success, resp.message = True, f"running ({self.task.name})"
        return resp

    def on_pause(self, req, resp):
        self.runtime.pause()
        resp.success, resp.message = True, "paused: arms hold"
        return resp

    def on_reset(self, req, resp):
        self.runtime.reset()
        resp.success, resp.message = True, "episode ended"
        return resp

    def on_diagnostics(self) -> None:
        level, message, values = self.runtime.diagnostics()
        values["estop"] = str(self.estopped)
        values["task"] = self.task.name
        if self.viz is not None:
            values["viz_dropped"] = str(self.viz.stats()["dropped"])
        values["cell_held"] = str(bool(self.cell_hold.get("held")))
        values["cell_hold_reason"] = str(self.cell_hold.get("reason", ""))
        if self.estopped:
            level, message = 2, "e-stop latched"
        self.pub_diag.publish(diagnostic_array(self, "policy", level, message, values))

    def close(self) -> None:
        self.runtime.close()
        if self.viz is not None:
            self.viz.close()


def main(argv=None) -> int:
    return spin(PolicyNode)


if __name__ == "__main__":
    sys.exit(main())
