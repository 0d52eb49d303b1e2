"""Scripted demonstrations in the sim cell: waypoints of the grasp centre + damped-least-squares IK
(``ate_description.ik.PinocchioIK``, the one IK, the teleop's too), streamed at 20 Hz like a teleoperator.

A script is a list of phases; in a phase each arm runs its own list of steps at the same time (the right arm
moves the bun while the left arm puts the lid aside) and the phase ends when both are done. Targets are
functions of the cell, evaluated when a step starts, so the script follows the randomised object poses (the
demonstrator sees the true poses, as a person looking at the table does).

What it streams is what a policy trained on it will stream, through the drivers' safety layer: every joint target
is within ``STEP_MARGIN`` of the layer's per-tick step cap (``ate_description.limits``, drivers.yaml's ``safety``)
of the previous one (an IK solution that jumps, or the final snap to the home posture, is approached over several
ticks instead), and an episode starts with ``START_STILL_S`` at rest: a policy's first chunk arrives a few ticks
after its observation (inference latency) and its first targets are judged against the measured, unmoved arm, so
they must not be several ticks into the motion.

``run_episode(cell, task, on_tick=...)`` drives one episode; ``on_tick(obs_cell, action)`` is called every tick
BEFORE the action is applied, which is what a recorder needs (observation, then the action taken from it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ate_description import contract
from ate_description import kinematics as kin
from ate_description.ik import IKConfig, PinocchioIK
from ate_sim import scenes as sc
from ate_sim.cell import HOME_Q, SimCell, tcp_offset

R_DOWN = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
"""Gripper pointing down, fingers closing along the world y axis (the lid's handle runs along x)."""

FAST_M_S = 0.35     # free-space moves
SLOW_M_S = 0.10     # approach and retreat near objects
CLEAR_M = 0.10      # approach height above a grasp or place
TIP_BELOW_TCP_M = 0.025  # fingertips reach this far below the grasp centre
GRASP_ABOVE_BUN_M = 0.008
"""Grasp the bun a little above its middle: the fingertips clear the plate or steamer floor."""
KNOB_TCP_ABOVE_LID_M = sc.LID_HH + TIP_BELOW_TCP_M + 0.004
"""Grasp centre above the lid's centre when holding its handle: fingertips just clear the lid's top."""

STEP_MARGIN = 0.8
"""Joint targets move at most this fraction of the safety layer's per-tick step cap (room for rounding and for
a policy's imitation error)."""
START_STILL_S = 0.5
"""Each episode begins with the arms still this long (10 ticks: more than the runtime's inference delay)."""

Target = Callable[[SimCell], np.ndarray]


@dataclass
class Step:
    kind: str                      # "move" | "grip" | "home"
    target: Target | None = None   # world position of the grasp centre (move)
    speed_m_s: float = FAST_M_S
    grip: float = 1.0              # opening fraction (grip)
    duration_s: float = 0.0        # (grip)


@dataclass
class _ArmRun:
    steps: list[Step]
    i: int = 0
    t0: float = 0.0
    start: np.ndarray | None = None
    goal: np.ndarray | None = None
    q_goal: np.ndarray | None = None
    progress_m: float = 0.0
    settle: int = 0
    done: bool = False


@dataclass
class Demonstrator:
    """Turns a script into per-tick joint and gripper targets for both arms."""

    cell: SimCell
    q_cmd: dict = field(default_factory=dict)
    grip_cmd: dict = field(default_factory=dict)
    max_step_rad: float | None = None   # None: drivers.yaml's safety cap x STEP_MARGIN

    def __post_init__(self):
        if self.max_step_rad is None:
            from ate_description.limits import load_safety

            self.max_step_rad = STEP_MARGIN * load_safety().max_step_rad
        self.q_goal: dict = {}
        for arm in contract.ARMS:
            self.q_cmd[arm] = self.cell.setpoint(arm)
            self.q_goal[arm] = self.q_cmd[arm].copy()
            self.grip_cmd[arm] = 1.0
        self._base_inv = {arm: np.linalg.inv(self.cell.base_pose(arm)) for arm in contract.ARMS}
        self._tool = tcp_offset()
        # The one IK of the stack (the teleop's); a scripted target far from the seed may take more iterations
        # than a 20 Hz teleop step.
        self._ik = PinocchioIK(IKConfig(max_iter=60))

    def ik(self, arm: str, p_world: np.ndarray, q_seed: np.ndarray) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = R_DOWN
        T[:3, 3] = p_world
        return self._ik.solve(self._base_inv[arm] @ T, q_seed, tool=self._tool).q

    def tcp_of(self, arm: str, q: np.ndarray) -> np.ndarray:
        return (np.linalg.inv(self._base_inv[arm]) @ kin.fk(q) @ self._tool)[:3, 3]

    def _tick_arm(self, arm: str, run: _ArmRun, dt: float) -> None:
        while not run.done:
            if run.i >= len(run.steps):
                run.done = True
                return
            st = run.steps[run.i]
            if run.start is None:  # step begins
                run.t0 = self.cell.sim_time
                run.start = self.tcp_of(arm, self.q_cmd[arm])
                run.progress_m, run.settle = 0.0, 0
                if st.kind == "move":
                    run.goal = np.asarray(st.target(self.cell), float)
                elif st.kind == "home":
                    run.goal = self.tcp_of(arm, HOME_Q)
                elif st.kind == "grip":
                    self.grip_cmd[arm] = st.grip
            if st.kind == "grip":
                if self.cell.sim_time - run.t0 >= st.duration_s:
                    self._next(run)
                    continue
                return
            # move / home: the grasp centre slides along a straight line at the step's speed
            dist = float(np.linalg.norm(run.goal - run.start))
            run.progress_m = min(dist, run.progress_m + st.speed_m_s * dt)
            p = run.goal if dist < 1e-9 else run.start + (run.goal - run.start) * (run.progress_m / dist)
            if st.kind == "home" and run.progress_m >= dist:
                self._command(arm, HOME_Q.copy())
            else:
                self._command(arm, self.ik(arm, p, self.q_cmd[arm]))
            if run.progress_m >= dist:
                # Wait for the command to reach the goal (step cap) and the arm to arrive (servo lag, acceleration
                # limit) before the next step.
                err = np.max(np.abs(self.cell.joint_positions(arm) - self.q_cmd[arm]))
                lag = np.max(np.abs(self.q_goal[arm] - self.q_cmd[arm]))
                run.settle += 1
                if (err < 3e-3 and lag < 1e-9) or run.settle > 40:
                    self._next(run)
            return

    def _command(self, arm: str, q_goal: np.ndarray) -> None:
        """Move the joint command towards ``q_goal`` by at most the step cap per tick."""
        self.q_goal[arm] = np.asarray(q_goal, float)
        step = np.clip(self.q_goal[arm] - self.q_cmd[arm], -self.max_step_rad, self.max_step_rad)
        self.q_cmd[arm] = self.q_cmd[arm] + step

    @staticmethod
    def _next(run: _ArmRun):
        run.i += 1
        run.start = None

    def run(self, phases: list[dict[str, list[Step]]], on_tick=None, max_ticks: int = 2000,
            still_s: float = START_STILL_S) -> int:
        """Execute ``phases`` after ``still_s`` at rest; returns the number of 20 Hz ticks used."""
        dt = contract.PERIOD_S
        ticks = 0
        for _ in range(int(round(still_s / dt))):
            self._send(on_tick, dt)
            ticks += 1
        for phase in phases:
            runs = {arm: _ArmRun(list(phase.get(arm, []))) for arm in contract.ARMS}
            while not all(r.done for r in runs.values()):
                for arm in contract.ARMS:
                    self._tick_arm(arm, runs[arm], dt)
                self._send(on_tick, dt)
                ticks += 1
                if ticks >= max_ticks:
                    return ticks
        return ticks

    def _send(self, on_tick, dt: float) -> None:
        """One tick: the recorder sees the observation and the action, then the action goes out."""
        if on_tick is not None:
            on_tick(self.cell, self.action())
        for arm in contract.ARMS:
            self.cell.set_joint_targets(arm, self.q_cmd[arm])
            self.cell.set_gripper(arm, self.grip_cmd[arm])
        self.cell.step(dt)

    def action(self) -> np.ndarray:
        a = np.zeros(contract.ACTION_DIM, dtype=np.float32)
        for arm in contract.ARMS:
            s = contract.arm_slice(arm)
            a[s.start:s.start + contract.N_ARM_JOINTS] = self.q_cmd[arm]
            a[s.start + contract.N_ARM_JOINTS] = self.grip_cmd[arm]
        return a


# --- script building blocks --------------------------------------------------------------------------------------

def _at(name: str, dz: float) -> Target:
    return lambda cell: sc.body_pos(cell, name) + np.array([0.0, 0.0, dz])


def _place(place: Callable[[SimCell], np.ndarray], z: float) -> Target:
    return lambda cell: np.array([*place(cell)[:2], z])


def pick(obj: str, grasp_dz: float) -> list[Step]:
    """Approach from above, descend, close, lift."""
    return [Step("move", _at(obj, grasp_dz + CLEAR_M)),
            Step("move", _at(obj, grasp_dz), SLOW_M_S),
            Step("grip", grip=0.0, duration_s=0.7),
            Step("move", _at(obj, grasp_dz + CLEAR_M), SLOW_M_S)]


def place(where: Callable[[SimCell], np.ndarray], tcp_z: float, release: float = 1.0) -> list[Step]:
    """Carry above ``where``, descend to ``tcp_z``, open to ``release``, retreat upwards."""
    return [Step("move", _place(where, tcp_z + CLEAR_M)),
            Step("move", _place(where, tcp_z), SLOW_M_S),
            Step("grip", grip=release, duration_s=0.5),
            Step("move", _place(where, tcp_z + CLEAR_M), SLOW_M_S)]


def _scene_place(name: str):
    return lambda cell: np.array(cell.scene.places[name])


def _fixed(xy):
    return lambda cell: np.asarray(xy, float)


BUN_GRASP_DZ = GRASP_ABOVE_BUN_M
MAX_HANDOVER_JITTER_M = sc.PLATE_R - sc.BUN_R - 0.01
"""The bun put down this far off the plate's centre still lies on it, a centimetre in from its rim."""
PLACE_DROP_M = 0.004  # release objects this far above their resting height


def _bun_tcp_z(rest_z: float) -> float:
    return rest_z + GRASP_ABOVE_BUN_M + PLACE_DROP_M


def _lid_tcp_z(rest_z: float) -> float:
    return rest_z + KNOB_TCP_ABOVE_LID_M + PLACE_DROP_M


def cook_bun_script(handover_offset=(0.0, 0.0)) -> list[dict[str, list[Step]]]:
    """``handover_offset``: where on the left plate (m from its centre) the right arm puts the bun down for the
    left arm's grasp (see :func:`run_episode`'s ``handover_jitter_m``)."""
    lid_aside = _fixed(sc.LID_ASIDE)
    plate = _scene_place("plate_left")
    handover = lambda cell: plate(cell) + np.asarray(handover_offset, float)  # noqa: E731
    return [
        {"right": pick("bun", BUN_GRASP_DZ) + place(handover, _bun_tcp_z(sc.BUN_ON_PLATE_Z)) + [Step("home")],
         "left": pick("lid", KNOB_TCP_ABOVE_LID_M) + place(lid_aside, _lid_tcp_z(sc.LID_HH))},
        {"left": pick("bun", BUN_GRASP_DZ)
            + place(_scene_place("steamer"), _bun_tcp_z(sc.BUN_IN_STEAMER_Z), release=0.7)},
        {"left": pick("lid", KNOB_TCP_ABOVE_LID_M) + place(_scene_place("steamer"), _lid_tcp_z(sc.LID_ON_STEAMER_Z))
            + [Step("home")]},
    ]


def pick_bun_script() -> list[dict[str, list[Step]]]:
    lid_aside = _fixed(sc.LID_ASIDE)
    return [
        {"left": pick("lid", KNOB_TCP_ABOVE_LID_M) + place(lid_aside, _lid_tcp_z(sc.LID_HH))},
        {"left": pick("bun", BUN_GRASP_DZ) + place(_scene_place("plate_left"), _bun_tcp_z(sc.BUN_ON_PLATE_Z))},
        {"left": pick("lid", KNOB_TCP_ABOVE_LID_M) + place(_scene_place("steamer"), _lid_tcp_z(sc.LID_ON_STEAMER_Z))
            + [Step("home")]},
    ]


def lift_lid_script() -> list[dict[str, list[Step]]]:
    return [{"left": pick("lid", KNOB_TCP_ABOVE_LID_M) + place(_fixed(sc.LID_ASIDE), _lid_tcp_z(sc.LID_HH))
             + [Step("home")]}]


def lid_on_plate_script() -> list[dict[str, list[Step]]]:
    to_plate = place(_scene_place("plate_left"), _lid_tcp_z(sc.LID_ON_PLATE_Z))
    return [{"left": pick("lid", KNOB_TCP_ABOVE_LID_M) + to_plate + [Step("home")]}]


def lid_aside_far_script() -> list[dict[str, list[Step]]]:
    return [{"left": pick("lid", KNOB_TCP_ABOVE_LID_M) + place(_fixed(sc.LID_ASIDE_FAR), _lid_tcp_z(sc.LID_HH))
             + [Step("home")]}]


SCRIPTS = {"cook_bun": cook_bun_script, "pick_bun": pick_bun_script, "lift_lid": lift_lid_script,
           "lid_on_plate": lid_on_plate_script, "lid_aside_far": lid_aside_far_script}


def cook_bun_takeover_script() -> list[dict[str, list[Step]]]:
    """The rest of cook_bun once the bun lies on the left plate and the lid is set down: the right arm goes home
    while the left arm grasps the bun from wherever it lies and puts it into the steamer, then the lid back on."""
    phases = cook_bun_script()
    return [{"right": [Step("home")], "left": list(phases[1]["left"])}, *phases[2:]]


TAKEOVER = {"cook_bun": (("bun on the left plate", "lid set down"), cook_bun_takeover_script)}
"""Tasks whose demonstrator can take over from a policy mid-episode (:func:`take_over`): the stages (names of
``Scene.stages``) that must have been reached, and the script of what is left from there."""


@dataclass
class EpisodeResult:
    success: bool
    ticks: int


HANDOVER_TASKS = ("cook_bun",)
"""Tasks where one arm puts an object down for the other to grasp (``handover_jitter_m`` applies)."""


def check_handover_jitter(task: str, jitter_m: float) -> None:
    """A ``ValueError`` naming the limit when ``task`` cannot take a handover jitter of ``jitter_m``."""
    if jitter_m and task not in HANDOVER_TASKS:
        raise ValueError(f"{task} has no handover to jitter (tasks with one: {list(HANDOVER_TASKS)})")
    if not 0.0 <= jitter_m <= MAX_HANDOVER_JITTER_M:
        raise ValueError(f"handover jitter must lie in [0, {MAX_HANDOVER_JITTER_M * 100:g}] cm (the bun must stay "
                         f"on the plate), got {jitter_m * 100:g} cm")


def handover_offset(seed: int | None, jitter_m: float) -> np.ndarray:
    """Where (m from the plate's centre) the demonstrator puts the handed-over object down: uniform in a disc of
    radius ``jitter_m``, drawn from ``seed`` apart from the scene's own randomisation."""
    if jitter_m <= 0:
        return np.zeros(2)
    rng = np.random.default_rng([0 if seed is None else int(seed), 0x4A17])
    a, r = rng.uniform(0.0, 2.0 * np.pi), jitter_m * np.sqrt(rng.uniform())
    return np.array([r * np.cos(a), r * np.sin(a)])


def run_episode(cell: SimCell, seed: int | None = None, on_tick=None, max_ticks: int = 2000,
                handover_jitter_m: float = 0.0) -> EpisodeResult:
    """Reset ``cell`` (its task's scene, randomised by ``seed``) and demonstrate the task once.

    ``handover_jitter_m`` (cook_bun): the right arm puts the bun down anywhere within this distance of the left
    plate's centre instead of on it, so that the left arm's grasp of it has to find where it lies. Without it every
    demonstration hands the bun over at the plate's centre and a policy can learn that grasp from the plate's
    position alone; its own right arm, off by a centimetre or two, then leaves the bun where that grasp misses."""
    if cell.scene is None:
        raise ValueError("the cell has no task scene; build it with SimCell(task=...)")
    if cell.scene.name not in SCRIPTS:
        raise ValueError(f"no scripted demonstrator for {cell.scene.name!r}; available: {sorted(SCRIPTS)}")
    check_handover_jitter(cell.scene.name, handover_jitter_m)
    cell.reset(seed)
    cell.step(sc.SETTLE_S)  # let objects settle on their supports before the first observation
    demo = Demonstrator(cell)
    script = SCRIPTS[cell.scene.name]
    phases = script(handover_offset(seed, handover_jitter_m)) if handover_jitter_m else script()
    ticks = demo.run(phases, on_tick=on_tick, max_ticks=max_ticks)
    cell.step(0.3)  # let the released objects come to rest before judging
    return EpisodeResult(cell.scene.success(cell), ticks)


def take_over(cell: SimCell, on_tick=None, max_ticks: int = 2000) -> EpisodeResult:
    """Demonstrate the rest of the cell's task from wherever a policy left the cell (DAgger-style): no reset, no
    time at rest; the joint commands start at the arms' current setpoints and both grippers are commanded open on
    the first tick. Only for tasks in :data:`TAKEOVER`, once its stages were reached (the caller's judgement)."""
    if cell.scene is None or cell.scene.name not in TAKEOVER:
        raise ValueError(f"no takeover script for {getattr(cell.scene, 'name', None)!r}; "
                         f"available: {sorted(TAKEOVER)}")
    _, script = TAKEOVER[cell.scene.name]
    demo = Demonstrator(cell)
    ticks = demo.run(script(), on_tick=on_tick, max_ticks=max_ticks, still_s=0.0)
    cell.step(0.3)
    return EpisodeResult(cell.scene.success(cell), ticks)
