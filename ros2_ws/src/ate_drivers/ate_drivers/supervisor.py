"""The cell safety supervisor: one hold state for the whole cell, without ROS.

A refusal, a fault, a tracking violation or stale input on either arm (or an escalation of the policy runtime,
or a silent e-stop node) *holds* the cell: with ``safety.coupling: coupled`` (the default) both arms and both
grippers stop where they are, with ``independent`` only the arm it concerns (an event without an arm, e.g. the
policy's, holds every arm in either mode). A hold is latched: nothing clears it but an explicit
:meth:`CellSupervisor.resume` (the ``/cell/resume`` service), and commands a held arm receives are refused with
the reason ``held``. Why one supervisor: a refusal that freezes one arm while the other keeps executing its
chunk is dangerous in a handover (cook_bun passes the bun between the arms).

Where it runs (docs/drivers.md, "Cell supervisor"):

* Each process that drives arms holds a :class:`CellSupervisor` over its own arms (an arm node: one arm; the sim
  node and ``ate_policy eval``'s ``SimRunner``: both). Its :class:`DriverWatch` turns what the drivers count
  (refusals, controller errors, lost connections, gripper faults) into :class:`HoldEvent` and the local hold
  acts at once, in-process, with no message on the way.
* The cell's supervisor runs in the e-stop node, which every graph that starts drivers includes. Processes
  publish their events on ``/cell/events``; it applies the coupling across processes and publishes the hold
  state (:meth:`CellSupervisor.state`, JSON) latched on ``/cell/hold``; every driver, the policy node and the
  teleop node follow it (:meth:`CellSupervisor.follow`).
* A process's local hold ends only when the cell's state says an operator resumed *after* it began
  (``resumes`` counts them), so an event still on its way cannot be cleared by an older resume.

Pure Python, no rclpy; the clock is injected.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

COUPLINGS = ("coupled", "independent")
ARMS = ("left", "right")

# Refusals that are the consequence of a hold or an e-stop, never the cause of a new one.
NON_HOLDING_REFUSALS = frozenset({"held", "estop", "estop_unseen"})


@dataclass(frozen=True)
class HoldEvent:
    source: str            # who saw it: "arm/left", "gripper/right", "policy", "estop"
    arm: str | None        # the arm it concerns; None = the whole cell
    kind: str              # refusal | fault | tracking | stale | disconnected | inference_deadline | estop_lapse
    detail: str = ""
    t_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> "HoldEvent":
        d = json.loads(text)
        return HoldEvent(str(d["source"]), d.get("arm"), str(d["kind"]), str(d.get("detail", "")),
                         float(d.get("t_s", 0.0)))


@dataclass
class ArmHold:
    kind: str
    detail: str
    source: str
    since_s: float
    resumes_at_hold: int   # the cell's resume count when the hold began (a later resume clears it)


class CellSupervisor:
    """The hold state of some arms of the cell (see the module docstring)."""

    def __init__(self, coupling: str = "coupled", arms: Iterable[str] = ARMS, clock=time.monotonic,
                 name: str = "cell"):
        if coupling not in COUPLINGS:
            raise ValueError(f"safety.coupling must be one of {COUPLINGS}, got {coupling!r}")
        self.coupling = coupling
        self.arms = tuple(arms)
        self.clock = clock
        self.name = name
        self._holds: dict[str, ArmHold] = {}
        self._lock = threading.RLock()
        self._listeners: list[Callable[[dict], None]] = []
        self.resumes = 0          # resumes so far (the cell's count when following it)
        self.events = Counter()   # events by kind
        self.hold_count = 0       # holds begun
        self.last_event: HoldEvent | None = None
        self.seq = 0              # state changes
        self.epoch = uuid.uuid4().hex[:8]   # tells followers a restarted supervisor from the one they knew

    # --- listeners ------------------------------------------------------------------------------------------
    def add_listener(self, fn: Callable[[dict], None]) -> None:
        """``fn(state)`` after every change of the hold state (in the caller's thread)."""
        self._listeners.append(fn)

    def _changed(self) -> None:
        self.seq += 1
        st = self.state()
        for fn in list(self._listeners):
            try:
                fn(st)
            except Exception as e:  # noqa: BLE001  (one listener failing must not keep the others from holding)
                log.error("hold listener failed: %s", e)

    # --- queries --------------------------------------------------------------------------------------------
    def held(self, arm: str | None = None) -> bool:
        """Whether ``arm`` is held (None: whether any arm is)."""
        with self._lock:
            return bool(self._holds) if arm is None else arm in self._holds

    def hold_of(self, arm: str) -> ArmHold | None:
        return self._holds.get(arm)

    def reason(self) -> str:
        """One line: why the cell holds ('' when it does not)."""
        with self._lock:
            if not self._holds:
                return ""
            arm, h = min(self._holds.items(), key=lambda kv: kv[1].since_s)
            return f"{h.kind} on {h.source}: {h.detail}" if h.detail else f"{h.kind} on {h.source}"

    # --- events ---------------------------------------------------------------------------------------------
    def targets(self, event: HoldEvent) -> tuple[str, ...]:
        """The arms an event holds under this supervisor's coupling."""
        if event.arm is None or self.coupling == "coupled":
            return self.arms
        return (event.arm,) if event.arm in self.arms else ()

    def report(self, event: HoldEvent) -> bool:
        """Hold the arms ``event`` concerns; True when the hold state changed."""
        with self._lock:
            self.events[event.kind] += 1
            self.last_event = event
            new = [a for a in self.targets(event) if a not in self._holds]
            t = self.clock()
            for a in new:
                self._holds[a] = ArmHold(event.kind, event.detail, event.source, t, self.resumes)
            if new:
                self.hold_count += 1
        if new:
            log.error("[%s] HOLD %s: %s on %s%s", self.name, ",".join(new), event.kind, event.source,
                      f" ({event.detail})" if event.detail else "")
            self._changed()
        return bool(new)

    def resume(self, blocked_by: str = "") -> tuple[bool, str]:
        """The operator's explicit resume; ``blocked_by`` (e.g. 'e-stop latched') refuses it with that reason."""
        if blocked_by:
            return False, f"cannot resume: {blocked_by}"
        with self._lock:
            was = sorted(self._holds)
            self._holds.clear()
            self.resumes += 1
        log.warning("[%s] resumed by the operator%s", self.name, f" (was holding {','.join(was)})" if was else "")
        self._changed()
        return True, f"resumed (was holding {', '.join(was)})" if was else "resumed (nothing was held)"

    def clear(self) -> None:
        """Forget every hold without counting a resume (a new sim episode: a fresh world)."""
        with self._lock:
            had = bool(self._holds)
            self._holds.clear()
        if had:
            self._changed()

    # --- following the cell's supervisor (another process) ----------------------------------------------------
    def follow(self, state: dict) -> bool:
        """Apply the cell's published state to the arms this supervisor holds: a held arm there is held here;
        a local hold ends when the cell counts a resume made after it began. True when the state changed."""
        arms = state.get("arms", {}) or {}
        resumes = int(state.get("resumes", 0))
        changed = False
        with self._lock:
            for a in self.arms:
                remote = arms.get(a)
                local = self._holds.get(a)
                if remote and remote.get("held"):
                    if local is None:
                        self._holds[a] = ArmHold(str(remote.get("kind", "cell")), str(remote.get("detail", "")),
                                                 str(remote.get("source", "cell")), self.clock(), resumes)
                        self.hold_count += 1
                        changed = True
                elif local is not None and resumes > local.resumes_at_hold:
                    del self._holds[a]
                    changed = True
            if resumes > self.resumes:
                self.resumes = resumes
        if changed:
            self._changed()
        return changed

    def rebase(self, resumes: int) -> None:
        """A (re)started cell supervisor counts resumes from ``resumes``: the next one ends every local hold."""
        with self._lock:
            self.resumes = resumes
            for h in self._holds.values():
                h.resumes_at_hold = resumes

    def standing_events(self) -> list[HoldEvent]:
        """One event per held arm, to tell a (re)started cell supervisor what holds here."""
        with self._lock:
            return [HoldEvent(h.source, a, h.kind, h.detail, h.since_s) for a, h in self._holds.items()]

    # --- state ----------------------------------------------------------------------------------------------
    def state(self) -> dict:
        """The hold state as published on ``/cell/hold`` (JSON-able)."""
        with self._lock:
            arms = {}
            for a in self.arms:
                h = self._holds.get(a)
                arms[a] = ({"held": True, "kind": h.kind, "detail": h.detail, "source": h.source,
                            "since_s": round(h.since_s, 3)} if h else {"held": False})
            return {"held": bool(self._holds), "coupling": self.coupling, "arms": arms, "reason": self.reason(),
                    "resumes": self.resumes, "holds": self.hold_count, "seq": self.seq, "epoch": self.epoch}

    def diagnostics(self) -> tuple[int, str, dict[str, str]]:
        """(level, message, key values): error while anything is held."""
        st = self.state()
        d = {"held": str(st["held"]), "coupling": self.coupling, "resumes": str(self.resumes),
             "holds": str(self.hold_count), "reason": st["reason"]}
        d.update({f"held_{a}": str(v["held"]) for a, v in st["arms"].items()})
        d.update({f"events_{k}": str(n) for k, n in sorted(self.events.items())})
        if st["held"]:
            return 2, f"HOLD ({st['reason']}): call /cell/resume", d
        return 0, "ok", d


def apply_holds(supervisor: CellSupervisor, drivers: Iterable[tuple[str, object]]) -> None:
    """Hold every driver of an arm the moment ``supervisor`` holds that arm: ``driver.hold()`` stops an arm
    through its SDK and keeps a gripper at its measured opening. ``drivers``: (arm, driver) pairs."""
    drivers = list(drivers)
    applied: set[str] = set()

    def on_change(state: dict) -> None:
        for arm, info in state["arms"].items():
            if info.get("held") and arm not in applied:
                applied.add(arm)
                for a, drv in drivers:
                    if a == arm:
                        drv.hold()
            elif not info.get("held"):
                applied.discard(arm)
    supervisor.add_listener(on_change)


def gate(supervisor: CellSupervisor, arm: str, safety_filter) -> bool:
    """True when a command for ``arm`` may go on; while the arm is held it is refused (reason ``held``)."""
    if supervisor.held(arm):
        safety_filter.refuse("held", f"the cell holds ({supervisor.reason()}); call /cell/resume")
        return False
    return True


def state_to_json(state: dict) -> str:
    return json.dumps(state, sort_keys=True)


def state_from_json(text: str) -> dict:
    """The ``/cell/hold`` payload; a malformed one is treated as 'everything held' (never as 'all clear')."""
    try:
        st = json.loads(text)
        if not isinstance(st, dict) or not isinstance(st.get("arms", {}), dict):
            raise ValueError("not a hold state")
        return st
    except ValueError as e:
        return {"held": True, "arms": {a: {"held": True, "kind": "bad_hold_state", "detail": str(e),
                                           "source": "cell"} for a in ARMS}, "resumes": 0,
                "reason": f"unreadable /cell/hold: {e}"}


class DriverWatch:
    """Turns what one driver decides into :class:`HoldEvent` (drained by :meth:`poll` in the node's thread).

    Hooks used when the driver has them: its safety filter's refusal listener (``safety.add_listener``), and
    the arm driver's events (``add_event_listener``: ``hold`` when it stopped the arm by itself, e.g. tracking,
    ``controller_error``, ``disconnected``); they may fire on the driver's streaming thread, so they are queued
    here and turned into events by :meth:`poll`. What has no hook is polled: the refusal counters, the
    connection flag, controller error codes, the gripper's fault code. Refusals that a hold or the e-stop caused
    (``held``, ``estop``, ``estop_unseen``) are not events.
    """

    def __init__(self, kind: str, arm: str, driver):
        import collections

        self.kind, self.arm, self.driver = kind, arm, driver
        self.source = f"{kind}/{arm}"
        self._queue: collections.deque = collections.deque()
        add_refusal = getattr(driver.safety, "add_listener", None)
        self._refusal_hook = add_refusal is not None
        if add_refusal is not None:
            add_refusal(lambda reason, detail: self._queue.append(("refused", f"{reason}: {detail}")))
        add_event = getattr(driver, "add_event_listener", None)
        self._event_hook = add_event is not None
        if add_event is not None:
            add_event(lambda k, detail: self._queue.append((k, detail))
                      if k in ("hold", "controller_error", "disconnected") else None)
        self._refused = self._count()
        self._connected = bool(getattr(driver, "connected", False))
        self._fault = 0

    def _count(self) -> int:
        r = self.driver.safety.refusals
        return sum(n for k, n in r.items() if k not in NON_HOLDING_REFUSALS)

    def _event(self, what: str, detail: str, t_s: float) -> HoldEvent | None:
        if what == "refused":
            reason = detail.split(":", 1)[0].strip()
            if reason in NON_HOLDING_REFUSALS:
                return None
            kind = "stale" if reason in ("stale", "future_stamp") else "tracking" if reason == "tracking" \
                else "refusal"
            return HoldEvent(self.source, self.arm, kind, detail, t_s)
        if what == "hold":
            reason = detail.split(":", 1)[0].strip()
            return HoldEvent(self.source, self.arm, "tracking" if reason == "tracking" else "fault", detail, t_s)
        if what == "controller_error":
            return HoldEvent(self.source, self.arm, "fault", f"controller error {detail}", t_s)
        return HoldEvent(self.source, self.arm, "disconnected", detail, t_s)

    def poll(self, t_s: float = 0.0) -> list[HoldEvent]:
        out: list[HoldEvent] = []
        while self._queue:
            ev = self._event(*self._queue.popleft(), t_s)
            if ev is not None:
                out.append(ev)
        if not self._refusal_hook:
            n = self._count()
            if n > self._refused:
                ev = self._event("refused", self.driver.safety.last_refusal or "refused", t_s)
                if ev is not None:
                    out.append(ev)
            self._refused = n
        st = getattr(self.driver, "state", None)
        if not self._event_hook:
            connected = bool(getattr(self.driver, "connected", False))
            if self._connected and not connected:
                out.append(HoldEvent(self.source, self.arm, "disconnected",
                                     str(getattr(self.driver, "last_error", "")), t_s))
            self._connected = connected
        if not self._event_hook and self.kind == "arm":
            errors = list(getattr(st, "errors", None) or []) if st is not None else []
            code = errors[0] if errors else 0
            if code and code != self._fault:
                out.append(HoldEvent(self.source, self.arm, "fault", f"controller errors {errors}", t_s))
            self._fault = code
        if self.kind == "gripper":
            fault = int(getattr(st, "fault", 0) or 0) if st is not None else 0
            if fault and fault != self._fault:
                out.append(HoldEvent(self.source, self.arm, "fault", f"gripper fault {fault}", t_s))
            self._fault = fault
        return out


class HeartbeatWatch:
    """The e-stop node's liveliness as a driver sees it: its heartbeat must arrive every ``timeout_s``.

    ``alive()`` is False before the first beat (commands are refused: an e-stop that is not there cannot stop
    anything) and after a lapse; :meth:`check` returns True once, at the moment of a lapse (the caller then
    latches its e-stop, which only ``/estop/reset`` clears).
    """

    def __init__(self, timeout_s: float, clock=time.monotonic):
        self.timeout_s = float(timeout_s)
        self.clock = clock
        self.last_beat: float | None = None
        self.lapses = 0
        self._lapsed = False
        self._last_check: float | None = None
        self.own_stalls = 0

    @property
    def enabled(self) -> bool:
        return self.timeout_s > 0

    def beat(self) -> None:
        self.last_beat = self.clock()
        self._lapsed = False

    def alive(self) -> bool:
        if not self.enabled:
            return True
        return self.last_beat is not None and self.clock() - self.last_beat <= self.timeout_s

    def check(self) -> bool:
        """True exactly once per lapse (the beat had been seen and stopped for longer than the timeout).

        Called from a periodic timer: when this check itself comes more than half a timeout late, it is this
        process that stalled (beats may be waiting in its queue), so the judgement waits for the next check."""
        now = self.clock()
        last_check, self._last_check = self._last_check, now
        if last_check is not None and now - last_check > self.timeout_s / 2:
            self.own_stalls += 1
            return False
        if not self.enabled or self.last_beat is None or self._lapsed or self.alive():
            return False
        self._lapsed = True
        self.lapses += 1
        return True

    def age_s(self) -> float | None:
        return None if self.last_beat is None else self.clock() - self.last_beat


class ThrottledLog:
    """Refusal logging without a flood: the first of each reason is logged, then at most one line per
    ``period_s`` per reason with the count since the last line; full counts stay in diagnostics.

    (A misbehaving policy once printed 2,712 refusal lines in 90 s.)
    """

    def __init__(self, logger: logging.Logger, period_s: float = 5.0, clock=time.monotonic):
        self.logger, self.period_s, self.clock = logger, period_s, clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self.first: dict[str, str] = {}
        self.last: dict[str, str] = {}

    def __call__(self, key: str, message: str, level: int = logging.WARNING) -> bool:
        """Log ``message`` under ``key`` unless one went out within ``period_s``; True when it was logged."""
        now = self.clock()
        self.first.setdefault(key, message)
        self.last[key] = message
        t = self._last.get(key)
        if t is not None and now - t < self.period_s:
            self._suppressed[key] += 1
            return False
        n = self._suppressed.pop(key, 0)
        self._last[key] = now
        self.logger.log(level, "%s%s", message, f" (+{n} more like it in the last {now - t:.1f} s)"
                        if n and t is not None else "")
        return True
