"""``ros2 launch ate_bringup drivers.launch.py [robot:=real|emulated|sim]``: the driver graph.

A thin adapter: the nodes come from ``ate_bringup.graph.drivers`` (tested without launch); the arguments and
their defaults from ``graph.LAUNCH_ARGS["drivers"]``.
"""

from ate_bringup.launch_adapter import generate


def generate_launch_description():
    return generate("drivers")
