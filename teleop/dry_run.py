"""The one-command dry run of the dual-operator teleop without hardware (``teleop_dual.launch.py dry_run:=true``).

What it stands in for, and nothing else:

* two Vision Pro headsets: two hand-tracking emulators (``teleop.avp_server``, the avp_stream gRPC protocol) on
  127.0.0.1 and 127.0.0.2, each streaming a hand that circles slowly in front of the operator;
* two Joy-Cons: scripted presses (``buttons_source: scripted``), counted in wall seconds from ``connect()``:
  both operators hold *init* (align) from 3 to 5 s, the left operator presses *record* at 7 s and the right one
  presses it again at 13 s: one episode of about 6 s is recorded and saved. Each press is held 1.5 s: buttons
  are read once per control tick, and a lockstep tick on a loaded CPU can take longer than a short tap (a held
  button fires once).

Everything else is the real teleop: the avp_stream clients, the frame mapping, the IK, the safety layer, the
recorder; the bring-up runs the simulated cell in lockstep (a realtime sim cannot hold 20 Hz on a CPU).
"""

from __future__ import annotations

import copy

from teleop.avp_server import HandTrackingEmulator, circle, zup_to_yup

HEADSET_IPS = {"left": "127.0.0.1", "right": "127.0.0.2"}
# wall seconds after connect(): hold init (align), release (teleop starts), record on, record off (save)
INIT_S, RECORD_S, STOP_S = (3.0, 5.0), (7.0, 8.5), (13.0, 14.5)
# Where each emulated hand circles (Z-up, m): in front of its operator, left of centre for the left arm.
_HAND_CENTRE = {"left": (0.35, 0.2, 1.1), "right": (0.35, -0.2, 1.1)}


def dry_run_overrides(overrides: dict | None = None) -> dict:
    """teleop.yaml overrides for the dry run, merged over ``overrides`` (the launch arguments' ones)."""
    out = copy.deepcopy(overrides or {})
    scripts = {"left": [[*INIT_S, "right"], [*RECORD_S, "up"]], "right": [[*INIT_S, "right"], [*STOP_S, "up"]]}
    for arm, script in scripts.items():
        op = out.setdefault(arm, {})
        avp = op.setdefault("avp", {})
        avp["ip"] = HEADSET_IPS[arm]
        avp["hand"] = "right"                 # the emulators stream the moving hand as the right one
        # lockstep ticks can be slower than the tracker on a loaded machine: a slow tick is not a frozen hand
        avp["frozen_after_ms"] = 30_000.0
        op["buttons_source"] = "scripted"
        op["button_script"] = script
    return out


class EmulatedHeadsets:
    """The two headset emulators, each with a hand circling 3 cm at a 6 s period."""

    def __init__(self):
        self.emulators = [
            HandTrackingEmulator(ip, right_wrist=lambda t, c=_HAND_CENTRE[arm]: zup_to_yup(circle(c, 0.03, 6.0)(t)))
            for arm, ip in HEADSET_IPS.items()]

    def start(self) -> "EmulatedHeadsets":
        started = []
        try:
            for emu in self.emulators:
                started.append(emu.start())
        except Exception:
            for emu in started:
                emu.stop(grace_s=0.1)
            raise
        return self

    def stop(self) -> None:
        for emu in self.emulators:
            emu.stop(grace_s=0.2)
