"""The simulated cell as the driver graph sees it, without ROS: one cell, the real driver logic in front of it.

``robot:=sim`` runs one process (``ate_sim.sim_node``) instead of one per device, because every device must live
in the same simulated world (a camera has to see the arm move). That process holds a :class:`SimRunner`:

* the arms and grippers go through the very drivers the hardware uses (``ArmDriver`` / ``GripperDriver``: the
  safety layer, watchdog, e-stop, refusal counting), with the sim backends behind them and *simulated* time as
  their clock, so a command the real driver would refuse is refused here too;
* the cameras are the sim backends, rendered at the configured size;
* ``step()`` advances simulated time (lockstep) and ``advance_to_wall()`` keeps pace with the wall clock
  (realtime);
* the cell supervisor (``ate_drivers.supervisor.CellSupervisor``) lives here, in the process of both arms: a
  refusal, fault or stale command on either arm holds both (``safety.coupling: coupled``) at once, without a
  message on the way; commands to a held arm are refused (``held``) until :meth:`resume` (or a new episode,
  :meth:`reset`: a fresh world). ``ate_policy eval`` reads it (a hold fails the episode); the sim node also
  publishes its events for the cell's supervisor and follows ``/cell/hold``.

Everything it reports is stamped with simulated time.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from ate_drivers.arm_driver import ArmDriver
from ate_drivers.config import DriversConfig
from ate_drivers.gripper_driver import GripperDriver
from ate_drivers.interfaces import ArmState, Frame, GripperState
from ate_drivers.safety import EStop
from ate_drivers.supervisor import CellSupervisor, DriverWatch, HoldEvent, apply_holds, gate
from ate_description import contract
from ate_sim.backends import SimArm, SimCamera, SimGripper
from ate_sim.cell import SimCell

MAX_REALTIME_STEP_S = 0.1
"""Realtime: the most simulated time one catch-up step covers (a stalled process must not make the arms jump)."""


@dataclass
class CellReading:
    t_s: float                              # simulated time of the reading
    arms: dict[str, ArmState]               # arm -> joints, flange pose, wrench
    grippers: dict[str, GripperState]


class SimRunner:
    def __init__(self, cfg: DriversConfig, cell: SimCell | None = None, cameras=contract.CAMERA_NAMES):
        s = cfg.sim
        self.cfg = cfg
        self.cell = cell or SimCell(task=s.task or None, seed=s.seed, clock="lockstep")
        self.estop = EStop()
        clock = self.sim_time
        self.arms = {arm: ArmDriver(arm, SimArm(self.cell, arm), cfg.safety, self.estop, cfg.reconnect, clock=clock)
                     for arm in contract.ARMS}
        self.grippers = {arm: GripperDriver(arm, SimGripper(self.cell, arm), cfg.safety, self.estop, clock=clock)
                         for arm in contract.ARMS}
        self.cameras = {name: SimCamera(self.cell, name, (s.image_height, s.image_width)) for name in cameras}
        self.supervisor = CellSupervisor(cfg.safety.coupling, clock=clock, name="sim")
        apply_holds(self.supervisor, [*self.arms.items(), *self.grippers.items()])
        self._watches = [DriverWatch("arm", a, d) for a, d in self.arms.items()] + \
            [DriverWatch("gripper", a, d) for a, d in self.grippers.items()]
        self._event_listeners: list = []
        self.ticks = 0
        self._wall_anchor: tuple[float, float] | None = None
        self._t_offset = 0.0  # simulated time before the last reset: time never runs backwards for listeners

    def sim_time(self) -> float:
        """Simulated time since the runner started (continues across episode resets)."""
        return self._t_offset + self.cell.sim_time

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> CellReading:
        """Connect the sim devices through their drivers and open the cameras (fails here if GL cannot render)."""
        for cam in self.cameras.values():
            cam.open()
        reading = self.read()
        missing = [a for a, st in reading.arms.items() if st is None]
        if missing:
            raise RuntimeError(f"sim arms {missing} did not connect: {[self.arms[a].last_error for a in missing]}")
        return reading

    def reset(self, seed: int | None = None) -> CellReading:
        """A fresh episode: home posture, objects re-randomised; commands judged afresh. Time goes on."""
        for drv in self.arms.values():
            drv.hold()  # nothing deferred from the last episode may reach the new one
        self.supervisor.clear()   # a new episode is a fresh world: the last one's hold does not carry over
        with self.cell.lock:
            self._t_offset += self.cell.sim_time
            self.cell.reset(seed)
        for cam in self.cameras.values():
            cam.forget_frame()
        self.ticks = 0
        self._wall_anchor = None
        return self.read()

    def close(self) -> None:
        for drv in self.arms.values():
            drv.close()
        self.cell.close()

    # --- reading ---------------------------------------------------------------------------------------------
    def read(self) -> CellReading:
        """Joints, flange poses, wrenches and gripper states through the drivers, stamped :meth:`sim_time`."""
        t = self.sim_time()
        arms = {arm: drv.tick(read_wrench=True) for arm, drv in self.arms.items()}
        grippers = {arm: drv.tick() for arm, drv in self.grippers.items()}
        for st in (*arms.values(), *grippers.values()):
            if st is not None:
                st.stamp_s = t
        self.poll()
        return CellReading(t, arms, grippers)

    def render(self, names=None) -> dict[str, Frame]:
        """The cameras' frames of this moment, stamped :meth:`sim_time`."""
        t = self.sim_time()
        return {n: dataclasses.replace(self.cameras[n].read_latest(), capture_time_s=t)
                for n in (names or self.cameras)}

    def refusals(self) -> dict[str, int]:
        """Commands the drivers' safety layer refused so far, by ``arm:<reason>`` / ``gripper:<reason>``."""
        out: dict[str, int] = {}
        for kind, drivers in (("arm", self.arms), ("gripper", self.grippers)):
            for drv in drivers.values():
                for reason, n in drv.safety.refusals.items():
                    out[f"{kind}:{reason}"] = out.get(f"{kind}:{reason}", 0) + n
        return out

    def success(self) -> bool | None:
        """The task's success check, None without a task scene."""
        scene = self.cell.scene
        if scene is None:
            return None
        with self.cell.lock:
            return bool(scene.success(self.cell))

    # --- commands (through the drivers' safety layer) --------------------------------------------------------
    def command_arm(self, arm: str, names, positions, stamp_s: float | None) -> bool:
        drv = self.arms[arm]
        ok = gate(self.supervisor, arm, drv.safety) and drv.on_command(names, positions, stamp_s)
        self.poll()
        return ok

    def command_gripper(self, arm: str, position: float, force: float = 1.0, speed: float = 1.0) -> bool:
        drv = self.grippers[arm]
        ok = gate(self.supervisor, arm, drv.safety) and drv.on_command(position, force, speed)
        self.poll()
        return ok

    # --- the cell supervisor ---------------------------------------------------------------------------------
    def poll(self) -> list[HoldEvent]:
        """What the drivers decided since the last poll, as hold events: the supervisor holds on each."""
        out = []
        t = self.sim_time()
        for w in self._watches:
            for ev in w.poll(t):
                self.supervisor.report(ev)
                out.append(ev)
                for fn in list(self._event_listeners):
                    fn(ev)
        return out

    def add_event_listener(self, fn) -> None:
        """``fn(HoldEvent)`` for each event the drivers raise (the sim node publishes them on /cell/events)."""
        self._event_listeners.append(fn)

    def resume(self, blocked_by: str = "") -> tuple[bool, str]:
        """The operator's explicit resume (``/cell/resume`` reaches it through the cell's supervisor)."""
        return self.supervisor.resume(blocked_by or ("e-stop latched: reset it first" if self.estop.latched else ""))

    # --- time ------------------------------------------------------------------------------------------------
    def step(self, duration_s: float = contract.PERIOD_S) -> float:
        """Lockstep: advance simulated time by one tick (or ``duration_s``)."""
        for drv in self.arms.values():
            drv.tick()  # a target deferred by the driver goes out before time moves on
        self.cell.step(duration_s)
        self.ticks += 1
        return self.sim_time()

    def advance_to_wall(self, now_wall_s: float | None = None) -> float:
        """Realtime: step the physics to where the wall clock says simulated time should be."""
        now = time.monotonic() if now_wall_s is None else now_wall_s
        if self._wall_anchor is None:
            self._wall_anchor = (now, self.sim_time())
        wall0, sim0 = self._wall_anchor
        behind = (sim0 + (now - wall0)) - self.sim_time()
        if behind > MAX_REALTIME_STEP_S:  # this process stalled: drop the lost time rather than leap
            self._wall_anchor = (now, self.sim_time())
            behind = MAX_REALTIME_STEP_S
        if behind >= self.cell.model.opt.timestep:
            self.cell.step(behind)
        return self.sim_time()

    # --- diagnostics -----------------------------------------------------------------------------------------
    def diagnostics(self) -> list[tuple[str, int, str, dict[str, str]]]:
        out = []
        for arm, drv in self.arms.items():
            out.append((f"arm/{arm}", *drv.diagnostics()))
        for arm, drv in self.grippers.items():
            out.append((f"gripper/{arm}", *drv.diagnostics()))
        for i, (name, level, message, values) in enumerate(out):
            arm = name.split("/")[1]
            values.update({"cell_held": str(self.supervisor.held(arm)), "cell_hold_reason": self.supervisor.reason()})
            if self.supervisor.held(arm) and level < 2:
                out[i] = (name, 2, f"cell hold: {self.supervisor.reason()}; call /cell/resume", values)
        return out
