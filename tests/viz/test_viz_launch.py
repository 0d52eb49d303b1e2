"""``viz:=`` / ``viz_mode:=`` / ``viz_rrd:=`` and ``dry_run:=true`` in the bring-up graphs, what the nodes receive,
and the teleop node's view of operator states and recording (no ROS graph: the DDS runs are in
tests/deploy/test_policy_graph.py and tests/teleop/test_teleop_graph.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ate_bringup import graph
from ate_bringup.launcher import ros_args


def launch_defaults(name: str) -> dict:
    """What ``ros2 launch`` hands the graph: every argument, at its default."""
    return {k: v for k, (v, _) in graph.LAUNCH_ARGS[name].items()}


@pytest.mark.parametrize("name", ["policy", "teleop_dual"])
def test_viz_arguments_reach_the_node(name):
    make = graph.GRAPHS[name]
    node = make(launch_defaults(name))[-1].parameters
    assert (node["viz"], node["viz_mode"], node["viz_rrd"]) == (False, "native", "")
    node = make({**launch_defaults(name), "robot": "sim", "viz": "true", "viz_mode": "web",
                 "viz_rrd": "/tmp/x.rrd"})[-1].parameters
    assert (node["viz"], node["viz_mode"], node["viz_rrd"]) == (True, "web", "/tmp/x.rrd")
    with pytest.raises(ValueError, match="viz_mode:=browser"):
        make({"robot": "sim", "viz": "true", "viz_mode": "browser"})


def test_dry_run_is_the_sim_cell_in_lockstep_with_viz_on():
    specs = graph.teleop_dual({**launch_defaults("teleop_dual"), "dry_run": "true"})
    names = [s.fq_name for s in specs]
    assert "/sim_cell" in names and "/left/arm_driver" not in names
    sim = next(s for s in specs if s.fq_name == "/sim_cell").parameters
    tel = specs[-1].parameters
    assert sim["clock"] == "lockstep" and sim["consumers"] == "teleop"
    assert tel["dry_run"] is True and tel["robot"] == "sim" and tel["lockstep"] is True and tel["viz"] is True
    assert tel["dataset"] == "outputs/dry_run/dataset"
    quiet = graph.teleop_dual({"dry_run": "true", "viz": "false", "dataset": "/d"})[-1].parameters
    assert quiet["viz"] is False and quiet["dataset"] == "/d"
    with pytest.raises(ValueError, match="left_avp_ip"):
        graph.teleop_dual({"dry_run": "true", "left_avp_ip": "10.0.0.5"})
    assert graph.teleop_dual(launch_defaults("teleop_dual"))[-1].parameters["dry_run"] is False


def test_string_parameters_that_read_as_yaml_booleans_stay_strings():
    rclpy = pytest.importorskip("rclpy")
    spec = graph.NodeSpec("ate_teleop", "teleop_node", "x", "viz_probe", parameters={"viz_mode": "off", "on": "on"})
    ctx = rclpy.Context()
    rclpy.init(args=["probe", *ros_args(spec)], context=ctx)
    try:
        node = rclpy.create_node("viz_probe", context=ctx)
        assert node.declare_parameter("viz_mode", "native").value == "off"
        assert node.declare_parameter("on", "x").value == "on"
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_dry_run_overrides_make_a_valid_teleop_config():
    pytest.importorskip("avp_stream")
    from teleop.configuration_teleop import load_teleop_config
    from teleop.dry_run import HEADSET_IPS, dry_run_overrides

    cfg = load_teleop_config(None, dry_run_overrides({"left": {"avp": {"ip": "10.9.9.9"}}, "task": "x"}))
    for arm in ("left", "right"):
        op = cfg.operator(arm)
        assert op.avp.ip == HEADSET_IPS[arm] and op.buttons_source == "scripted"
        assert [b for *_, b in op.button_script][0] == op.buttons.mapping["init"]
    record = cfg.left.buttons.mapping["record"]
    starts = [t0 for t0, _, b in cfg.left.button_script if b == record]
    stops = [t0 for t0, _, b in cfg.right.button_script if b == record]
    assert len(starts) == len(stops) == 1 and starts[0] < stops[0]      # one episode, started then stopped


def test_teleop_view_logs_operator_states_and_recording(tmp_path):
    pytest.importorskip("rerun")
    import warnings

    from ate_policy.viz.live import TeleopViz
    from ate_policy.viz.rrd import read_rrd

    v = TeleopViz("off", rrd=str(tmp_path / "t.rrd"))
    states = ["idle"] * 2 + ["aligned"] * 2 + ["teleop"] * 2 + ["recording"] * 3 + ["teleop"]
    for k, st in enumerate(states):
        rec = st == "recording"
        v.tick(0.05 * k, {"left": np.zeros(7), "right": np.zeros(7)}, {"left": 0.5, "right": 0.5}, None,
               {"cam_high": np.zeros((8, 8, 3), np.uint8)}, {"left": np.full(7, 0.1), "right": None},
               {"left": 0.9, "right": None},
               {"state": {"left": st, "right": "idle"}, "recording": rec, "episodes": 0 if k < 9 else 1,
                "hold_reason": {"left": "", "right": ""}},
               ["e-stop pressed"] if k == 9 else [])
    assert v.close()["dropped"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = read_rrd(tmp_path / "t.rrd")
    ops = rows["/events/operator"]["TextLog:text"]
    assert {k: t for k, t in ops.items()} == {0: ["left: idle", "right: idle"], 2: ["left: aligned"],
                                              4: ["left: teleop"], 6: ["left: recording"], 9: ["left: teleop"]}
    assert rows["/events/recording"]["TextLog:text"] == {6: ["recording started (episode 0)"],
                                                         9: ["recording stopped (episode 1)"]}
    assert [rows["/status/recording"]["Scalars:scalars"][k][0] for k in range(10)] == [0] * 6 + [1] * 3 + [0]
    assert rows["/events/estop"]["TextLog:text"] == {9: ["e-stop pressed"]}
    # the right operator sent nothing: only the left arm's targets are real numbers
    left, right = rows["/arms/left/target"]["Scalars:scalars"], rows["/arms/right/target"]["Scalars:scalars"]
    assert np.allclose(left[0], 0.1) and np.all(np.isnan(right[0]))
