"""Turn a graph description into a ``LaunchDescription``: the one adapter every launch file uses.

Each launch argument of ``graph.LAUNCH_ARGS[name]`` is declared with its default and description; at launch
time the node specs of ``graph.GRAPHS[name](args)`` become ``launch_ros`` Node actions one to one. An essential
node's exit shuts the whole launch down with the reason (``on_exit=Shutdown``), so a driver that gave up or a
policy node that could not start does not leave the rest of the cell running. ``launch`` and ``launch_ros`` are
imported here only (they exist on a robot PC with ROS 2, not in the venv's wheels).
"""

from __future__ import annotations

from ate_bringup import graph


def generate(name: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    arg_specs = graph.LAUNCH_ARGS[name]

    def nodes(context, *_, **__):
        args = {k: LaunchConfiguration(k).perform(context) for k in arg_specs}
        return [Node(package=s.package, executable=s.executable, name=s.name, namespace=s.namespace or None,
                     parameters=[s.parameters], remappings=s.remappings, output="screen",
                     on_exit=[Shutdown(reason=f"essential node {s.fq_name} exited")] if s.essential else None)
                for s in graph.GRAPHS[name](args)]

    return LaunchDescription([DeclareLaunchArgument(k, default_value=v, description=d)
                              for k, (v, d) in arg_specs.items()] + [OpaqueFunction(function=nodes)])
