"""``ros2 launch ate_bringup policy.launch.py task:=cook_bun [robot:=real|emulated|sim] [checkpoint:=...]``:
the drivers and the policy node running the ATE-fine-tuned pi0 at 20 Hz behind the drivers' safety layer.

A thin adapter over ``ate_bringup.graph.policy`` (tested without launch); arguments in
``graph.LAUNCH_ARGS["policy"]``.
"""

from ate_bringup.launch_adapter import generate


def generate_launch_description():
    return generate("policy")
