"""The cell's joint state for the URDF: both arms and the gripper openings merged into one ``JointState`` layout.

The drivers publish per arm (``<arm>/joint_states``: the contract's joint names, radians) and per gripper
(``<arm>/gripper/state``: the opening fraction as ``<arm>_gripper``). ``robot_state_publisher``, RViz and Foxglove want
one ``/joint_states`` naming the URDF's joints: this merges them and maps each opening fraction (0 = closed .. 1 =
120 mm) to the finger joints ``<arm>_finger_a`` / ``<arm>_finger_b`` (metres, each finger half the gap). Pure
Python; the bring-up's description node wires it to topics.
"""

from __future__ import annotations

from ate_description import contract
from ate_description.urdf import finger_position_m


class CellJointStates:
    """Latest joints of both arms and grippers; ``merged()`` is what ``/joint_states`` carries."""

    def __init__(self):
        self._q: dict[str, float] = {}
        self._stamp_s: dict[str, float] = {}

    def update_arm(self, arm: str, names, positions, stamp_s: float) -> None:
        """An ``<arm>/joint_states`` message; joints other than this arm's are ignored."""
        own = set(contract.arm_joint_names(arm))
        for n, p in zip(names, positions):
            if n in own:
                self._q[n] = float(p)
        self._stamp_s[arm] = stamp_s

    def update_gripper(self, arm: str, opening: float, stamp_s: float) -> None:
        x = finger_position_m(opening)
        self._q[f"{arm}_finger_a"] = x
        self._q[f"{arm}_finger_b"] = x
        self._stamp_s[f"{arm}_gripper"] = stamp_s

    def merged(self) -> tuple[list[str], list[float], float]:
        """(names, positions, newest stamp) of every joint heard of so far, arms in contract order."""
        order = [n for arm in contract.ARMS
                 for n in contract.arm_joint_names(arm) + [f"{arm}_finger_a", f"{arm}_finger_b"]]
        names = [n for n in order if n in self._q]
        return names, [self._q[n] for n in names], max(self._stamp_s.values(), default=0.0)
