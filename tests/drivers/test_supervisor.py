"""The cell safety supervisor (``ate_drivers.supervisor``): coupled holds, explicit resume, following the cell's
state across processes, the e-stop heartbeat, throttled refusal logs; and the supervisor where both arms live in
one process (the sim runner that the sim node and ``ate_policy eval`` serve)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ate_drivers.supervisor import (CellSupervisor, HeartbeatWatch, HoldEvent, ThrottledLog, state_from_json,
                                    state_to_json)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_coupled_an_event_on_one_arm_holds_both_until_an_explicit_resume():
    sup = CellSupervisor("coupled", clock=Clock())
    seen = []
    sup.add_listener(seen.append)
    assert sup.report(HoldEvent("arm/left", "left", "refusal", "too_fast: left_joint2"))
    assert sup.held("left") and sup.held("right")
    assert seen[-1]["arms"]["right"] == {"held": True, "kind": "refusal", "detail": "too_fast: left_joint2",
                                         "source": "arm/left", "since_s": 0.0}
    assert not sup.report(HoldEvent("arm/right", "right", "stale", "0.4 s old"))   # already held: no change
    assert sup.events == {"refusal": 1, "stale": 1} and sup.hold_count == 1
    level, msg, kv = sup.diagnostics()
    assert level == 2 and "too_fast" in msg and kv["held_right"] == "True"
    assert sup.resume("e-stop latched: reset it first") == (False, "cannot resume: e-stop latched: reset it first")
    assert sup.held()
    ok, _ = sup.resume()
    assert ok and not sup.held() and seen[-1]["resumes"] == 1


def test_independent_holds_only_the_arm_concerned_but_a_cell_event_holds_every_arm():
    sup = CellSupervisor("independent")
    sup.report(HoldEvent("arm/left", "left", "tracking", "0.3 rad from the measured joint"))
    assert sup.held("left") and not sup.held("right")
    sup.report(HoldEvent("policy", None, "inference_deadline", "hung call"))
    assert sup.held("right")
    with pytest.raises(ValueError, match="coupling"):
        CellSupervisor("loose")


def test_an_arm_process_follows_the_cell_and_its_own_hold_ends_only_with_a_later_resume():
    cell = CellSupervisor("coupled")
    right = CellSupervisor("coupled", arms=("right",))       # the right arm's node
    left = CellSupervisor("coupled", arms=("left",))         # the left arm's node
    # the left node refuses a command: it holds at once and tells the cell
    ev = HoldEvent("arm/left", "left", "refusal", "joint_limit")
    left.report(ev)
    cell.report(HoldEvent.from_json(ev.to_json()))
    state = state_from_json(state_to_json(cell.state()))
    assert right.follow(state) and right.held("right")         # the other arm's process holds too
    left.follow(state)
    # an old resume (made before the left hold began) does not clear it; the operator's next one does
    stale = dict(state, held=False, arms={"left": {"held": False}, "right": {"held": False}}, resumes=0)
    left.follow(stale)
    assert left.held("left")
    cell.resume()
    state = cell.state()
    left.follow(state), right.follow(state)
    assert not left.held() and not right.held()
    # a restarted cell supervisor counts resumes from 0 again: a follower rebases and re-reports its holds
    left.report(HoldEvent("arm/left", "left", "fault", "controller error 0x5"))
    fresh = CellSupervisor("coupled")
    left.rebase(fresh.resumes)
    for e in left.standing_events():
        fresh.report(e)
    assert fresh.held("right")
    fresh.resume()
    left.follow(fresh.state())
    assert not left.held()


def test_an_unreadable_hold_state_holds_everything():
    st = state_from_json("{not json")
    assert st["held"] and all(v["held"] for v in st["arms"].values())
    follower = CellSupervisor(arms=("left",))
    assert follower.follow(st) and follower.held("left")


def test_heartbeat_lapse_fires_once_and_nothing_counts_as_alive_before_the_first_beat():
    clk = Clock()
    hb = HeartbeatWatch(0.5, clock=clk)
    assert not hb.alive() and not hb.check()                 # never seen: not alive, but no lapse
    hb.beat()
    clk.t = 0.4
    assert hb.alive() and not hb.check()
    clk.t = 0.6
    assert not hb.alive() and hb.check() and not hb.check()  # one lapse, reported once
    hb.beat()
    assert hb.alive() and hb.lapses == 1
    # this process stalled (the check itself comes late): no verdict until a timely check
    stalls = hb.own_stalls
    clk.t = 2.0
    assert not hb.check() and hb.own_stalls == stalls + 1
    clk.t = 2.1
    assert hb.check() and hb.lapses == 2


def test_refusal_logs_are_throttled_with_counts_and_first_and_last_kept(caplog):
    clk = Clock()
    tl = ThrottledLog(logging.getLogger("test_throttle"), period_s=5.0, clock=clk)
    with caplog.at_level(logging.WARNING, logger="test_throttle"):
        for i in range(2712):
            clk.t = i * 0.033                                  # 2,712 refusals in 90 s
            tl("too_fast", f"refused #{i}")
    assert 15 <= len(caplog.records) <= 20                      # one line per 5 s, not 2,712
    # the second line says how many it stood for: every refusal of the 5 s since the first (5 / 0.033 = 151)
    assert "+151 more like it in the last 5.0 s" in caplog.records[1].getMessage()
    assert tl.first["too_fast"] == "refused #0" and tl.last["too_fast"] == "refused #2711"


def test_the_safety_layer_logs_a_flood_of_refusals_in_a_few_lines_and_counts_every_one(caplog):
    from ate_drivers.safety import Refused, SafetyFilter

    f = SafetyFilter("left")
    q0 = np.zeros(7)
    with caplog.at_level(logging.WARNING, logger="ate_drivers.safety"):
        for i in range(500):
            with pytest.raises(Refused):
                f.check_arm(q0 + 0.5 + i * 1e-3, q0, now_s=0.0)
    lines = [r for r in caplog.records if "command refused" in r.getMessage()]
    assert len(lines) == 1                                      # within 5 s: the first line only
    d = f.diagnostics()
    assert d["refused_too_fast"] == "500" and d["refused_total"] == "500"
    assert "0.5000 rad" in d["first_refusal"] and "0.9990 rad" in d["last_refusal"]


def test_a_controller_that_stops_following_on_one_arm_holds_both_with_the_shipped_bound():
    """Each arm: the arm driver + real SDK + emulated controller (the streaming tests' rig); the left controller
    stalls (brake / collision without an error report) while the policy keeps streaming: the left driver's
    tracking guard refuses, and the supervisor stops the right arm too, whose next commands are refused."""
    from test_arm_streaming import HOME, Rig

    from ate_drivers.supervisor import DriverWatch, apply_holds, gate

    left, right = Rig(), Rig()
    try:
        sup = CellSupervisor("coupled")
        apply_holds(sup, [("left", left.drv), ("right", right.drv)])
        watches = [DriverWatch("arm", "left", left.drv), DriverWatch("arm", "right", right.drv)]

        def step(tick: int, target_l, target_r):
            for rig, target, arm in ((left, target_l, "left"), (right, target_r, "right")):
                ok = gate(sup, arm, rig.drv.safety)
                rig.step(target if ok and tick % 10 == 0 else None)
            for w in watches:
                for ev in w.poll():
                    sup.report(ev)
        for k in range(20):                                  # both streaming normally
            step(k, HOME + 0.03 * (k // 10 + 1), HOME + 0.03 * (k // 10 + 1))
        assert not sup.held()
        left.emu.faults.stalled = True
        q_stall = np.radians(left.emu.joints_deg())
        stops_right = len(right.emu.commands("set_arm_stop"))
        for k in range(20, 140):                             # the policy keeps going at 0.6 rad/s on both arms
            q = q_stall + 0.03 * ((k - 20) // 10 + 1)
            step(k, q, q)
            if sup.held():
                break
        assert sup.held("left") and sup.held("right") and "tracking" in sup.reason()
        assert len(right.emu.commands("set_arm_stop")) == stops_right + 1   # the healthy arm was stopped too
        n = right.frames()
        for k in range(10):
            step(10 * k, None, np.radians(right.emu.joints_deg()) + 0.01)
        assert right.drv.safety.refusals["held"] == 10 and right.frames() == n   # nothing reached it
    finally:
        left.close()
        right.close()


# --- both arms in one process: the sim runner ------------------------------------------------------------------
@pytest.fixture
def runner():
    pytest.importorskip("mujoco")
    from ate_drivers.config import DriversConfig, SimSettings
    from ate_sim.runner import SimRunner

    r = SimRunner(DriversConfig(robot="sim", sim=SimSettings(task="cook_bun", image_height=16, image_width=16)),
                  cameras=())
    r.start()
    yield r
    r.close()


def test_sim_a_refused_command_on_one_arm_holds_the_other_at_once(runner):
    reading = runner.read()
    t = runner.sim_time()
    q = {a: reading.arms[a].q_rad for a in ("left", "right")}
    assert runner.command_arm("right", [], q["right"] + 0.02, t)
    assert not runner.command_arm("left", [], q["left"] + 0.5, t)    # far beyond one tick's step: refused
    assert runner.supervisor.held("left") and runner.supervisor.held("right")
    assert "too_fast" in runner.supervisor.reason()
    # the right arm, commanded fine a tick ago, refuses its next command and stays where it is
    for k in range(1, 6):
        runner.step()
        assert not runner.command_arm("right", [], q["right"] + 0.02 * (k + 1), runner.sim_time())
    assert runner.arms["right"].safety.refusals["held"] == 5
    assert np.max(np.abs(runner.read().arms["right"].q_rad - q["right"])) < 0.03
    diag = {name: (level, msg) for name, level, msg, _ in runner.diagnostics()}
    assert diag["arm/right"][0] == 2 and "cell hold" in diag["arm/right"][1]
    # only an explicit resume lets commands through again (judged against the measured position)
    assert runner.resume()[0]
    q_now = runner.read().arms["right"].q_rad
    assert runner.command_arm("right", [], q_now + 0.01, runner.sim_time())


def test_sim_independent_coupling_from_the_task_holds_only_the_refusing_arm(runner):
    from ate_drivers.supervisor import CellSupervisor

    runner.supervisor.coupling = "independent"   # what a task's `safety: {coupling: independent}` sets
    assert isinstance(runner.supervisor, CellSupervisor)
    reading = runner.read()
    t = runner.sim_time()
    runner.command_arm("left", [], reading.arms["left"].q_rad + 0.5, t)
    assert runner.supervisor.held("left") and not runner.supervisor.held("right")
    assert runner.command_arm("right", [], reading.arms["right"].q_rad + 0.01, t)


def test_sim_estop_holds_the_grippers_at_their_measured_opening(runner):
    g0 = {a: runner.read().grippers[a].position for a in ("left", "right")}
    for a in ("left", "right"):
        assert runner.command_gripper(a, 0.2)                     # closing, under way
    runner.step(0.1)
    moving = {a: runner.read().grippers[a].position for a in ("left", "right")}
    assert all(moving[a] < g0[a] - 0.01 for a in moving)
    runner.estop.trigger("test")
    held_at = {a: runner.read().grippers[a].position for a in ("left", "right")}
    for _ in range(10):
        runner.step()
    after = {a: runner.read().grippers[a].position for a in ("left", "right")}
    for a in ("left", "right"):
        assert abs(after[a] - held_at[a]) < 0.02, (a, held_at, after)   # stopped, not closed to 0.2
        assert runner.grippers[a].holds_sent == 1
