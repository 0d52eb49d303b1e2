"""Buttons: the YAML mapping with edge detection, the scripted fake, and the Joy-Con backend's parts that run
without a device (selection by serial/path, pyjoycon's real report decoding). HID itself needs a Joy-Con."""

from __future__ import annotations

import time

import pytest

from ate_description.errors import UserError
from teleop.buttons import (ButtonMap, ButtonMapConfig, JoyConConfig, JoyConSource, RawButtons,
                            ScriptedButtons, select_joycon)


def _raw(*names, age_s=0.0, stick=(0.0, 0.0)):
    return RawButtons(frozenset(names), stick, age_s)


def test_a_held_button_fires_once():
    m = ButtonMap(ButtonMapConfig())          # L Joy-Con defaults: record = up, clutch = l
    fired = [m.update(_raw("up")).pressed for _ in range(5)]
    assert fired[0] == {"record"} and all(not f for f in fired[1:])
    assert m.update(_raw("up")).held == {"record"}
    assert not m.update(_raw()).pressed
    assert m.update(_raw("up")).pressed == {"record"}    # released and pressed again: fires again


def test_two_buttons_and_unmapped_buttons():
    m = ButtonMap(ButtonMapConfig())
    ev = m.update(_raw("l", "zl", "sr"))       # sr is not mapped
    assert ev.pressed == {"clutch", "gripper_toggle"} and ev.held == {"clutch", "gripper_toggle"}


def test_a_silent_controller_is_lost_and_a_button_held_across_the_gap_does_not_fire_twice():
    m = ButtonMap(ButtonMapConfig(max_age_ms=500.0))
    assert m.update(_raw("up")).pressed == {"record"}
    lost = m.update(_raw("up", age_s=0.8))
    assert lost.lost and not lost.pressed and not lost.held
    assert m.update(None).lost
    back = m.update(_raw("up"))
    assert not back.lost and not back.pressed


def test_mapping_is_checked_against_the_controller():
    with pytest.raises(UserError, match="do not exist on a L Joy-Con"):
        ButtonMap(ButtonMapConfig(side="L", mapping={"record": "a"}))
    with pytest.raises(UserError, match="mapped to both"):
        ButtonMap(ButtonMapConfig(mapping={"record": "up", "discard": "up"}))
    with pytest.raises(UserError, match="unknown button events"):
        ButtonMap(ButtonMapConfig(mapping={"fly": "up"}))
    ButtonMap(ButtonMapConfig(side="R", mapping={"init": "a", "estop": "home", "record": "plus"}))


def test_scripted_buttons_follow_their_clock():
    now = [0.0]
    b = ScriptedButtons([(1.0, 1.2, "up"), (2.0, 3.0, "l")], clock=lambda: now[0])
    assert b.read() is None          # not opened: like a controller that is not there
    b.open()
    seen = {}
    for t in (0.5, 1.0, 1.1, 1.2, 2.5):
        now[0] = t
        seen[t] = b.read().pressed
    assert seen == {0.5: set(), 1.0: {"up"}, 1.1: {"up"}, 1.2: set(), 2.5: {"l"}}
    b.hold("zl")
    assert "zl" in b.read().pressed
    with pytest.raises(ValueError):
        ScriptedButtons([(0, 1, "a")], side="L")


# --- Joy-Con ------------------------------------------------------------------------------------------------

def _descriptor(serial, path):
    return {"vendor_id": 0x057E, "product_id": 0x2006, "serial_number": serial, "path": path,
            "product_string": "Joy-Con (L)"}


def test_two_joycons_of_one_side_are_told_apart_by_serial_or_path():
    devs = [_descriptor("98:b6:e9:00:00:01", b"/dev/hidraw3"),
            _descriptor("98:b6:e9:00:00:02", b"/dev/hidraw5")]
    assert select_joycon(devs, JoyConConfig(serial="98:B6:E9:00:00:02"))["path"] == b"/dev/hidraw5"
    assert select_joycon(devs, JoyConConfig(path="/dev/hidraw3"))["serial_number"] == "98:b6:e9:00:00:01"
    with pytest.raises(UserError, match="2 L Joy-Cons connected"):
        select_joycon(devs, JoyConConfig())
    with pytest.raises(UserError, match="no L Joy-Con with serial 11:22"):
        select_joycon(devs, JoyConConfig(serial="11:22"))


def test_opening_a_missing_joycon_is_a_clear_error():
    pytest.importorskip("hid")
    with pytest.raises(UserError, match="no L Joy-Con with path /dev/hidraw99"):
        JoyConSource(JoyConConfig(path="/dev/hidraw99")).open()   # hidapi's real enumeration finds none here


def test_joycon_reports_decode_into_raw_buttons():
    """A standard 0x30 input report decoded by pyjoycon's own JoyCon code (byte 4 bit 5 = capture, byte 5 bit
    1 = up, left stick pushed up): the L source reports its own buttons only."""
    pytest.importorskip("pyjoycon")
    from teleop.buttons import _joycon_class

    jc = object.__new__(_joycon_class())          # no device: only the decoding runs
    jc.set_accel_calibration((0, 0, 0), (1, 1, 1))
    jc.set_gyro_calibration((0, 0, 0), (1, 1, 1))
    report = bytearray(49)
    report[0] = 0x30
    report[3] = 0b0000_1000                        # A (a right-side button)
    report[4] = 0b0010_0010                        # plus (right side) + capture (left side)
    report[5] = 0b0000_0010                        # up
    h, v = 2048, 2048 + 1400                       # left stick: centre horizontally, fully up
    report[6], report[7], report[8] = h & 0xFF, ((h >> 8) & 0x0F) | ((v & 0x0F) << 4), (v >> 4) & 0xFF
    jc._input_report = bytes(report)
    src = JoyConSource(JoyConConfig(side="L"))
    src._jc, src._last_report_s = jc, time.monotonic()
    raw = src.read()
    assert raw.pressed == {"up", "capture"}
    assert raw.stick == pytest.approx((0.0, 1.0))
    ev = ButtonMap(ButtonMapConfig()).update(raw)
    assert ev.pressed == {"record", "estop"}
