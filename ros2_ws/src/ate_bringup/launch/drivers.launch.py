"""``ros2 launch ate_bringup drivers.launch.py robot:=real|emulated|sim``: the driver graph.

A thin adapter: the nodes come from ``ate_bringup.graph.drivers`` (tested without launch), mapped one to one to
``launch_ros`` Node actions.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ate_bringup import graph

ARGS = {
    "robot": ("real", "real | emulated | sim"),
    "config": ("", "drivers YAML; empty: ate_bringup/config/drivers.yaml"),
    "arms": ("left,right", "arms to bring up"),
    "grippers": ("true", "start the gripper drivers"),
    "cameras": ("true", "start the camera drivers"),
    "camera_names": ("cam_high,cam_left_wrist,cam_right_wrist", "cameras to start"),
}


def _nodes(context, *_, **__):
    args = {k: LaunchConfiguration(k).perform(context) for k in ARGS}
    return [Node(package=s.package, executable=s.executable, name=s.name, namespace=s.namespace or None,
                 parameters=[s.parameters], remappings=s.remappings, output="screen")
            for s in graph.drivers(args)]


def generate_launch_description():
    return LaunchDescription([DeclareLaunchArgument(k, default_value=v, description=d)
                              for k, (v, d) in ARGS.items()] + [OpaqueFunction(function=_nodes)])
