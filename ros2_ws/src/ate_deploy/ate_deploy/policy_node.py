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
"""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from ate_drivers.nodes.cell_client import CellClient
from ate_drivers.nodes.common import ESTOP_QOS, desc, diagnostic_array, spin
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
        self.declare_parameter("lockstep", False, desc("tick on the sim cell's lockstep observations"))
        self.declare_parameter("autostart", True, desc("start the first episode once warm"))
        p = {k: self.get_parameter(k).value for k in ("task", "checkpoint", "device", "lockstep", "autostart")}
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
        self.runtime = PolicyRuntime(policy, self.task.runtime, instruction=self.task.instruction)
        warm = self.runtime.warmup()
        log.info(f"warm: {len(warm)} inference runs, last {warm[-1] * 1e3:.0f} ms" if warm else "no warm-up")
        self.autostart = bool(p["autostart"])
        self.estopped = False
        self.last_result = None
        self.client = CellClient(self, self.on_tick, consumer="policy", lockstep=bool(p["lockstep"]),
                                 rate_hz=self.task.runtime.rate_hz)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Bool, "/estop", self.on_estop, ESTOP_QOS)
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
        elif not msg.data and self.estopped:
            self.estopped = False
            self.get_logger().warning("e-stop reset: call /policy/start to begin an episode")

    def on_start(self, req, resp):
        if self.estopped:
            resp.success, resp.message = False, "e-stop latched: reset it first"
            return resp
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
        if self.estopped:
            level, message = 2, "e-stop latched"
        self.pub_diag.publish(diagnostic_array(self, "policy", level, message, values))

    def close(self) -> None:
        self.runtime.close()


def main(argv=None) -> int:
    return spin(PolicyNode)


if __name__ == "__main__":
    sys.exit(main())
