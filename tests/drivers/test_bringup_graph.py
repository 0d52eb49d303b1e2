"""The bring-up graph description (what drivers.launch.py and the process launcher both start)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ate_bringup import graph
from ate_bringup.launcher import command, ros_args
from ate_drivers.config import load_drivers_config

LAUNCH = Path(graph.__file__).resolve().parent.parent / "launch" / "drivers.launch.py"


def test_drivers_graph_has_estop_arm_and_gripper_per_namespace_and_cameras():
    specs = graph.drivers({"robot": "emulated"})
    names = [s.fq_name for s in specs]
    assert names == ["/estop", "/left/arm_driver", "/left/gripper_driver", "/right/arm_driver",
                     "/right/gripper_driver", "/camera_cam_high", "/camera_cam_left_wrist",
                     "/camera_cam_right_wrist", "/robot_description"]
    left = specs[1]
    assert (left.package, left.executable, left.module) == ("ate_drivers", "arm_node", "ate_drivers.nodes.arm_node")
    assert left.parameters["arm"] == "left" and left.parameters["robot"] == "emulated"
    assert Path(left.parameters["config_file"]).name == "drivers.yaml"


def test_default_is_real_and_options_trim_the_graph():
    specs = graph.drivers({"arms": "right", "grippers": "false", "cameras": False, "description": "false"})
    assert [s.fq_name for s in specs] == ["/estop", "/right/arm_driver"]
    assert specs[1].parameters["robot"] == "real"


@pytest.mark.parametrize("args", [{"robot": "gazebo"}, {"arms": "left,middle"}])
def test_bad_arguments_are_clear_errors(args):
    with pytest.raises(ValueError):
        graph.drivers(args)


def _console_scripts(package: str) -> dict[str, str]:
    # Read from setup.py (what colcon installs as lib/<package>/<executable> for `ros2 run` and launch_ros).
    setup_py = Path(graph.__file__).resolve().parents[2] / package / "setup.py"
    tree = ast.parse(setup_py.read_text())
    kw = next(k for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords if k.arg == "entry_points")
    return dict(s.replace(" ", "").split("=", 1) for s in ast.literal_eval(kw.value)["console_scripts"])


@pytest.mark.parametrize("robot", graph.ROBOT_MODES)
def test_every_executable_is_a_console_script_of_its_package(robot):
    for spec in graph.drivers({"robot": robot}):
        assert _console_scripts(spec.package).get(spec.executable, "").startswith(spec.module + ":"), spec


def test_process_command_carries_name_namespace_and_typed_parameters():
    spec = graph.drivers({"robot": "emulated"})[1]
    cmd = command(spec)
    assert cmd[1:3] == ["-m", "ate_drivers.nodes.arm_node"]
    args = ros_args(spec)
    assert args[:5] == ["--ros-args", "-r", "__node:=arm_driver", "-r", "__ns:=/left"]
    assert "arm:=left" in args and "robot:=emulated" in args


def test_shipped_config_loads_for_every_robot_mode():
    for robot in graph.ROBOT_MODES:
        cfg = load_drivers_config(graph.default_drivers_config(), robot=robot)
        assert cfg.backend_names().arm
    assert cfg.left.realman.ip == "192.168.1.18" and cfg.right.realman.ip == "192.168.1.19"


@pytest.mark.parametrize("name", sorted(graph.GRAPHS))
def test_launch_files_are_thin_adapters_over_the_graphs(name):
    # launch / launch_ros have no wheels here: check each file parses and hands its graph to the one adapter,
    # and that the adapter maps every node spec of that graph to a launch_ros Node with the declared arguments.
    tree = ast.parse((LAUNCH.parent / f"{name}.launch.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "generate"]
    assert [ast.literal_eval(c.args[0]) for c in calls] == [name]
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    adapter = ast.parse((Path(graph.__file__).parent / "launch_adapter.py").read_text())
    used = {ast.unparse(n.func) for n in ast.walk(adapter) if isinstance(n, ast.Call)}
    assert {"Node", "DeclareLaunchArgument", "OpaqueFunction", "Shutdown"} <= used   # an essential node's exit
    assert all(s.essential for s in graph.GRAPHS[name]({"robot": "sim"}))         # ends the whole launch
    assert set(graph.LAUNCH_ARGS[name]) >= {"robot", "config"}
    assert graph.LAUNCH_ARGS[name]["robot"][0] == "real"  # the lab's command lines carry no argument


def test_the_real_robot_waits_for_an_operator_and_sim_starts_by_itself():
    assert graph.policy({"robot": "sim"})[-1].parameters["autostart"] is True
    assert graph.policy({})[-1].parameters["autostart"] is False          # robot:=real by default
    assert graph.policy({"robot": "emulated"})[-1].parameters["autostart"] is False
    with pytest.raises(ValueError, match="operator"):
        graph.policy({"robot": "real", "autostart": "true"})


def test_a_task_overrides_the_safety_section_for_every_driver_and_the_cell_supervisor(tmp_path):
    import json

    from ate_description.config import source_config_dir

    task = tmp_path / "handover_free.yaml"
    task.write_text((source_config_dir() / "tasks" / "pick_bun.yaml").read_text()
                    + "safety: {coupling: independent}\n")
    for robot in ("emulated", "sim"):
        specs = graph.policy({"robot": robot, "task": str(task), "description": "false"})
        drivers = [s for s in specs if s.package in ("ate_drivers", "ate_sim")]
        assert drivers and all(json.loads(s.parameters["safety"]) == {"coupling": "independent"} for s in drivers)
    assert graph.policy({"robot": "emulated", "task": "cook_bun"})[0].parameters["safety"] == ""   # none


@pytest.mark.parametrize("name", sorted(graph.GRAPHS))
def test_every_graph_builds_from_its_launch_defaults_for_every_robot_mode(name):
    defaults = {k: v for k, (v, _) in graph.LAUNCH_ARGS[name].items()}
    for robot in graph.ROBOT_MODES:
        specs = graph.GRAPHS[name]({**defaults, "robot": robot})
        names = [s.fq_name for s in specs]
        assert len(names) == len(set(names)) and names[0] == "/estop"
        for spec in specs:
            assert _console_scripts(spec.package).get(spec.executable, "").startswith(spec.module + ":"), spec
