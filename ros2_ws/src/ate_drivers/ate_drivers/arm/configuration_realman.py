"""Configuration of one RealMan arm behind the ``Robotic_Arm`` SDK, and the streaming facts RealMan documents.

How a joint stream reaches the joints is chosen per arm by ``mode`` (the SDK's ``rm_movej_canfd`` arguments; what
the controller does, from RealMan's JSON protocol documentation):

* ``high_follow`` (follow true, trajectory_mode 0, full pass-through): the joints follow each frame exactly; needs
  a stable period <= 10 ms;
* ``curve_fitting`` (true / 1, radio 0-100): the controller smooths the frames (larger radio smoother, up to ~15
  frames of lag);
* ``filter`` (true / 2, radio 0-999): the controller low-pass filters the frames; the last target must be re-sent
  until the arm is there;
* ``low_follow`` (false / 0): softer following, for links that cannot hold 10 ms.

The fastest stable frame period depends on the controller generation and the link (``MIN_FRAME_PERIOD_S``):
Gen-2 over Ethernet or Wi-Fi 20 ms, over USB / RS485 or its high-speed Ethernet port (enabled by a command
first) 10 ms, Gen-3 (and Gen-4) over wired Ethernet 2 ms. The three high-follow modes need a period of at most
10 ms, so a Gen-2 controller on plain Ethernet can only use ``low_follow``. :func:`stream_plan` checks a pair
and names the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from ate_description.errors import UserError

MODES: dict[str, tuple[bool, int]] = {            # mode -> (follow, trajectory_mode) of rm_movej_canfd
    "high_follow": (True, 0),
    "curve_fitting": (True, 1),
    "filter": (True, 2),
    "low_follow": (False, 0),
}
RADIO_RANGE = {1: (0, 100), 2: (0, 999)}         # trajectory_mode -> smoothing coefficient range
HIGH_FOLLOW_MAX_PERIOD_S = 0.010
"""SDK docstring of rm_movej_canfd: with follow=True the send period must be no more than 10 ms."""

LINKS = ("ethernet", "high_speed_ethernet", "usb", "rs485", "wifi")
MIN_FRAME_PERIOD_S: dict[tuple[int, str], float] = {
    (2, "ethernet"): 0.020, (2, "wifi"): 0.020, (2, "usb"): 0.010, (2, "rs485"): 0.010,
    (2, "high_speed_ethernet"): 0.010,
    (3, "ethernet"): 0.002, (4, "ethernet"): 0.002,
}
"""Fastest stable movej_canfd period per (controller generation, link), as RealMan documents it."""


@dataclass
class RealmanArmConfig:
    ip: str = "192.168.1.18"
    port: int = 8080
    # How frames reach the joints (table above). high_follow: exact pass-through of the driver's own smooth
    # stream, the least lag; the smoothing modes add the controller's filter lag on top.
    mode: str = "high_follow"
    # Smoothing coefficient of curve_fitting (0-100) and filter (0-999); ignored by the other modes.
    radio: int = 0
    # Frames per second the driver streams (its own thread). high-follow modes need >= 100 Hz (<= 10 ms); 200
    # Hz leaves room for scheduling jitter. It may not exceed what the controller and link hold
    # (MIN_FRAME_PERIOD_S).
    stream_rate_hz: float = 200.0
    # Controller generation: auto = what the SDK reports at connect (3 or 4). SDK 1.1.6 cannot tell a Gen-2
    # controller from a Gen-3 one, so a Gen-2 controller must be declared here (2) or it would get a Gen-3
    # rate.
    controller_generation: str = "auto"
    # How the PC reaches the controller: ethernet | high_speed_ethernet | usb | rs485 | wifi.
    link: str = "ethernet"
    # The cell is built for 7-DoF RM75 arms: a controller reporting another model is refused at connect (joint
    # order, limits and kinematics of every other module would be wrong).
    expected_model: str = "RM_75"
    expected_dof: int = 7
    # SDK reply timeout: a dead controller must be noticed within a few control ticks, not the SDK's 500 ms.
    reply_timeout_ms: int = 200
    # Tool flange power for the gripper: 24 V (SDK voltage type 3), applied at every (re)connect because a
    # controller reboot switches it off.
    tool_voltage: int = 24


@dataclass(frozen=True)
class StreamPlan:
    mode: str
    follow: bool
    trajectory_mode: int
    radio: int
    generation: int
    link: str
    frame_period_s: float        # the driver's frame period
    min_frame_period_s: float    # the pair's floor: frames sooner than this are dropped by the backend


def parse_generation(value) -> int | None:
    """``auto`` -> None, else 2 / 3 / 4."""
    if str(value).lower() in ("auto", "", "none"):
        return None
    try:
        gen = int(str(value).lower().removeprefix("gen").removeprefix("-"))
    except ValueError:
        gen = -1
    if gen not in (2, 3, 4):
        raise UserError(f"realman.controller_generation must be auto, 2, 3 or 4, got {value!r}")
    return gen


def stream_plan(cfg: RealmanArmConfig, generation: int, sdk_has_trajectory_mode: bool = True) -> StreamPlan:
    """The frame period and SDK arguments for ``cfg`` on a controller of ``generation``; a
    :class:`~ate_description.errors.UserError` naming the fix when the pair cannot hold the mode."""
    if cfg.mode not in MODES:
        raise UserError(f"realman.mode must be one of {sorted(MODES)}, got {cfg.mode!r}")
    if cfg.link not in LINKS:
        raise UserError(f"realman.link must be one of {LINKS}, got {cfg.link!r}")
    follow, tmode = MODES[cfg.mode]
    if (generation, cfg.link) not in MIN_FRAME_PERIOD_S:
        raise UserError(f"a Gen-{generation} controller is not reached over {cfg.link} (known pairs: "
                        f"{sorted(MIN_FRAME_PERIOD_S)}); set realman.link to how the PC is connected")
    floor = MIN_FRAME_PERIOD_S[(generation, cfg.link)]
    if cfg.stream_rate_hz <= 0:
        raise UserError(f"realman.stream_rate_hz must be positive, got {cfg.stream_rate_hz}")
    period = 1.0 / cfg.stream_rate_hz
    if follow and floor > HIGH_FOLLOW_MAX_PERIOD_S:
        raise UserError(
            f"mode {cfg.mode} needs frames every <= {HIGH_FOLLOW_MAX_PERIOD_S * 1e3:.0f} ms but a Gen-{generation} "
            f"controller over {cfg.link} holds {floor * 1e3:.0f} ms at best: set realman.mode: low_follow with "
            f"stream_rate_hz <= {1 / floor:.0f}, or connect over usb / rs485 / high_speed_ethernet (link:), "
            "or use a Gen-3 controller")
    if period < floor - 1e-12:
        raise UserError(f"realman.stream_rate_hz {cfg.stream_rate_hz:g} is faster than a Gen-{generation} "
                        f"controller over {cfg.link} holds ({floor * 1e3:g} ms): set stream_rate_hz <= {1 / floor:g}")
    if follow and period > HIGH_FOLLOW_MAX_PERIOD_S + 1e-12:
        raise UserError(f"mode {cfg.mode} needs frames every <= {HIGH_FOLLOW_MAX_PERIOD_S * 1e3:.0f} ms: set "
                        f"realman.stream_rate_hz >= {1 / HIGH_FOLLOW_MAX_PERIOD_S:.0f} (now {cfg.stream_rate_hz:g})")
    radio = int(cfg.radio)
    if tmode:
        lo, hi = RADIO_RANGE[tmode]
        if not lo <= radio <= hi:
            raise UserError(f"realman.radio for mode {cfg.mode} must lie in [{lo}, {hi}], got {radio}")
        if not sdk_has_trajectory_mode:
            raise UserError(f"mode {cfg.mode} needs an SDK whose rm_movej_canfd takes trajectory_mode/radio: "
                            "upgrade robotic-arm (1.1.6 has it) or use mode high_follow / low_follow")
    else:
        radio = 0
    return StreamPlan(cfg.mode, follow, tmode, radio, generation, cfg.link, period, floor)
