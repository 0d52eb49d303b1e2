"""Graph descriptions of the cell (DESIGN.md section 6): pure Python, no launch import.

``drivers(args)`` returns the driver nodes as :class:`NodeSpec` (package, executable, name, namespace,
parameters, remappings). ``launch/drivers.launch.py`` maps them to ``launch_ros`` Node actions and
``ate_bringup.launcher`` starts the same specs as processes in the integration tests, so what CI runs is what
``ros2 launch`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ate_policy.contract import ARMS

ROBOT_MODES = ("real", "emulated", "sim")


@dataclass
class NodeSpec:
    package: str
    executable: str                  # console script installed by the package (``ros2 run package executable``)
    module: str                      # the same node as ``python -m module`` (the process launcher)
    name: str
    namespace: str = ""
    parameters: dict = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)

    @property
    def fq_name(self) -> str:
        return f"/{self.namespace}/{self.name}" if self.namespace else f"/{self.name}"


def config_dir() -> Path:
    """The installed share/ate_bringup/config when the ament index knows the package, else the source tree's."""
    try:
        from ament_index_python.packages import get_package_share_directory
        p = Path(get_package_share_directory("ate_bringup")) / "config"
        if p.is_dir():
            return p
    except Exception:  # no ament index (plain venv): the source tree
        pass
    return Path(__file__).resolve().parent.parent / "config"


def default_drivers_config() -> str:
    return str(config_dir() / "drivers.yaml")


def _bool(v) -> bool:
    return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes", "on")


def drivers(args: dict | None = None) -> list[NodeSpec]:
    """The driver graph: e-stop, per arm an arm and a gripper driver, one camera driver per camera.

    args: ``robot`` (real|emulated|sim, default real), ``config`` (drivers YAML), ``arms`` (comma list),
    ``grippers`` / ``cameras`` (bools), ``camera_names`` (comma list). With ``robot:=sim`` one node holds the
    whole simulated cell instead (see :func:`sim_cell`).
    """
    a = dict(args or {})
    robot = str(a.get("robot", "real"))
    if robot not in ROBOT_MODES:
        raise ValueError(f"robot:={robot} must be one of {ROBOT_MODES}")
    config = str(a.get("config") or default_drivers_config())
    if robot == "sim":
        return [NodeSpec("ate_drivers", "estop_node", "ate_drivers.nodes.estop_node", "estop"), sim_cell(a, config)]
    arms = [s for s in str(a.get("arms", ",".join(ARMS))).split(",") if s]
    for arm in arms:
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r} in arms:={a.get('arms')}; expected {ARMS}")
    common = {"config_file": config, "robot": robot}
    specs = [NodeSpec("ate_drivers", "estop_node", "ate_drivers.nodes.estop_node", "estop")]
    for arm in arms:
        specs.append(NodeSpec("ate_drivers", "arm_node", "ate_drivers.nodes.arm_node", "arm_driver", arm,
                              {**common, "arm": arm}))
        if _bool(a.get("grippers", True)):
            specs.append(NodeSpec("ate_drivers", "gripper_node", "ate_drivers.nodes.gripper_node",
                                  "gripper_driver", arm, {**common, "arm": arm}))
    if _bool(a.get("cameras", True)):
        from ate_policy.contract import CAMERA_NAMES
        names = [s for s in str(a.get("camera_names", ",".join(CAMERA_NAMES))).split(",") if s]
        for cam in names:
            specs.append(NodeSpec("ate_drivers", "camera_node", "ate_drivers.nodes.camera_node", f"camera_{cam}",
                                  "", {**common, "camera": cam}))
    return specs


def sim_cell(args: dict, config: str) -> NodeSpec:
    """robot:=sim: one process holds the simulated cell and speaks every driver topic (a camera must see the arm
    it films, so the devices cannot live in separate processes as the drivers do).

    args: ``task`` (scene), ``sim_clock`` (realtime|lockstep), ``sim_seed``, ``lockstep_consumers`` (comma list of
    the nodes that acknowledge each lockstep tick). Empty values leave drivers.yaml's ``sim`` section in charge.
    """
    clock = str(args.get("sim_clock", "") or "")
    if clock not in ("", "realtime", "lockstep"):
        raise ValueError(f"sim_clock:={clock} must be realtime or lockstep")
    params = {"config_file": config, "robot": "sim", "task": str(args.get("task", "") or ""), "clock": clock,
              "seed": int(args.get("sim_seed", -1) if str(args.get("sim_seed", "")) != "" else -1),
              "consumers": str(args.get("lockstep_consumers", "") or "")}
    return NodeSpec("ate_sim", "sim_node", "ate_sim.sim_node", "sim_cell", "", params)
