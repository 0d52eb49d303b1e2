"""RealMan RM75-6s over the vendor SDK ``Robotic_Arm`` (PyPI ``robotic-arm``), implementing ``ArmBackend``.

Degrees exist only at the SDK boundary (this module); everything else is radians. The SDK's C library
(``libapi_c.so``) does the TCP and JSON; this class turns its return codes into exceptions with a meaning.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from ate_drivers.arm.configuration_realman import RealmanArmConfig
from ate_drivers.interfaces import ArmState
from ate_drivers.registry import register_arm
from ate_description.contract import N_ARM_JOINTS

RETURN_CODES = {0: "ok", 1: "refused by the controller", -1: "send failed", -2: "receive timeout",
                -3: "reply could not be parsed"}
HANDSHAKE_TIMEOUT_MS = 1000
_VOLTAGE_TYPES = {0: 0, 5: 1, 12: 2, 24: 3}

# rm_init() sets the SDK's thread mode once per process; a second RoboticArm(mode) would re-initialise the
# C library under the first arm's feet, so the second arm in a process is a plain RoboticArm().
_sdk_lock = threading.Lock()
_sdk_initialised = False


class ArmCommError(ConnectionError):
    """The controller did not answer, or answered something unusable; ``code`` is the SDK return code."""

    def __init__(self, what: str, code: int):
        super().__init__(f"{what}: SDK returned {code} ({RETURN_CODES.get(code, 'unknown')})")
        self.code = code


class RealmanArm:
    def __init__(self, config: RealmanArmConfig | None = None, **overrides):
        cfg = config or RealmanArmConfig()
        for k, v in overrides.items():
            setattr(cfg, k, v)
        self.config = cfg
        self._arm = None
        self._connected = False
        self._last_send = -math.inf
        self.frames_sent = 0
        self.frames_dropped_rate = 0   # frames refused because they came faster than the controller allows

    # --- connection ------------------------------------------------------------------------------------------
    def connect(self) -> None:
        global _sdk_initialised
        from Robotic_Arm.rm_robot_interface import RoboticArm, rm_thread_mode_e
        with _sdk_lock:
            if not _sdk_initialised:
                arm = RoboticArm(rm_thread_mode_e.RM_TRIPLE_MODE_E)
                _sdk_initialised = True
            else:
                arm = RoboticArm()
            # The timeout is global to the C library. A freshly created handle needs a few hundred ms before
            # the SDK's receive thread serves it, so the handshake runs under a generous timeout and the short
            # one (to notice a dead link within a few ticks) applies afterwards.
            arm.rm_set_timeout(HANDSHAKE_TIMEOUT_MS)
            try:
                handle = arm.rm_create_robot_arm(self.config.ip, int(self.config.port), level=3)
            except ValueError as e:  # NULL handle: the SDK's handle table is full
                raise ConnectionError(f"RealMan SDK refused a new handle ({e})") from e
            arm.rm_set_timeout(int(self.config.reply_timeout_ms))
            if handle.id == -1:
                # SDK 1.1.6 keeps a failed handle's slot until it is deleted; after a few failed connects (a
                # reconnect loop) every later create returns NULL, even to a live controller.
                arm.rm_delete_robot_arm()
        if handle.id == -1:
            raise ConnectionError(f"no RealMan controller answered at {self.config.ip}:{self.config.port} "
                                  "(check the cable and IP, or run with robot:=sim / robot:=emulated)")
        self._arm = arm
        self._connected = True

    def disconnect(self) -> None:
        if self._arm is not None:
            try:
                self._arm.rm_delete_robot_arm()
            except Exception:  # the handle may already be gone with the connection
                pass
        self._arm = None
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    def _check(self, what: str, code: int) -> None:
        if code != 0:
            if code in (-1, -2):
                self._connected = False   # the link is gone or dead: the driver reconnects
            raise ArmCommError(what, code)

    def _sdk(self):
        if self._arm is None or not self._connected:
            raise ConnectionError("arm not connected")
        return self._arm

    # --- state -----------------------------------------------------------------------------------------------
    def read_state(self) -> ArmState:
        code, st = self._sdk().rm_get_current_arm_state()
        self._check("get_current_arm_state", code)
        errs = [int(e) for e in st.get("err", {}).get("err", []) if int(e) != 0]
        return ArmState(q_rad=np.radians(np.asarray(st["joint"][:N_ARM_JOINTS], dtype=float)),
                        pose=np.asarray(st["pose"][:6], dtype=float), stamp_s=time.monotonic(), errors=errs)

    def read_wrench(self) -> np.ndarray:
        """fx, fy, fz (N), tx, ty, tz (Nm) at the flange sensor."""
        code, d = self._sdk().rm_get_force_data()
        self._check("get_force_data", code)
        return np.asarray(list(d["force_data"]), dtype=float)

    # --- commands --------------------------------------------------------------------------------------------
    def send_joint_targets(self, q_rad: np.ndarray) -> bool:
        """Stream one target; False (and counted) when it comes sooner than ``min_command_period_s``."""
        q = np.asarray(q_rad, dtype=float).reshape(-1)
        if q.shape != (N_ARM_JOINTS,) or not np.all(np.isfinite(q)):
            raise ValueError(f"expected {N_ARM_JOINTS} finite joint angles, got {q_rad!r}")
        now = time.monotonic()
        if now - self._last_send < self.config.min_command_period_s:
            self.frames_dropped_rate += 1
            return False
        code = self._sdk().rm_movej_canfd([float(v) for v in np.degrees(q)], bool(self.config.follow), 0, 0, 0)
        self._check("movej_canfd", code)
        self._last_send = now
        self.frames_sent += 1
        return True

    def stop(self) -> None:
        self._check("set_arm_stop", self._sdk().rm_set_arm_stop())

    def set_tool_voltage(self, volts: int) -> None:
        if volts not in _VOLTAGE_TYPES:
            raise ValueError(f"tool voltage must be one of {sorted(_VOLTAGE_TYPES)} V, got {volts}")
        self._check("set_tool_voltage", self._sdk().rm_set_tool_voltage(_VOLTAGE_TYPES[volts]))


@register_arm("realman")
def make_realman_arm(arm: str = "left", config: RealmanArmConfig | None = None, **overrides) -> RealmanArm:
    return RealmanArm(config, **overrides)
