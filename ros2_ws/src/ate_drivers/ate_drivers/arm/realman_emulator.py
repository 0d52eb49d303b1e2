"""A protocol-level emulator of the RealMan arm controller: JSON over TCP, what SDK 1.1.6's ``libapi_c.so`` parses.

Tests drive the real ``Robotic_Arm`` SDK (and its C library) against it, so the bytes on the wire are the ones
a real Gen-3 controller exchanges (docs/architecture.md, hardware facts). Reply formats were established
against SDK 1.1.6: every query of the connect sequence must be answered, ``get_current_arm_state`` in the
``"err": [..]`` form, ``movej_canfd`` gets no reply; the other replies follow RealMan's JSON protocol
documentation and were checked to parse in SDK 1.1.6 (``get_joint_degree``, ``movej`` with its
``current_trajectory_state`` push, ``clear_system_err``, ``get_joint_err_flag``, ``set_joint_clear_err``,
``get_controller_state``, ``get_arm_all_state``). Units on the wire: joints 0.001 deg, positions 0.001 mm,
angles 0.001 rad, force 0.001 N.

**How the emulated joints follow ``movej_canfd``** (our model of what the SDK docstring and RealMan's protocol
documentation say; the real controller's dynamics are not testable here):

* ``follow: true, trajectory_mode 0`` (high follow, full pass-through): the joints reach each frame within one
  high-follow period (10 ms), then stand still. Frames spaced more than 10 ms apart therefore make the arm
  stop between frames (stop-and-go): each such gap is counted in ``follow_stops``, logged, and kept in
  ``frame_gaps_s``.
* ``trajectory_mode 1`` (curve fitting, ``radio`` 0-100): the frames are smoothed with a lag of up to ~15
  frame periods at radio 100 (a first-order filter of ``radio / 100 * 15 * 10 ms``), then passed through.
* ``trajectory_mode 2`` (filter, ``radio`` 0-999): each arriving frame moves the filtered target by ``1 -
  radio / 1000`` of the way; it only advances when frames arrive, so the last target has to be re-sent until
  the arm is there, as documented.
* ``follow: false`` (low follow): a softer first-order following (50 ms), for links that cannot hold 10 ms.

Every frame is also refused (ignored, counted in ``rejected_frames``) when it jumps more than 10 deg or leaves
the joint limits, and joints never exceed their speed limits. Planned ``movej`` moves all joints linearly at
``v`` % of their speed limits and pushes ``current_trajectory_state`` on arrival (the SDK's blocking
``rm_movej`` waits for it).

Faults are injected through :class:`Faults` (refuse a command, delay replies, send a malformed reply, drop the
connection, report system / joint error codes, a stalled arm that no longer follows) and
:meth:`collision_stop`. While a system error is reported the controller executes no motion command (frames are
counted in ``frames_ignored``, ``movej`` answers ``receive_state: false``) until ``clear_system_err``.

The wrench: ``force_data`` is the raw sensor reading, the tool's weight (``tool_mass_kg`` at ``tool_com_m`` in
the flange frame) included, so it changes with the wrist's orientation; ``zero_force_data`` is the external
wrench (``wrench``) alone.

An injected ``clock`` (default ``time.monotonic``) times arrivals and motion, so a test can run
deterministically. Run by hand for a dry run: ``python -m ate_drivers.arm.realman_emulator --port 8080``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ate_description.contract import JOINT_LIMITS_DEG, JOINT_MAX_SPEED_DEG_S, N_ARM_JOINTS

log = logging.getLogger(__name__)

MAX_FRAME_STEP_DEG = 10.0
"""movej_canfd over Ethernet: a frame more than 10 deg from the previous one is refused by the controller."""
HIGH_FOLLOW_PERIOD_S = 0.010
"""High follow needs a frame at least every 10 ms (SDK docstring of rm_movej_canfd)."""
FOLLOW_GAP_TOLERANCE_S = 0.001
LOW_FOLLOW_TAU_S = 0.05
CURVE_FIT_MAX_LAG_FRAMES = 15
GRAVITY_M_S2 = 9.81
COLLISION_ERROR = 0x1001
"""System error code :meth:`collision_stop` reports unless given another (an emulator choice, not RealMan's table)."""


@dataclass
class Faults:
    """What the emulated controller does wrong; tests set fields while the emulator runs."""
    refuse: set[str] = field(default_factory=set)        # commands answered with false / ignored (movej_canfd)
    delay_s: dict[str, float] = field(default_factory=dict)  # command -> reply delay
    malformed: set[str] = field(default_factory=set)     # commands answered with a truncated JSON line
    silent: set[str] = field(default_factory=set)        # commands never answered
    errors: list[int] = field(default_factory=list)      # system error codes in arm_state.err (until cleared)
    joint_errors: list[int] = field(default_factory=lambda: [0] * N_ARM_JOINTS)  # get_joint_err_flag
    stalled: bool = False                                # the joints stop following (a brake), no error reported
    accept_connections: bool = True                      # False: new connections are closed at once


@dataclass
class Received:
    t: float            # the emulator's clock at arrival
    msg: dict


class RealmanEmulator:
    """One emulated arm on ``host:port`` (port 0 picks a free one); ``start()`` / ``stop()`` or a ``with`` block."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, q0_deg=None,
                 wrench=(1.0, -2.0, 3.0, 0.1, -0.2, 0.3), clock=time.monotonic, product_version: str = "RM75-6F",
                 firmware: str = "V1.6.1", tool_mass_kg: float = 1.0, tool_com_m=(0.0, 0.0, 0.08)):
        self.host = host
        self._req_port = port
        self.clock = clock
        self.faults = Faults()
        self.received: list[Received] = []
        self.rejected_frames = 0
        self.frames_ignored = 0        # frames that arrived while a system error was reported
        self.follow_stops = 0          # high follow: gaps longer than the allowed period while the arm moved
        self.frame_gaps_s: list[float] = []
        self.product_version = product_version
        self.firmware = firmware
        self.q_deg = np.zeros(N_ARM_JOINTS) if q0_deg is None else np.asarray(q0_deg, dtype=float).copy()
        self.target_deg = self.q_deg.copy()     # where the joints head now (after the mode's filter)
        self.wrench = np.asarray(wrench, dtype=float)
        self.tool_mass_kg = float(tool_mass_kg)
        self.tool_com_m = np.asarray(tool_com_m, dtype=float)
        self.tool_voltage_type = 0
        self.mode = "idle"                      # pass | curve | filter | low | planned | idle
        self._speed = np.zeros(N_ARM_JOINTS)    # deg/s of the current pass-through / planned segment
        self._tau_s = LOW_FOLLOW_TAU_S
        self._last_frame_deg: np.ndarray | None = None
        self._last_frame_t: float | None = None
        self._planned: tuple[socket.socket, np.ndarray] | None = None   # (connection, goal) of a movej
        self._t_last = clock()
        self._lock = threading.RLock()
        self._moving = threading.Event()
        self._send_locks: dict[socket.socket, threading.Lock] = {}
        self._srv: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._running = False

    # --- lifecycle -------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._srv is not None, "emulator not started"
        return self._srv.getsockname()[1]

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self) -> "RealmanEmulator":
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind((self.host, self._req_port))
        self._srv.listen(8)
        self._running = True
        for target, name in ((self._accept_loop, "rm-emu-accept"), (self._monitor_loop, "rm-emu-motion")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._running = False
        self.drop_connections()
        if self._srv is not None:
            try:
                self._srv.close()
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def drop_connections(self) -> None:
        """Close every client connection, as a controller reboot or a pulled cable does."""
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def collision_stop(self, code: int = COLLISION_ERROR) -> None:
        """What a collision detection does: the arm stops where it is and reports ``code`` until cleared."""
        with self._lock:
            self._advance()
            self._halt()
            self.faults.errors = [int(code)]
        log.warning("emulated controller: collision stop, error 0x%X", code)

    # --- what the tests look at ------------------------------------------------------------------------------
    def commands(self, name: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if name is None or r.msg.get("command") == name]

    def canfd_targets_deg(self) -> list[np.ndarray]:
        return [np.asarray(r.msg["joint"], dtype=float) / 1000.0 for r in self.commands("movej_canfd")]

    def frame_times(self) -> list[float]:
        """Arrival times of every movej_canfd frame (the emulator's clock)."""
        return [r.t for r in self.commands("movej_canfd")]

    def joints_deg(self) -> np.ndarray:
        with self._lock:
            self._advance()
            return self.q_deg.copy()

    # --- motion ----------------------------------------------------------------------------------------------
    def _halt(self) -> None:
        self.target_deg = self.q_deg.copy()
        self._speed = np.zeros(N_ARM_JOINTS)
        self._last_frame_deg = None
        self.mode = "idle"

    def _advance(self) -> None:
        now = self.clock()
        dt, self._t_last = max(now - self._t_last, 0.0), now
        if dt == 0.0 or self.faults.stalled:
            return
        vmax = np.asarray(JOINT_MAX_SPEED_DEG_S)
        err = self.target_deg - self.q_deg
        if self.mode in ("pass", "filter", "planned"):
            step = np.minimum(self._speed, vmax) * dt
        elif self.mode in ("low", "curve"):
            step = np.minimum(np.abs(err) * (1.0 - math.exp(-dt / self._tau_s)), vmax * dt)
        else:
            return
        self.q_deg = self.q_deg + np.clip(err, -step, step)

    def _pose(self) -> list[int]:
        from ate_description.kinematics import fk, pose6_from_matrix  # the one FK of the arm
        p = pose6_from_matrix(fk(np.radians(self.q_deg)))
        return [int(round(v * 1e6)) for v in p[:3]] + [int(round(v * 1e3)) for v in p[3:]]

    def raw_wrench(self) -> np.ndarray:
        """What the sensor measures: the external wrench plus the tool's weight, in the flange (sensor) frame."""
        from ate_description.kinematics import fk
        R = fk(np.radians(self.q_deg))[:3, :3]
        f = R.T @ np.array([0.0, 0.0, -self.tool_mass_kg * GRAVITY_M_S2])
        return self.wrench + np.concatenate([f, np.cross(self.tool_com_m, f)])

    def _monitor_loop(self) -> None:
        """Finishes planned moves: pushes current_trajectory_state when a movej has arrived."""
        while self._running:
            if self._planned is None:
                self._moving.wait(0.2)      # idle: no polling that would compete with the streams it receives
                continue
            time.sleep(0.002)
            with self._lock:
                self._advance()
                if self._planned is None or np.max(np.abs(self.q_deg - self._planned[1])) > 1e-6:
                    continue
                self._moving.clear()
                conn, _ = self._planned
                self._planned = None
                self.mode = "idle"
            self._push(conn, {"state": "current_trajectory_state", "trajectory_state": True, "device": 0,
                              "trajectory_connect": 0})

    # --- protocol ----------------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while self._running:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            if not self.faults.accept_connections:
                conn.close()
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._clients.append(conn)
                self._send_locks[conn] = threading.Lock()
            t = threading.Thread(target=self._serve, args=(conn,), name="rm-emu-conn", daemon=True)
            t.start()

    def _push(self, conn: socket.socket, reply: dict, cmd: str = "") -> bool:
        out = json.dumps(reply, separators=(",", ":")).encode()
        if cmd in self.faults.malformed:
            out = out[: len(out) // 2]  # a truncated, still terminated line: not valid JSON
        lock = self._send_locks.get(conn)
        if lock is None:
            return False
        try:
            with lock:
                conn.sendall(out + b"\r\n")
        except OSError:
            return False
        return True

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._serve_lines(conn)
        finally:                    # the client went away (or the emulator stopped): free the socket
            with self._lock:
                if conn in self._clients:
                    self._clients.remove(conn)
                self._send_locks.pop(conn, None)
            conn.close()

    def _serve_lines(self, conn: socket.socket) -> None:
        buf = b""
        while self._running:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue  # the controller ignores what it cannot parse
                reply = self._handle(msg, conn)
                if reply is None:
                    continue
                cmd = msg.get("command", "")
                if cmd in self.faults.delay_s:
                    time.sleep(self.faults.delay_s[cmd])
                if not self._push(conn, reply, cmd):
                    return

    def _handle(self, msg: dict, conn: socket.socket | None = None) -> dict | None:
        cmd = msg.get("command", "")
        with self._lock:
            self.received.append(Received(self.clock(), msg))
            self._advance()
            if cmd in self.faults.silent:
                return None
            refused = cmd in self.faults.refuse
            if cmd == "movej_canfd":
                if not refused:
                    self._canfd(msg)
                return None  # streaming: the SDK awaits no reply
            if cmd == "movej":
                ok = not refused and self._movej(msg, conn)
                return {"command": "movej", "receive_state": ok}
            handler = _QUERIES.get(cmd)
            if handler is not None:
                return handler(self)
            if cmd == "get_current_arm_state":
                return {"state": "current_arm_state", "arm_state": {
                    "joint": [int(round(v * 1000)) for v in self.q_deg], "pose": self._pose(),
                    "err": list(self.faults.errors) or [0]}}
            if cmd == "get_joint_degree":
                return {"state": "joint_degree", "joint": [int(round(v * 1000)) for v in self.q_deg]}
            if cmd == "get_force_data":
                ext = [int(round(v * 1000)) for v in self.wrench]
                raw = [int(round(v * 1000)) for v in self.raw_wrench()]
                from ate_description.kinematics import fk
                R = fk(np.radians(self.q_deg))[:3, :3]
                work = np.concatenate([R @ self.wrench[:3], R @ self.wrench[3:]])
                return {"command": "get_force_data", "force_data": raw, "zero_force_data": ext,
                        "work_zero_force_data": [int(round(v * 1000)) for v in work], "tool_zero_force_data": ext}
            if cmd in ("set_arm_stop", "set_arm_slow_stop"):
                if not refused:
                    self._halt()
                    self._abort_planned()
                key = "arm_stop" if cmd == "set_arm_stop" else "arm_slow_stop"
                return {"command": cmd, key: not refused}
            if cmd == "set_tool_voltage":
                if not refused:
                    self.tool_voltage_type = int(msg.get("voltage_type", 0))
                return {"command": "set_tool_voltage", "state": not refused}
            if cmd == "clear_system_err":
                if not refused:
                    self.faults.errors = []
                return {"command": "clear_system_err", "clear_state": not refused}
            if cmd == "get_joint_err_flag":
                return {"state": "joint_err_flag", "err_flag": list(self.faults.joint_errors),
                        "brake_state": [0] * N_ARM_JOINTS}
            if cmd == "set_joint_clear_err":
                j = int(msg.get("joint_clear_err", 0)) - 1
                ok = not refused and 0 <= j < N_ARM_JOINTS
                if ok:
                    self.faults.joint_errors[j] = 0
                return {"command": "set_joint_clear_err", "joint_clear_err": ok}
            if cmd == "get_controller_state":
                return {"state": "controller_state", "voltage": 24000, "current": 1500, "temperature": 42000,
                        "err_flag": self.faults.errors[0] if self.faults.errors else 0}
            if cmd == "get_arm_all_state":
                return {"state": "arm_all_state", "all_state": {
                    "temperature": [30000] * N_ARM_JOINTS, "current": [100] * N_ARM_JOINTS,
                    "voltage": [48000] * N_ARM_JOINTS, "err_flag": list(self.faults.joint_errors),
                    "en_flag": [1] * N_ARM_JOINTS, "err": list(self.faults.errors) or [0]}}
            return None  # unknown command: no reply, the SDK times out (-2)

    def _abort_planned(self) -> None:
        if self._planned is not None:
            conn, _ = self._planned
            self._planned = None
            self._push(conn, {"state": "current_trajectory_state", "trajectory_state": False, "device": 0,
                              "trajectory_connect": 0})

    def _movej(self, msg: dict, conn) -> bool:
        goal = np.asarray(msg.get("joint", []), dtype=float) / 1000.0
        v = float(msg.get("v", 0))
        if goal.shape != (N_ARM_JOINTS,) or np.any(np.abs(goal) > JOINT_LIMITS_DEG) or not 0 < v <= 100 \
                or self.faults.errors:
            return False
        self._abort_planned()
        speeds = np.asarray(JOINT_MAX_SPEED_DEG_S) * v / 100.0
        dist = np.abs(goal - self.q_deg)
        duration = max(float(np.max(dist / speeds)), 1e-6)
        self.target_deg, self._speed, self.mode = goal, dist / duration, "planned"   # all joints arrive together
        self._last_frame_deg = None
        self._planned = (conn, goal)
        self._moving.set()
        return True

    def _canfd(self, msg: dict) -> None:
        now = self.clock()
        target = np.asarray(msg.get("joint", []), dtype=float) / 1000.0
        if self.faults.errors:
            self.frames_ignored += 1     # a controller in error executes no motion command
            return
        if target.shape != (N_ARM_JOINTS,):
            self.rejected_frames += 1
            return
        ref = self.q_deg if self._last_frame_deg is None else self._last_frame_deg
        if np.max(np.abs(target - ref)) > MAX_FRAME_STEP_DEG or np.any(np.abs(target) > JOINT_LIMITS_DEG):
            self.rejected_frames += 1
            return
        follow = bool(msg.get("follow", False))
        tmode = int(msg.get("trajectory_mode", 0)) if follow else 0
        radio = float(msg.get("radio", 0))
        prev, prev_t = self._last_frame_deg, self._last_frame_t
        if prev_t is not None:
            gap = now - prev_t
            self.frame_gaps_s.append(gap)
            moving = prev is not None and float(np.max(np.abs(target - prev))) > 1e-9
            if follow and moving and gap > HIGH_FOLLOW_PERIOD_S + FOLLOW_GAP_TOLERANCE_S:
                self.follow_stops += 1
                if self.follow_stops == 1 or self.follow_stops % 100 == 0:
                    log.warning("emulated controller: high follow frame gap %.1f ms > %.0f ms: the arm stopped "
                                "between frames (%d times)", gap * 1e3, HIGH_FOLLOW_PERIOD_S * 1e3, self.follow_stops)
        self._planned = None
        self._last_frame_deg, self._last_frame_t = target, now
        if not follow:
            self.mode, self._tau_s, self.target_deg = "low", LOW_FOLLOW_TAU_S, target
        elif tmode == 1:
            self.mode, self.target_deg = "curve", target
            self._tau_s = max(radio / 100.0 * CURVE_FIT_MAX_LAG_FRAMES * HIGH_FOLLOW_PERIOD_S, 1e-3)
        elif tmode == 2:
            start = self.target_deg if self.mode == "filter" else self.q_deg
            goal = start + (1.0 - min(max(radio, 0.0), 999.0) / 1000.0) * (target - start)
            self.mode, self.target_deg = "filter", goal
            self._speed = np.abs(goal - self.q_deg) / HIGH_FOLLOW_PERIOD_S
        else:   # full pass-through: reach this frame within one high-follow period, then stand
            self.mode, self.target_deg = "pass", target
            self._speed = np.abs(target - self.q_deg) / HIGH_FOLLOW_PERIOD_S


def _dh_reply() -> dict:
    """get_DH_data from the description's DH table (read at each call: the one source), in the wire's units:
    per joint [a (0.001 mm), d (0.001 mm), alpha (0.001 deg), theta offset (0.001 deg)]."""
    from ate_description import contract

    rows = {}
    for i, (a_m, alpha_rad, d_m, off_rad) in enumerate(contract.DH_MODIFIED):
        rows[f"joint_{i + 1}"] = [int(round(a_m * 1e6)), int(round(d_m * 1e6)),
                                  int(round(math.degrees(alpha_rad) * 1e3)), int(round(math.degrees(off_rad) * 1e3))]
    return {"command": "get_DH_data", **rows}


def _static(reply: dict):
    return lambda emu: reply


def _software_info(emu: RealmanEmulator) -> dict:
    """Gen-3 form (ctrl/plan/dynamic info); the SDK derives the model and joint count from Product_version."""
    return {"Product_version": emu.product_version, "algorithm_info": {"version": "1.4.4"},
            "command": "arm_software_info",
            "ctrl_info": {"build_time": "2024/08/28 18:36:18", "commit_id": "0315333", "version": emu.firmware},
            "dynamic_info": {"model_version": "2"},
            "plan_info": {"build_time": "2024/08/28 18:36:33", "commit_id": "166c4a8", "version": emu.firmware}}


_QUERIES = {
    "get_arm_software_info": _software_info,
    "get_arm_current_trajectory": _static({"state": "arm_current_trajectory", "type": "none",
                                           "data": [0] * N_ARM_JOINTS}),
    "get_realtime_push": _static({
        "command": "get_realtime_push", "cycle": 5, "enable": False, "ip": "127.0.0.1", "port": 8089,
        "force_coordinate": 0, "hand_enable": False,
        "custom": {"expand_state": False, "joint_acc": False, "joint_speed": False, "lift_state": False,
                   "tail_end": False, "hand": False, "arm_current_status": False, "aloha_state": False,
                   "plus_base": False, "plus_state": False}}),
    "get_current_work_frame": _static({"frame_name": "World", "pose": [0] * 6, "state": "current_work_frame"}),
    "get_current_tool_frame": _static({"payload": 0, "pose": [0] * 6, "position": [0, 0, 0],
                                       "state": "current_tool_frame", "tool_name": "Arm_Tip"}),
    "get_install_pose": _static({"pose": [0, 0, 0], "state": "install_pose"}),
    "get_joint_min_pos": _static({"min_pos": [-int(d * 1000) for d in JOINT_LIMITS_DEG], "state": "joint_min_pos"}),
    "get_joint_max_pos": _static({"max_pos": [int(d * 1000) for d in JOINT_LIMITS_DEG], "state": "joint_max_pos"}),
    "get_joint_max_acc": _static({"joint_acc": [100000] * N_ARM_JOINTS, "state": "joint_max_acc"}),
    # RPM * 1000 of the joint: deg/s / 6
    "get_joint_max_speed": _static({"joint_speed": [int(round(v / 6 * 1000)) for v in JOINT_MAX_SPEED_DEG_S],
                                    "state": "joint_max_speed"}),
    "get_DH_data": lambda emu: _dh_reply(),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="RealMan controller emulator (JSON over TCP) for dry runs")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    emu = RealmanEmulator(args.host, args.port).start()
    print(f"RealMan controller emulator on {emu.host}:{emu.port} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
