"""RealMan RM75-6s over the vendor SDK ``Robotic_Arm`` (PyPI ``robotic-arm``), implementing ``ArmBackend``.

Degrees exist only at the SDK boundary (this module); everything else is radians. The SDK's C library
(``libapi_c.so``) does the TCP and JSON; this class turns its return codes into exceptions with a meaning.

At every connect (so after every controller reboot too) it checks what it is talking to and refuses what the
cell cannot run: the model and joint count (a 7-DoF RM75), the controller generation against the configured
streaming mode and rate (``configuration_realman.stream_plan``), and the SDK's support for the mode; then it
switches the tool flange power on (a reboot turns it off). ``frame_period_s`` tells the arm driver to stream
frames at that period.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time

import numpy as np

from ate_description.contract import N_ARM_JOINTS
from ate_description.errors import UserError
from ate_drivers.arm.configuration_realman import RealmanArmConfig, StreamPlan, parse_generation, stream_plan
from ate_drivers.interfaces import ArmState
from ate_drivers.registry import register_arm

log = logging.getLogger(__name__)

RETURN_CODES = {0: "ok", 1: "refused by the controller", -1: "send failed", -2: "receive timeout",
                -3: "reply could not be parsed", -4: "arrival check failed", -5: "single-thread timeout"}
HANDSHAKE_TIMEOUT_MS = 1000
_VOLTAGE_TYPES = {0: 0, 5: 1, 12: 2, 24: 3}

# rm_init() sets the SDK's thread mode once per process; a second RoboticArm(mode) would re-initialise the
# C library under the first arm's feet, so the second arm in a process is a plain RoboticArm().
# Single-thread mode: each call reads its reply in the calling thread. In the dual and triple modes one receive
# thread serves every handle of the process, and SDK 1.1.6 lets it end after a run of dropped connections (a
# controller reboot, a pulled cable): from then on no reply reaches any handle, every connect fails ("revice
# error") although the controller answers, and neither rm_destroy() nor a new rm_init() starts it again. The driver
# does not use the triple mode's UDP state push.
# In single-thread mode the handles of a process are not independent: two arms called from two threads at once read
# each other's replies (the left arm got the right arm's joints), and the reply timeout is global. So every SDK call
# of the process, a connect included, holds _sdk_lock. The launched cell runs one arm per process (no contention);
# where two arms share a process (robot:=emulated, benchmarks) their calls take turns.
_sdk_lock = threading.RLock()
_sdk_initialised = False

# SDK 1.1.6 waits on its sockets with select(), which cannot watch a file descriptor >= FD_SETSIZE (1024): in a
# process that holds more open files its replies are lost ("revice error") although the controller answers. A few
# low descriptors are put aside at import (a young process has low ones free) and handed to the SDK's socket at
# connect whenever the lowest free descriptor is too high (_low_fds_for_sdk).
FD_SETSIZE = 1024
_RESERVED_FDS = 16     # the SDK's five handles, the in-process emulator's side of each (robot:=emulated), spare
_reserved: list[int] = []


def _lowest_free_fd() -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


def _refill_reserve() -> None:
    while len(_reserved) < _RESERVED_FDS:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd >= FD_SETSIZE:
            os.close(fd)
            return
        _reserved.append(fd)


@contextlib.contextmanager
def _low_fds_for_sdk(where: str):
    """Around an SDK call that opens sockets (under _sdk_lock): frees the reserved low descriptors so that the SDK's
    sockets get them, and puts aside again what it left. Refuses with the reason when none is low enough."""
    if _lowest_free_fd() >= FD_SETSIZE:
        if not _reserved:
            raise ArmSetupError(
                f"cannot connect to {where}: this process has more than {FD_SETSIZE} open files and the RealMan SDK "
                f"watches its socket with select(), which cannot see a descriptor >= {FD_SETSIZE} (the controller's "
                "replies would be lost); close what leaks files in this process, or run the arm in its own process")
        while _reserved:
            os.close(_reserved.pop())
    try:
        yield
    finally:
        _refill_reserve()


_refill_reserve()


class ArmCommError(ConnectionError):
    """The controller did not answer, or answered something unusable; ``code`` is the SDK return code."""

    def __init__(self, what: str, code: int):
        super().__init__(f"{what}: SDK returned {code} ({RETURN_CODES.get(code, 'unknown')})")
        self.code = code


class ArmSetupError(UserError):
    """The controller answers but cannot run this cell as configured (wrong model, a mode the pair cannot hold):
    reconnecting will not fix it, the message names what will."""


def sdk_version() -> str:
    from Robotic_Arm.rm_ctypes_wrap import rm_api_version
    v = rm_api_version()
    return v.decode() if isinstance(v, bytes) else str(v)


def sdk_has_trajectory_mode() -> bool:
    """Whether this SDK's rm_movej_canfd carries trajectory_mode / radio (the smoothing modes)."""
    from Robotic_Arm.rm_ctypes_wrap import rm_movej_canfd_mode_t
    return {"trajectory_mode", "radio"} <= {f[0] for f in rm_movej_canfd_mode_t._fields_}


class RealmanArm:
    def __init__(self, config: RealmanArmConfig | None = None, clock=time.monotonic, **overrides):
        """``clock`` times the frame-rate floor (tests that step an injected clock pass theirs)."""
        cfg = config or RealmanArmConfig()
        for k, v in overrides.items():
            if not hasattr(cfg, k):
                raise TypeError(f"RealmanArmConfig has no field {k!r}")
            setattr(cfg, k, v)
        self.config = cfg
        self.clock = clock
        self._arm = None
        self._connected = False
        self._io = _sdk_lock             # one SDK call at a time in the process (see _sdk_lock)
        self._last_send = -math.inf
        self.plan: StreamPlan | None = None
        self.info: dict[str, str] = {}   # model, dof, generation, firmware, SDK version (diagnostics)
        self.frames_sent = 0
        self.frames_dropped_rate = 0     # frames refused because they came faster than the controller holds

    # --- connection ------------------------------------------------------------------------------------------
    def connect(self) -> None:
        where = f"{self.config.ip}:{self.config.port}"
        with _sdk_lock:
            self._connect(where)

    def _connect(self, where: str) -> None:
        global _sdk_initialised
        from Robotic_Arm.rm_robot_interface import RoboticArm, rm_thread_mode_e
        with _low_fds_for_sdk(where):
            if not _sdk_initialised:
                arm = RoboticArm(rm_thread_mode_e.RM_SINGLE_MODE_E)
                _sdk_initialised = True
            else:
                arm = RoboticArm()
            # The timeout is global to the C library. The handshake runs under a generous timeout (in the threaded
            # modes a fresh handle waited a few hundred ms for the receive thread; a loaded CPU can be as slow)
            # and the short one (to notice a dead link within a few ticks) applies afterwards.
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
        try:
            self._check_controller()
            self.set_tool_voltage(self.config.tool_voltage)
        except BaseException:
            self.disconnect()
            raise

    def _check_controller(self) -> None:
        """Model, joint count, generation, firmware and SDK version; the stream plan for this pair."""
        where = f"{self.config.ip}:{self.config.port}"
        code, info = self._arm.rm_get_robot_info()
        if code in (-1, -2):
            # SDK 1.1.6 sometimes hands out a handle although its socket connect failed ("socket connect err"):
            # the first query is then what finds nobody there.
            raise ConnectionError(f"no RealMan controller answered at {where} (get_robot_info: SDK returned {code}; "
                                  "check the cable and IP, or run with robot:=sim / robot:=emulated)")
        if code != 0:
            raise ArmCommError("get_robot_info", code)
        code, sw = self._arm.rm_get_arm_software_info()
        self._check("get_arm_software_info", code)
        model, dof = str(info.get("arm_model")), int(info.get("arm_dof", 0))
        reported = int(info.get("robot_controller_version", 0))
        firmware = str((sw.get("ctrl_info") or {}).get("version", "?"))
        self.info = {"model": f"{model}-{info.get('force_type')}", "product": str(sw.get("product_version", "?")),
                     "dof": str(dof), "controller_reported": f"Gen-{reported}", "firmware": firmware,
                     "sdk": sdk_version()}
        if model != self.config.expected_model or dof != self.config.expected_dof:
            raise ArmSetupError(
                f"the controller at {where} reports a {model} arm with {dof} joints ({self.info['product']}); this "
                f"cell drives {self.config.expected_dof}-DoF {self.config.expected_model} arms: check the IP "
                "(left/right.realman.ip in drivers.yaml) or the arm")
        declared = parse_generation(self.config.controller_generation)
        if declared is not None and reported == 4 and declared != 4:
            raise ArmSetupError(f"the controller at {where} is Gen-4 (SDK) but drivers.yaml declares Gen-{declared}: "
                                "set realman.controller_generation: auto")
        if declared == 4 and reported != 4:
            raise ArmSetupError(f"drivers.yaml declares Gen-4 but the controller at {where} reports Gen-{reported} "
                                f"(firmware {firmware}): set realman.controller_generation: auto (or 2 for Gen-2)")
        generation = declared or reported
        self.plan = stream_plan(self.config, generation, sdk_has_trajectory_mode())
        self.info["generation"] = f"Gen-{generation}"
        self.info["stream"] = (f"{self.plan.mode}, {1 / self.plan.frame_period_s:g} Hz over {self.plan.link}"
                               + (f", radio {self.plan.radio}" if self.plan.trajectory_mode else ""))
        log.info("[%s] %s", where, ", ".join(f"{k} {v}" for k, v in self.info.items()))

    def disconnect(self) -> None:
        if self._arm is not None:
            with _sdk_lock:
                try:
                    self._arm.rm_delete_robot_arm()
                except Exception:  # the handle may already be gone with the connection
                    pass
                _refill_reserve()    # the deleted handle's socket freed a low descriptor
        self._arm = None
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def frame_period_s(self) -> float | None:
        """The period the driver streams frames at (None before the first connect)."""
        return None if self.plan is None else self.plan.frame_period_s

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
        with self._io:
            t0 = time.monotonic()
            code, st = self._sdk().rm_get_current_arm_state()
            t1 = time.monotonic()
        self._check("get_current_arm_state", code)
        errs = [int(e) for e in st.get("err", {}).get("err", []) if int(e) != 0]
        # Capture time: the controller sampled the joints between request and reply.
        return ArmState(q_rad=np.radians(np.asarray(st["joint"][:N_ARM_JOINTS], dtype=float)),
                        pose=np.asarray(st["pose"][:6], dtype=float), stamp_s=0.5 * (t0 + t1), errors=errs)

    def read_wrench(self) -> np.ndarray:
        """fx, fy, fz (N), tx, ty, tz (Nm) at the flange sensor, the tool's own weight removed.

        The SDK's ``force_data`` is the raw sensor reading (the gripper's weight included, so it changes with
        the wrist's orientation); ``zero_force_data`` is the external wrench the controller computes from it
        with the tool's load parameters, in the sensor frame: what contact with the world looks like, and what
        we publish.
        """
        with self._io:
            code, d = self._sdk().rm_get_force_data()
        self._check("get_force_data", code)
        return np.asarray(list(d["zero_force_data"]), dtype=float)

    def read_errors(self) -> dict[str, list[int]]:
        """Controller error codes: ``system`` (arm state), ``joints`` (per-joint error flags, 0 = ok)."""
        with self._io:
            code, st = self._sdk().rm_get_current_arm_state()
            self._check("get_current_arm_state", code)
            flags = self._sdk().rm_get_joint_err_flag()
        self._check("get_joint_err_flag", flags["return_code"])
        return {"system": [int(e) for e in st.get("err", {}).get("err", []) if int(e) != 0],
                "joints": [int(e) for e in flags["err_flag"]]}

    def clear_errors(self) -> None:
        """The SDK's error clear: the system error, then each joint that reports one."""
        with self._io:
            self._check("clear_system_err", self._sdk().rm_clear_system_err())
            flags = self._sdk().rm_get_joint_err_flag()
            self._check("get_joint_err_flag", flags["return_code"])
            for j, flag in enumerate(flags["err_flag"]):
                if int(flag):
                    self._check(f"set_joint_clear_err({j + 1})", self._sdk().rm_set_joint_clear_err(j + 1))

    # --- commands --------------------------------------------------------------------------------------------
    def send_joint_targets(self, q_rad: np.ndarray) -> bool:
        """Stream one frame (``rm_movej_canfd`` with the mode's arguments); False (and counted) when it comes sooner
        than the controller and link hold (``min_frame_period_s``): dropped, never queued."""
        q = np.asarray(q_rad, dtype=float).reshape(-1)
        if q.shape != (N_ARM_JOINTS,) or not np.all(np.isfinite(q)):
            raise ValueError(f"expected {N_ARM_JOINTS} finite joint angles, got {q_rad!r}")
        plan = self.plan
        if plan is None:
            raise ConnectionError("arm not connected")
        now = self.clock()
        if now - self._last_send < plan.min_frame_period_s * 0.9:   # 10 %: scheduling jitter of a steady stream
            self.frames_dropped_rate += 1
            return False
        # Not under the request lock: a frame awaits no reply (nothing to mix up with another call's), goes
        # out in one send, and must not wait for a state query's round trip (the stream's period would jitter
        # by it).
        code = self._sdk().rm_movej_canfd([float(v) for v in np.degrees(q)], plan.follow, 0,
                                          plan.trajectory_mode, plan.radio)
        self._check("movej_canfd", code)
        self._last_send = now
        self.frames_sent += 1
        return True

    def move_joints(self, q_rad: np.ndarray, speed_percent: int = 20, block: bool = True) -> None:
        """A planned joint move (``rm_movej``), for tools and set-up scripts, not the control loop: the controller
        plans it; with ``block`` the call returns when the arm has arrived, and until then every other SDK call of
        this process (another arm's too) waits (``_sdk_lock``)."""
        q = np.asarray(q_rad, dtype=float).reshape(-1)
        if q.shape != (N_ARM_JOINTS,) or not np.all(np.isfinite(q)):
            raise ValueError(f"expected {N_ARM_JOINTS} finite joint angles, got {q_rad!r}")
        if not 1 <= int(speed_percent) <= 100:
            raise ValueError(f"speed_percent must lie in [1, 100], got {speed_percent}")
        with self._io:
            code = self._sdk().rm_movej([float(v) for v in np.degrees(q)], int(speed_percent), 0, 0, int(block))
        self._check("movej", code)

    def stop(self) -> None:
        with self._io:
            code = self._sdk().rm_set_arm_stop()
        self._check("set_arm_stop", code)

    def set_tool_voltage(self, volts: int) -> None:
        if volts not in _VOLTAGE_TYPES:
            raise ValueError(f"tool voltage must be one of {sorted(_VOLTAGE_TYPES)} V, got {volts}")
        with self._io:
            code = self._sdk().rm_set_tool_voltage(_VOLTAGE_TYPES[volts])
        self._check("set_tool_voltage", code)


@register_arm("realman")
def make_realman_arm(arm: str = "left", config: RealmanArmConfig | None = None, **overrides) -> RealmanArm:
    return RealmanArm(config, **overrides)
