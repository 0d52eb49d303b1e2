"""Operator buttons: a small ``ButtonSource`` protocol, the Joy-Con backend, a scripted fake, and the mapping.

* ``ButtonSource.read()`` gives the *raw* state of one controller: the names of the buttons held now, the
  stick (-1..1) and the age of the newest report on the source's own clock (``None`` before any report).
* ``ButtonMap`` turns raw buttons into **logical events** through the YAML mapping (``ButtonMapConfig``) with
  edge detection: a press fires once however long the button is held (``pressed``), and ``held`` tells what is
  down now (the clutch is a held button).
* ``JoyConSource`` reads a Joy-Con over ``joycon-python`` (``pyjoycon``) + ``hidapi``. pyjoycon's ``JoyCon``
  opens ``hid.device().open(vendor, product, serial=None)``: it ignores the serial it is given, so two
  Joy-Cons of one side (two operators each holding an L) would both open the first. We enumerate
  ``hid.enumerate(0x057E, 0x2006 / 0x2007)`` ourselves and open the chosen one by its hidraw path.
* ``ScriptedButtons`` is a fake at this interface for tests and the sim: HID needs the device (and
  ``/dev/hidraw*`` access), which no CI machine has.

Raw button names (pyjoycon's ``get_status()``): right Joy-Con ``a b x y r zr sr sl plus home r-stick``,
left Joy-Con ``up down left right l zl sr sl minus capture l-stick``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ate_description.errors import UserError

log = logging.getLogger(__name__)

JOYCON_VENDOR_ID = 0x057E
JOYCON_PRODUCT_IDS = {"L": 0x2006, "R": 0x2007}
RAW_BUTTONS = {
    "R": ("a", "b", "x", "y", "r", "zr", "sr", "sl", "plus", "home", "r-stick"),
    "L": ("up", "down", "left", "right", "l", "zl", "sr", "sl", "minus", "capture", "l-stick"),
}
EVENTS = ("init", "clutch", "gripper_toggle", "gripper_open", "gripper_close", "record", "discard", "estop",
          "home")


@dataclass(frozen=True)
class RawButtons:
    pressed: frozenset[str]     # raw names held now
    stick: tuple[float, float]  # (horizontal, vertical), -1..1, dead zone applied
    age_s: float                # age of the newest controller report


@runtime_checkable
class ButtonSource(Protocol):
    def open(self) -> None: ...
    def read(self) -> RawButtons | None:
        """Newest state; None before the first report."""
    def close(self) -> None: ...


# --- mapping ------------------------------------------------------------------------------------------------

def _default_mapping() -> dict[str, str]:
    # An L Joy-Con in the free (left) hand, the right wrist tracked (paper, appendix I). E-stop on the capture
    # button: nothing else uses it, it is under the thumb, and it cannot be hit by squeezing the grip.
    return {"init": "right", "clutch": "l", "gripper_toggle": "zl", "record": "up", "discard": "down",
            "home": "left", "estop": "capture"}


@dataclass
class ButtonMapConfig:
    side: str = "L"                                  # L | R: which Joy-Con this operator holds
    # logical event -> raw button name; events left out are simply not available on this controller
    mapping: dict[str, str] = field(default_factory=_default_mapping)
    # A controller silent for this long is lost: the arm holds (the operator would have no e-stop button).
    max_age_ms: float = 500.0

    def validate(self) -> None:
        if self.side not in RAW_BUTTONS:
            raise UserError(f"buttons.side must be 'L' or 'R', got {self.side!r}")
        unknown_events = set(self.mapping) - set(EVENTS)
        if unknown_events:
            raise UserError(f"unknown button events {sorted(unknown_events)}; events are {list(EVENTS)}")
        bad = {e: b for e, b in self.mapping.items() if b not in RAW_BUTTONS[self.side]}
        if bad:
            raise UserError(f"buttons {bad} do not exist on a {self.side} Joy-Con; its buttons are "
                            f"{list(RAW_BUTTONS[self.side])}")
        used: dict[str, str] = {}
        for e, b in self.mapping.items():
            if b in used:
                raise UserError(f"button {b!r} is mapped to both {used[b]!r} and {e!r}")
            used[b] = e
        if self.max_age_ms <= 0:
            raise UserError("buttons.max_age_ms must be positive")


@dataclass(frozen=True)
class ButtonEvents:
    pressed: frozenset[str]     # logical events whose button went down since the last update (fire once)
    held: frozenset[str]        # logical events whose button is down now
    stick: tuple[float, float]
    lost: bool                  # no report, or the newest is older than max_age_ms

    def __contains__(self, event: str) -> bool:
        return event in self.pressed


class ButtonMap:
    """Raw buttons -> logical events with edge detection."""

    def __init__(self, cfg: ButtonMapConfig | None = None):
        self.cfg = cfg or ButtonMapConfig()
        self.cfg.validate()
        self._by_button = {b: e for e, b in self.cfg.mapping.items()}
        self._held: frozenset[str] = frozenset()

    def update(self, raw: RawButtons | None) -> ButtonEvents:
        if raw is None or raw.age_s * 1000.0 > self.cfg.max_age_ms:
            # Nothing is held while lost; the state before the gap is kept, so a button held across it does
            # not fire a second time when the controller comes back.
            return ButtonEvents(frozenset(), frozenset(), (0.0, 0.0), True)
        held = frozenset(self._by_button[b] for b in raw.pressed if b in self._by_button)
        pressed = held - self._held
        self._held = held
        return ButtonEvents(pressed, held, raw.stick, False)


# --- scripted fake ------------------------------------------------------------------------------------------

class ScriptedButtons:
    """Buttons held over time windows of a clock the caller controls (tests, sim), or set by hand.

    ``script``: ``(t_start_s, t_end_s, raw_button)`` triples; a button is held for ``t_start <= t < t_end``.
    Without a ``clock`` the script time counts from ``open()`` (monotonic): what a node configured with
    ``buttons_source: scripted`` uses for unattended runs. ``hold(name)`` / ``release(name)`` hold buttons
    independently of the script.
    """

    def __init__(self, script: Iterable[tuple[float, float, str]] = (),
                 clock: Callable[[], float] | None = None, side: str = "L"):
        self.script = [(float(a), float(b), str(n)) for a, b, n in script]
        self._t0 = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - self._t0)
        self.side = side
        unknown = {n for _, _, n in self.script} - set(RAW_BUTTONS[side])
        if unknown:
            raise ValueError(f"scripted buttons {sorted(unknown)} do not exist on a {side} Joy-Con")
        self._manual: set[str] = set()
        self.stick = (0.0, 0.0)
        self.connected = False

    def open(self) -> None:
        self._t0 = time.monotonic()
        self.connected = True

    def hold(self, name: str) -> None:
        self._manual.add(name)

    def release(self, name: str) -> None:
        self._manual.discard(name)

    def press_at(self, t_s: float, name: str, duration_s: float = 0.1) -> None:
        self.script.append((t_s, t_s + duration_s, name))

    def read(self) -> RawButtons | None:
        if not self.connected:
            return None
        t = self.clock()
        held = {n for a, b, n in self.script if a <= t < b} | self._manual
        return RawButtons(frozenset(held), self.stick, 0.0)

    def close(self) -> None:
        self.connected = False


# --- Joy-Con ------------------------------------------------------------------------------------------------

@dataclass
class JoyConConfig:
    side: str = "L"
    # Which controller: its Bluetooth serial (the MAC address hidapi reports, e.g. "98:b6:e9:..") or its
    # hidraw path ("/dev/hidraw3"). Empty: the only Joy-Con of that side (an error if there are several).
    serial: str = ""
    path: str = ""
    # Stick: raw 12-bit readings; centre and half-range of a typical Joy-Con, dead zone against drift.
    stick_center: float = 2048.0
    stick_range: float = 1400.0
    stick_deadzone: float = 0.15


def list_joycons(side: str | None = None) -> list[dict]:
    """hidapi's descriptors of the connected Joy-Cons (of one side, or both)."""
    import hid

    sides = [side] if side else list(JOYCON_PRODUCT_IDS)
    out = []
    for s in sides:
        for d in hid.enumerate(JOYCON_VENDOR_ID, JOYCON_PRODUCT_IDS[s]):
            out.append({**d, "side": s})
    return out


def select_joycon(devices: list[dict], cfg: JoyConConfig) -> dict:
    """The descriptor ``cfg`` names, or a ``UserError`` listing what is there."""
    def describe(ds):
        return ", ".join(f"{d.get('serial_number') or '?'} at {_path_str(d.get('path'))}"
                         for d in ds) or "none"

    if cfg.path:
        hits = [d for d in devices if _path_str(d.get("path")) == cfg.path]
    elif cfg.serial:
        hits = [d for d in devices if (d.get("serial_number") or "").lower() == cfg.serial.lower()]
    else:
        hits = list(devices)
        if len(hits) > 1:
            raise UserError(f"{len(hits)} {cfg.side} Joy-Cons connected ({describe(hits)}): "
                            "set joycon.serial or joycon.path for each operator")
    if not hits:
        want = f"path {cfg.path}" if cfg.path else (f"serial {cfg.serial}" if cfg.serial else "any")
        raise UserError(f"no {cfg.side} Joy-Con with {want} (connected: {describe(devices)}); pair it over "
                        "Bluetooth and check /dev/hidraw* permissions (udev rule)")
    return hits[0]


def _path_str(p) -> str:
    return p.decode() if isinstance(p, bytes) else str(p)


def _joycon_class():
    from pyjoycon import JoyCon

    class PathJoyCon(JoyCon):
        """pyjoycon's JoyCon opened by hidraw path (its own ``_open`` ignores the serial number)."""

        def __init__(self, path: bytes, product_id: int, serial: str | None):
            self._hid_path = path
            super().__init__(JOYCON_VENDOR_ID, product_id, serial)

        def _open(self, vendor_id, product_id, serial):
            import hid

            dev = hid.device()
            try:
                dev.open_path(self._hid_path)
            except OSError as e:
                raise OSError(f"cannot open Joy-Con at {_path_str(self._hid_path)}: {e} "
                              "(permissions of /dev/hidraw*?)") from e
            return dev

    return PathJoyCon


class JoyConSource:
    """One Joy-Con as a ``ButtonSource`` (pyjoycon's input thread reports at ~60 Hz)."""

    def __init__(self, cfg: JoyConConfig | None = None):
        self.cfg = cfg or JoyConConfig()
        if self.cfg.side not in JOYCON_PRODUCT_IDS:
            raise UserError(f"joycon.side must be 'L' or 'R', got {self.cfg.side!r}")
        self._jc = None
        self._last_report_s = float("-inf")
        self._lock = threading.Lock()

    def open(self) -> None:
        try:
            devices = list_joycons(self.cfg.side)
        except ImportError as e:
            raise UserError(f"Joy-Con support needs hidapi and joycon-python (the 'robot' extra): {e}") from e
        d = select_joycon(devices, self.cfg)
        try:
            self._jc = _joycon_class()(d["path"], JOYCON_PRODUCT_IDS[self.cfg.side], d.get("serial_number"))
        except OSError as e:
            raise UserError(str(e)) from e
        self._jc.register_update_hook(self._on_report)
        log.info("Joy-Con %s opened (%s)", d.get("serial_number"), _path_str(d["path"]))

    def _on_report(self, _jc) -> None:
        with self._lock:
            self._last_report_s = time.monotonic()

    def _axis(self, raw: float) -> float:
        c = self.cfg
        v = max(-1.0, min(1.0, (raw - c.stick_center) / c.stick_range))
        return 0.0 if abs(v) < c.stick_deadzone else v

    def read(self) -> RawButtons | None:
        if self._jc is None:
            return None
        with self._lock:
            last = self._last_report_s
        if last == float("-inf"):
            return None
        st = self._jc.get_status()
        side = "right" if self.cfg.side == "R" else "left"
        held = {k for k, v in st["buttons"][side].items() if v}
        shared = {k for k, v in st["buttons"]["shared"].items() if v}
        held |= shared & set(RAW_BUTTONS[self.cfg.side])
        stick = st["analog-sticks"][side]
        return RawButtons(frozenset(held), (self._axis(stick["horizontal"]), self._axis(stick["vertical"])),
                          time.monotonic() - last)

    def close(self) -> None:
        if self._jc is not None:
            self._jc._close()
            self._jc = None


# --- sources by name (OperatorConfig.buttons_source) ----------------------------------------------------------

def make_button_source(kind: str, joycon: "JoyConConfig", script=()) -> ButtonSource:
    """``joycon`` (the operator's controller) or ``scripted`` (``script`` windows from ``open()``; no device)."""
    factories = {
        "joycon": lambda: JoyConSource(joycon),
        "scripted": lambda: ScriptedButtons(script, side=joycon.side),
    }
    if kind not in factories:
        raise UserError(f"buttons_source must be one of {sorted(factories)}, got {kind!r}")
    return factories[kind]()
