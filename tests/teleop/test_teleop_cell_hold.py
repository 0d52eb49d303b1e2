"""The teleop session obeys the cell supervisor (/cell/hold): a held arm's operator goes to idle, nothing is
commanded for it, a recording is discarded, and after the resume the operator re-aligns before the arm moves."""

from __future__ import annotations

import pytest

from teleop_testkit import Rig

pytest.importorskip("pinocchio")


def test_a_cell_hold_idles_the_held_operators_until_resumed_and_realigned():
    rig = Rig()
    rig.align()
    assert rig.out.status["state"] == {"left": "teleop", "right": "teleop"}
    rig.session.set_cell_hold({"left", "right"}, "refusal on arm/left: too_fast")
    rig.tick()
    assert rig.out.status["state"] == {"left": "idle", "right": "idle"} and rig.out.status["cell_hold"] == [
        "left", "right"]
    assert rig.out.joint_targets == {"left": None, "right": None}
    assert rig.out.gripper_targets == {"left": None, "right": None}
    assert any("cell hold" in e for e in rig.out.events)
    rig.align()                                            # aligning while held moves nothing
    assert rig.out.status["state"] == {"left": "idle", "right": "idle"}
    rig.session.set_cell_hold(set())                       # the operator resumed the cell
    rig.tick(3)
    assert rig.out.status["state"] == {"left": "idle", "right": "idle"}   # no arm moves by itself
    rig.align()
    assert rig.out.status["state"] == {"left": "teleop", "right": "teleop"}
    rig.session.close()


def test_an_independent_hold_leaves_the_other_operator_in_teleop():
    rig = Rig()
    rig.align()
    rig.session.set_cell_hold({"right"}, "fault on arm/right")
    rig.tick(3)
    assert rig.out.status["state"] == {"left": "teleop", "right": "idle"}
    assert rig.out.joint_targets["right"] is None and rig.out.joint_targets["left"] is not None
    rig.session.close()
