"""Graph descriptions of the cell (docs/architecture.md (bring-up graph)): pure Python, no launch import.

``drivers(args)``, ``policy(args)`` and ``teleop_dual(args)`` return the nodes of a graph as :class:`NodeSpec`
(package, executable, name, namespace, parameters, remappings). The launch files map them to ``launch_ros``
Node actions (``ate_bringup.launch_adapter``) and ``ate_bringup.launcher`` starts the same specs as processes in
the integration tests, so what CI runs is what ``ros2 launch`` runs. ``LAUNCH_ARGS`` holds each graph's launch
arguments with their defaults and descriptions, for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ate_description.config import config_dir  # noqa: F401  (the bring-up's config folder)
from ate_description.contract import ARMS
from ate_description.limits import default_drivers_config as _drivers_yaml

ROBOT_MODES = ("real", "emulated", "sim")

# graph -> launch argument -> (default, description). Defaults are strings, as on a `ros2 launch` command line.
_DRIVER_ARGS = {
    "robot": ("real", "real | emulated (real SDKs vs protocol emulators) | sim (the simulated cell)"),
    "config": ("", "drivers YAML; empty: ate_bringup/config/drivers.yaml"),
}
_VIZ_ARGS = {
    "viz": ("", "true: log the cell to Rerun: cameras, joints vs targets, the 3D model, events "
                "(docs/visualization.md); empty: false (true with dry_run:=true)"),
    "viz_mode": ("native", "viz:=true: native (a Rerun Viewer window) | web (a web viewer on localhost) | off"),
    "viz_rrd": ("", "viz:=true: also save the recording to this .rrd file"),
}
LAUNCH_ARGS: dict[str, dict[str, tuple[str, str]]] = {
    "drivers": {
        **_DRIVER_ARGS,
        "arms": ("left,right", "arms to bring up"),
        "grippers": ("true", "start the gripper drivers"),
        "cameras": ("true", "start the camera drivers"),
        "camera_names": ("cam_high,cam_left_wrist,cam_right_wrist", "cameras to start"),
        "task": ("", "robot:=sim: the scene (cook_bun, pick_bun, ...: ate_sim.scenes.SCENES); empty: drivers.yaml "
                 "sim.task"),
        "sim_clock": ("", "robot:=sim: realtime | lockstep; empty: drivers.yaml sim.clock"),
        "sim_seed": ("", "robot:=sim: object randomisation seed; empty: drivers.yaml sim.seed"),
        "description": ("true", "publish /robot_description + merged /joint_states (and start robot_state_publisher "
                                "where ROS has it) for RViz / Foxglove"),
    },
    "policy": {
        **_DRIVER_ARGS,
        "task": ("cook_bun", "tasks/<task>.yaml (instruction, checkpoint, rate, chunking, limits) or a YAML path"),
        "checkpoint": ("", "policy checkpoint (a LeRobot pretrained_model folder); empty: the task YAML's"),
        "device": ("", "cuda | cpu | auto; empty: the task YAML's"),
        "autostart": ("", "start the first episode once the policy is warm; empty: true for robot:=sim, false "
                          "otherwise (an operator starts it: /policy/start); refused with robot:=real"),
        "sim_clock": ("lockstep", "robot:=sim: lockstep (any machine; time waits for the policy) | realtime"),
        "sim_seed": ("", "robot:=sim: object randomisation seed; empty: drivers.yaml sim.seed"),
        **_VIZ_ARGS,
    },
    "teleop_dual": {
        **_DRIVER_ARGS,
        "task": ("cook_bun", "tasks/<task>.yaml: the language instruction recorded with each episode"),
        "dataset": ("", "LeRobot dataset folder to record into (resumed when it exists); empty: teleop.yaml's"),
        "left_avp_ip": ("", "left operator's Vision Pro IP; empty: teleop.yaml's"),
        "right_avp_ip": ("", "right operator's Vision Pro IP; empty: teleop.yaml's"),
        "teleop_config": ("", "teleop YAML; empty: ate_bringup/config/teleop.yaml"),
        "sim_clock": ("realtime", "robot:=sim: realtime (people teleoperating) | lockstep (tests)"),
        "sim_seed": ("", "robot:=sim: object randomisation seed; empty: drivers.yaml sim.seed"),
        **_VIZ_ARGS,
        "dry_run": ("false", "no hardware: the sim cell in lockstep, two emulated headsets with a moving hand, "
                             "scripted Joy-Con presses that record one episode, shown live (viz:=true by default)"),
    },
}


@dataclass
class NodeSpec:
    package: str
    executable: str                  # console script installed by the package (``ros2 run package executable``)
    module: str                      # the same node as ``python -m module`` (the process launcher)
    name: str
    namespace: str = ""
    parameters: dict = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    # The graph cannot work without this node: its exit ends the whole launch, with the reason (launch: on_exit
    # Shutdown; the process launcher the same). Every node of our graphs is: a driver that gave up, a policy or
    # teleop node that could not start, or an e-stop node that died must not leave the rest running.
    essential: bool = True

    @property
    def fq_name(self) -> str:
        return f"/{self.namespace}/{self.name}" if self.namespace else f"/{self.name}"


def default_drivers_config() -> str:
    """The bring-up's drivers.yaml (``ate_description.limits`` finds it; its ``safety`` section lives there)."""
    return str(_drivers_yaml())


def _bool(v) -> bool:
    return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes", "on")


def drivers(args: dict | None = None) -> list[NodeSpec]:
    """The driver graph: e-stop, per arm an arm and a gripper driver, one camera driver per camera.

    args: ``robot`` (real|emulated|sim, default real), ``config`` (drivers YAML), ``arms`` (comma list),
    ``grippers`` / ``cameras`` (bools), ``camera_names`` (comma list). With ``robot:=sim`` one node holds the
    whole simulated cell instead (see :func:`sim_cell`).
    """
    a = dict(args or {})
    robot = _robot(a)
    config = str(a.get("config") or default_drivers_config())
    safety = str(a.get("safety", "") or "")   # JSON: the task's overrides of drivers.yaml's safety section
    # The e-stop node also runs the cell supervisor (ate_drivers.supervisor): it reads the safety section too.
    estop = NodeSpec("ate_drivers", "estop_node", "ate_drivers.nodes.estop_node", "estop", "",
                     {"config_file": config, "robot": robot, "safety": safety})
    if robot == "sim":
        return [estop, sim_cell(a, config)] + description(a)
    arms = [s for s in str(a.get("arms", ",".join(ARMS))).split(",") if s]
    for arm in arms:
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r} in arms:={a.get('arms')}; expected {ARMS}")
    common = {"config_file": config, "robot": robot, "safety": safety}
    specs = [estop]
    for arm in arms:
        specs.append(NodeSpec("ate_drivers", "arm_node", "ate_drivers.nodes.arm_node", "arm_driver", arm,
                              {**common, "arm": arm}))
        if _bool(a.get("grippers", True)):
            specs.append(NodeSpec("ate_drivers", "gripper_node", "ate_drivers.nodes.gripper_node",
                                  "gripper_driver", arm, {**common, "arm": arm}))
    if _bool(a.get("cameras", True)):
        from ate_description.contract import CAMERA_NAMES
        names = [s for s in str(a.get("camera_names", ",".join(CAMERA_NAMES))).split(",") if s]
        for cam in names:
            specs.append(NodeSpec("ate_drivers", "camera_node", "ate_drivers.nodes.camera_node", f"camera_{cam}",
                                  "", {**common, "camera": cam}))
    return specs + description(a)


def description(args: dict) -> list[NodeSpec]:
    """The robot description for ROS tools (``description:=true``, the default): the description node publishes
    ``/robot_description`` (the URDF generated from the calibration YAML) and the merged ``/joint_states``; where the
    ament index lists ``robot_state_publisher`` (a robot PC with ROS 2) it is started on them, so RViz and Foxglove
    show the cell with its TF tree."""
    if not _bool(args.get("description", True)):
        return []
    specs = [NodeSpec("ate_bringup", "description_node", "ate_bringup.description_node", "robot_description", "",
                      {"calibration_file": str(args.get("calibration_file", "") or "")})]
    if has_ros_package("robot_state_publisher"):
        from ate_description.calibration import load_calibration
        from ate_description.urdf import cell_urdf

        urdf = cell_urdf(load_calibration(args.get("calibration_file") or None))
        specs.append(NodeSpec("robot_state_publisher", "robot_state_publisher", "", "robot_state_publisher", "",
                              {"robot_description": urdf}))
    return specs


def has_ros_package(name: str) -> bool:
    """Whether the ament index lists ``name`` (a ROS install or a sourced workspace has it)."""
    try:
        from ament_index_python.packages import get_package_prefix
        get_package_prefix(name)
        return True
    except Exception:  # no ament index, or the package is not installed
        return False


def sim_cell(args: dict, config: str) -> NodeSpec:
    """robot:=sim: one process holds the simulated cell and speaks every driver topic (a camera must see the arm
    it films, so the devices cannot live in separate processes as the drivers do).

    args: ``task`` (scene), ``sim_clock`` (realtime|lockstep), ``sim_seed``, ``lockstep_consumers`` (comma list of
    the nodes that acknowledge each lockstep tick). Empty values leave drivers.yaml's ``sim`` section in charge.
    """
    clock = str(args.get("sim_clock", "") or "")
    if clock not in ("", "realtime", "lockstep"):
        raise ValueError(f"sim_clock:={clock} must be realtime or lockstep")
    seed = str(args.get("sim_seed", "") or "")  # "" = drivers.yaml's (the node's -1)
    params = {"config_file": config, "robot": "sim", "task": str(args.get("task", "") or ""), "clock": clock,
              "seed": int(seed) if seed else -1, "consumers": str(args.get("lockstep_consumers", "") or ""),
              "safety": str(args.get("safety", "") or "")}
    return NodeSpec("ate_sim", "sim_node", "ate_sim.sim_node", "sim_cell", "", params)


def _viz(a: dict) -> dict:
    """The node parameters of ``viz`` / ``viz_mode`` / ``viz_rrd``."""
    mode = str(a.get("viz_mode") or "native")
    if mode not in ("native", "web", "off"):
        raise ValueError(f"viz_mode:={mode} must be native, web or off")
    return {"viz": _bool(a.get("viz", False)), "viz_mode": mode, "viz_rrd": str(a.get("viz_rrd", "") or "")}


def _robot(a: dict) -> str:
    robot = str(a.get("robot", "real"))
    if robot not in ROBOT_MODES:
        raise ValueError(f"robot:={robot} must be one of {ROBOT_MODES}")
    return robot


def task_safety(task: str) -> str:
    """The task file's ``safety`` section (its overrides of drivers.yaml's, e.g. ``coupling: independent``) as
    the JSON every driver node and the e-stop node's supervisor take as their ``safety`` parameter."""
    if not task:
        return ""
    import json

    from ate_policy.runtime.configuration_task import load_task

    over = load_task(task).safety
    return json.dumps(over, sort_keys=True) if over else ""


def _with_consumer(a: dict, consumer: str, default_clock: str) -> tuple[dict, bool]:
    """Driver args for a graph whose ``consumer`` node drives the cell; whether the sim runs in lockstep."""
    d = dict(a)
    d["safety"] = task_safety(str(a.get("task") or ""))
    if _robot(a) != "sim":
        return d, False
    clock = str(a.get("sim_clock") or default_clock)
    d["sim_clock"] = clock
    if clock == "lockstep":
        d["lockstep_consumers"] = consumer
    return d, clock == "lockstep"


def policy(args: dict | None = None) -> list[NodeSpec]:
    """``policy.launch.py``: the drivers (or the sim cell) and the policy node that drives both arms at 20 Hz.

    With ``robot:=sim`` the cell runs in lockstep with the policy by default (``sim_clock``), so inference on a CPU
    costs wall time only and no tick is missed; the task's scene is loaded.
    """
    a = dict(args or {})
    task = str(a.get("task") or "cook_bun")
    d, lockstep = _with_consumer({**a, "task": task}, "policy", "lockstep")
    robot = _robot(a)
    specs = drivers(d)
    autostart = str(a.get("autostart", "") or "")
    if autostart and _bool(autostart) and robot == "real":
        raise ValueError("autostart:=true with robot:=real: the arms must not move without an operator; start the "
                         "policy with /policy/start (or python -m ate_deploy.operator)")
    params = {"task": task, "checkpoint": str(a.get("checkpoint", "") or ""), "device": str(a.get("device", "") or ""),
              "robot": robot, "lockstep": lockstep, "config_file": str(a.get("config") or default_drivers_config()),
              "autostart": _bool(autostart) if autostart else robot == "sim",
              "use_sim_time": robot == "sim", **_viz(a)}
    specs.append(NodeSpec("ate_deploy", "policy_node", "ate_deploy.policy_node", "policy", "", params))
    return specs


def teleop_dual(args: dict | None = None) -> list[NodeSpec]:
    """``teleop_dual.launch.py``: the drivers (or the sim cell) and the teleop node: two operators, each with a
    Vision Pro and a Joy-Con driving one arm, recording episodes into a LeRobot dataset."""
    a = dict(args or {})
    dry_run = _bool(a.get("dry_run", False))
    if dry_run:
        a = _dry_run(a)
    task = str(a.get("task") or "cook_bun")
    d, lockstep = _with_consumer({**a, "task": task}, "teleop", "realtime")
    robot = _robot(a)
    specs = drivers(d)
    params = {"config_file": str(a.get("teleop_config", "") or ""), "task": task, "robot": robot,
              "dataset": str(a.get("dataset", "") or ""), "left_avp_ip": str(a.get("left_avp_ip", "") or ""),
              "right_avp_ip": str(a.get("right_avp_ip", "") or ""), "lockstep": lockstep,
              "use_sim_time": robot == "sim", **_viz(a), "dry_run": dry_run}
    specs.append(NodeSpec("ate_teleop", "teleop_node", "ate_teleop.teleop_node", "teleop", "", params))
    return specs


def _dry_run(a: dict) -> dict:
    """``dry_run:=true`` implies ``robot:=sim sim_clock:=lockstep`` (a realtime sim cannot hold 20 Hz on a CPU;
    launch passes every argument's default, so these are set, not defaulted), records into
    outputs/dry_run/dataset unless ``dataset:=`` names one and turns viz on unless ``viz:=false``; the teleop node
    starts the emulated headsets and scripts the Joy-Cons (``teleop.dry_run``)."""
    for ip in ("left_avp_ip", "right_avp_ip"):
        if a.get(ip):
            raise ValueError(f"dry_run:=true emulates the headsets on 127.0.0.1 / 127.0.0.2: drop {ip}:=")
    out = {**a, "robot": "sim", "sim_clock": "lockstep", "dataset": a.get("dataset") or "outputs/dry_run/dataset"}
    if str(a.get("viz") or "") == "":
        out["viz"] = "true"
    return out


GRAPHS = {"drivers": drivers, "policy": policy, "teleop_dual": teleop_dual}
