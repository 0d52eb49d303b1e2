"""The lockstep protocol's two ends (ate_drivers.lockstep): when the sim may step, when a consumer may act."""

from __future__ import annotations

import pytest

from ate_drivers.lockstep import TickCollector, TickGate, ack_frame_id, parse_ack

T0, T1 = 0, 50_000_000


def test_the_gate_opens_once_every_consumer_acked_and_every_announced_command_arrived():
    gate = TickGate(["policy", "teleop"])
    assert not gate.ready()  # no tick begun yet
    gate.begin(T0)
    gate.on_ack(ack_frame_id("policy", 2), T0)
    assert gate.waiting_for == ["teleop"] and not gate.ready()
    gate.on_ack(ack_frame_id("teleop", 0), T0)
    assert not gate.ready()  # the acks overtook policy's two commands
    gate.on_command(T0)
    assert not gate.ready()
    gate.on_command(T0)
    assert gate.ready()
    gate.begin(T1)
    assert not gate.ready() and gate.waiting_for == ["policy", "teleop"]


def test_stray_acks_and_commands_do_not_open_the_gate():
    gate = TickGate(["policy"])
    gate.begin(T1)
    gate.on_ack(ack_frame_id("policy", 0), T0)      # a repeat for the previous tick
    gate.on_ack(ack_frame_id("someone", 0), T1)     # not a consumer of this cell
    assert not gate.ready() and gate.late_acks == 1 and gate.unknown_acks == 1
    gate.on_ack(ack_frame_id("policy", 1), T1)
    gate.on_command(T0)                             # an old command: applied by the driver, not counted
    assert not gate.ready()
    gate.on_command(T1)
    assert gate.ready()


@pytest.mark.parametrize("bad", ["policy", "policy two", "policy 1 2", ""])
def test_malformed_acks_are_errors(bad):
    with pytest.raises(ValueError):
        parse_ack(bad)
    with pytest.raises(ValueError):
        TickGate(["policy"]).on_ack(bad, T0)


def test_a_consumer_acts_once_per_complete_tick_and_re_acks_a_repeat():
    col = TickCollector(["left", "cam"])
    col.put("left", T0)
    assert col.next_tick() is None               # the camera has not delivered tick 0
    col.put("cam", T0)
    assert col.next_tick() == (T0, True)         # act
    assert col.next_tick() is None               # nothing new
    col.put("left", T1)
    assert col.next_tick() is None               # streams on different ticks
    col.put("cam", T1)
    assert col.next_tick() == (T1, True)
    col.put("cam", T1)                           # the sim published tick 1 again: it did not get our ack
    assert col.next_tick() == (T1, False)        # acknowledge again, do not act twice
    assert col.next_tick() is None
    col.put("left", T0)
    col.put("cam", T0)                           # an older tick arriving late is ignored
    assert col.next_tick() is None
    with pytest.raises(ValueError):
        col.put("right", T1)
