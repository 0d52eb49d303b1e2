"""``ros2 launch ate_bringup teleop_dual.launch.py [robot:=real|sim] [task:=...] [dataset:=...]
[left_avp_ip:=...] [right_avp_ip:=...]``: the drivers and the dual-operator teleop node, which records episodes.

A thin adapter over ``ate_bringup.graph.teleop_dual`` (tested without launch); arguments in
``graph.LAUNCH_ARGS["teleop_dual"]``.
"""

from ate_bringup.launch_adapter import generate


def generate_launch_description():
    return generate("teleop_dual")
