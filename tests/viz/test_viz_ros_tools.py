"""The Foxglove layout and the RViz config shipped in ate_bringup/config: they parse, and every topic they name is
one the bring-up graphs publish (node specs of ``ate_bringup.graph`` + the topics docs/drivers.md and
docs/teleop.md document for those nodes), so a renamed topic cannot leave an empty panel behind."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ate_bringup import graph
from ate_description.config import config_dir

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = config_dir() / "foxglove_layout.json"
RVIZ = config_dir() / "ate_cell.rviz"


def documented_arm_topics() -> tuple[list[str], list[str]]:
    """(per-arm relative topics, absolute topics) of docs/drivers.md's topic table."""
    text = (ROOT / "docs" / "drivers.md").read_text()
    table = text.split("## Topics", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)
    return [n for n in names if not n.startswith("/")], [n for n in names if n.startswith("/")]


def graph_topics() -> set[str]:
    """Every topic the policy and teleop graphs (real and sim) publish or subscribe, by their node specs."""
    rel, absolute = documented_arm_topics()
    drivers_md = (ROOT / "docs" / "drivers.md").read_text()
    topics: set[str] = set()
    for make, args in ((graph.policy, {}), (graph.teleop_dual, {}), (graph.policy, {"robot": "sim"}),
                       (graph.drivers, {})):
        for spec in make(args):
            if spec.module == "ate_drivers.nodes.arm_node":
                topics |= {f"/{spec.namespace}/{t}" for t in rel if not t.startswith("gripper/")}
            elif spec.module == "ate_drivers.nodes.gripper_node":
                topics |= {f"/{spec.namespace}/{t}" for t in rel if t.startswith("gripper/")}
            elif spec.module == "ate_drivers.nodes.camera_node":
                topics.add(f"/cameras/{spec.parameters['camera']}/image_raw")
            elif spec.module == "ate_teleop.teleop_node":
                assert "`/teleop/status`" in (ROOT / "docs" / "teleop.md").read_text()
                topics.add("/teleop/status")
    topics |= {t for t in absolute if "<" not in t}
    # the description node (docs/drivers.md, "Viewing the cell"): the URDF and the merged joint states
    for t in ("/robot_description", "/joint_states"):
        assert f"`{t}`" in drivers_md
        topics.add(t)
    return topics


def foxglove_topics(layout: dict) -> set[str]:
    """Topics a Foxglove layout names: topic fields, and the topic part of message paths (``/t.field[0]``)."""
    found: set[str] = set()

    def walk(x, key=""):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, k)
        elif isinstance(x, list):
            for v in x:
                walk(v, key)
        elif isinstance(x, str) and x.startswith("/"):
            if key in ("topic", "imageTopic", "topicPath", "topicToRender", "value", "path"):
                found.add(x.split(".", 1)[0])
    walk(layout)
    return found


def rviz_topics(cfg: dict) -> set[str]:
    found: set[str] = set()

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k.endswith("Topic") or k == "Topic":
                    found.add(v["Value"] if isinstance(v, dict) else v)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(cfg)
    return found


def test_every_topic_of_the_foxglove_layout_exists_in_the_graphs():
    layout = json.loads(LAYOUT.read_text())
    panels = layout["configById"]
    assert set(_leaves(layout["layout"])) == set(panels)     # every panel placed, none dangling
    named = foxglove_topics(layout)
    assert {"/robot_description", "/cameras/cam_high/image_raw", "/left/joint_states", "/right/joint_command",
            "/estop", "/teleop/status", "/diagnostics"} <= named
    assert named <= graph_topics(), named - graph_topics()
    urdf = [v for v in panels["3D!cell"]["layers"].values() if v["layerId"] == "foxglove.Urdf"]
    assert urdf and urdf[0]["topic"] == "/robot_description"


def test_every_topic_of_the_rviz_config_exists_in_the_graphs():
    cfg = yaml.safe_load(RVIZ.read_text())
    named = rviz_topics(cfg)
    assert {"/robot_description", "/cameras/cam_left_wrist/image_raw", "/left/wrench"} <= named
    assert named <= graph_topics(), named - graph_topics()
    vm = cfg["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "cell"
    from ate_description.calibration import CELL_FRAME
    assert CELL_FRAME == "cell"


@pytest.mark.parametrize("bad", ["/left/joint_state", "/cameras/cam_top/image_raw"])
def test_a_misnamed_topic_is_caught(bad):
    layout = json.loads(LAYOUT.read_text())
    layout["configById"]["Image!cam_high"]["imageMode"]["imageTopic"] = bad
    assert bad in foxglove_topics(layout) - graph_topics()
    cfg = yaml.safe_load(RVIZ.read_text())
    cfg["Visualization Manager"]["Displays"][3]["Topic"]["Value"] = bad
    assert bad in rviz_topics(cfg) - graph_topics()


def test_the_configs_are_installed_with_the_package():
    setup = (ROOT / "ros2_ws" / "src" / "ate_bringup" / "setup.py").read_text()
    assert 'glob("config/*.json")' in setup and 'glob("config/*.rviz")' in setup


def _leaves(node):
    if isinstance(node, str):
        yield node
    else:
        yield from _leaves(node["first"])
        yield from _leaves(node["second"])
