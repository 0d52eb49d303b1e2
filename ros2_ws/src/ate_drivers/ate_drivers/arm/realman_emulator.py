"""A protocol-level emulator of the RealMan arm controller: JSON over TCP, what SDK 1.1.6's ``libapi_c.so`` parses.

Tests drive the real ``Robotic_Arm`` SDK (and its C library) against it, so the bytes on the wire are the ones a
real Gen-3 controller exchanges (docs/architecture.md (hardware facts)). Reply formats were established against SDK 1.1.6: every
query of the connect sequence must be answered, ``get_current_arm_state`` in the ``"err": [..]`` form, and
``movej_canfd`` gets no reply. Units on the wire: joints 0.001 deg, positions 0.001 mm, angles 0.001 rad,
force 0.001 N.

The emulated arm integrates its joints toward the last ``movej_canfd`` target at the controller's joint speed
limits and refuses (ignores, counting it) a frame that jumps more than 10 deg, as the controller does. Faults are
injected through :class:`Faults`: refuse a command, delay replies, send a malformed reply, drop the connection,
report controller error codes.

Run by hand for a dry run: ``python -m ate_drivers.arm.realman_emulator --port 8080``.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ate_description.contract import JOINT_LIMITS_DEG, JOINT_MAX_SPEED_DEG_S, N_ARM_JOINTS

MAX_FRAME_STEP_DEG = 10.0
"""movej_canfd over Ethernet: a frame more than 10 deg from the previous one is refused by the controller."""



@dataclass
class Faults:
    """What the emulated controller does wrong; tests set fields while the emulator runs."""
    refuse: set[str] = field(default_factory=set)        # commands answered with false / ignored (movej_canfd)
    delay_s: dict[str, float] = field(default_factory=dict)  # command -> reply delay
    malformed: set[str] = field(default_factory=set)     # commands answered with a truncated JSON line
    silent: set[str] = field(default_factory=set)        # commands never answered
    errors: list[int] = field(default_factory=list)      # controller error codes in arm_state.err
    accept_connections: bool = True                      # False: new connections are closed at once


@dataclass
class Received:
    t: float            # time.monotonic() at arrival
    msg: dict


class RealmanEmulator:
    """One emulated arm on ``host:port`` (port 0 picks a free one); ``start()`` / ``stop()`` or a ``with`` block."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, q0_deg=None,
                 wrench=(1.0, -2.0, 3.0, 0.1, -0.2, 0.3)):
        self.host = host
        self._req_port = port
        self.faults = Faults()
        self.received: list[Received] = []
        self.rejected_frames = 0
        self.q_deg = np.zeros(N_ARM_JOINTS) if q0_deg is None else np.asarray(q0_deg, dtype=float).copy()
        self.target_deg = self.q_deg.copy()
        self.wrench = np.asarray(wrench, dtype=float)
        self.tool_voltage_type = 0
        self._last_frame_deg: np.ndarray | None = None
        self._t_last = time.monotonic()
        self._lock = threading.RLock()
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
        t = threading.Thread(target=self._accept_loop, name="rm-emu-accept", daemon=True)
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

    # --- what the tests look at ------------------------------------------------------------------------------
    def commands(self, name: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if name is None or r.msg.get("command") == name]

    def canfd_targets_deg(self) -> list[np.ndarray]:
        return [np.asarray(r.msg["joint"], dtype=float) / 1000.0 for r in self.commands("movej_canfd")]

    def joints_deg(self) -> np.ndarray:
        with self._lock:
            self._advance()
            return self.q_deg.copy()

    # --- motion ----------------------------------------------------------------------------------------------
    def _advance(self) -> None:
        now = time.monotonic()
        dt, self._t_last = now - self._t_last, now
        step = np.asarray(JOINT_MAX_SPEED_DEG_S) * dt
        self.q_deg = self.q_deg + np.clip(self.target_deg - self.q_deg, -step, step)

    def _pose(self) -> list[int]:
        from ate_description.kinematics import fk, pose6_from_matrix  # the one FK of the arm
        p = pose6_from_matrix(fk(np.radians(self.q_deg)))
        return [int(round(v * 1e6)) for v in p[:3]] + [int(round(v * 1e3)) for v in p[3:]]

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
            t = threading.Thread(target=self._serve, args=(conn,), name="rm-emu-conn", daemon=True)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
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
                reply = self._handle(msg)
                if reply is None:
                    continue
                cmd = msg.get("command", "")
                if cmd in self.faults.delay_s:
                    time.sleep(self.faults.delay_s[cmd])
                out = json.dumps(reply, separators=(",", ":")).encode()
                if cmd in self.faults.malformed:
                    out = out[: len(out) // 2]  # a truncated, still terminated line: not valid JSON
                try:
                    conn.sendall(out + b"\r\n")
                except OSError:
                    return

    def _handle(self, msg: dict) -> dict | None:
        cmd = msg.get("command", "")
        with self._lock:
            self.received.append(Received(time.monotonic(), msg))
            self._advance()
            if cmd in self.faults.silent:
                return None
            refused = cmd in self.faults.refuse
            if cmd == "movej_canfd":
                if not refused:
                    self._canfd(msg)
                return None  # streaming: the SDK awaits no reply
            handler = _QUERIES.get(cmd)
            if handler is not None:
                return handler(self)
            if cmd == "get_current_arm_state":
                return {"state": "current_arm_state", "arm_state": {
                    "joint": [int(round(v * 1000)) for v in self.q_deg], "pose": self._pose(),
                    "err": list(self.faults.errors) or [0]}}
            if cmd == "get_force_data":
                f = [int(round(v * 1000)) for v in self.wrench]
                return {"command": "get_force_data", "force_data": f, "zero_force_data": f,
                        "work_zero_force_data": f, "tool_zero_force_data": f}
            if cmd == "set_arm_stop":
                if not refused:
                    self.target_deg = self.q_deg.copy()
                    self._last_frame_deg = None
                return {"command": "set_arm_stop", "arm_stop": not refused}
            if cmd == "set_arm_slow_stop":
                if not refused:
                    self.target_deg = self.q_deg.copy()
                return {"command": "set_arm_slow_stop", "arm_slow_stop": not refused}
            if cmd == "set_tool_voltage":
                if not refused:
                    self.tool_voltage_type = int(msg.get("voltage_type", 0))
                return {"command": "set_tool_voltage", "state": not refused}
            return None  # unknown command: no reply, the SDK times out (-2)

    def _canfd(self, msg: dict) -> None:
        target = np.asarray(msg.get("joint", []), dtype=float) / 1000.0
        if target.shape != (N_ARM_JOINTS,):
            self.rejected_frames += 1
            return
        ref = self.q_deg if self._last_frame_deg is None else self._last_frame_deg
        if np.max(np.abs(target - ref)) > MAX_FRAME_STEP_DEG or np.any(np.abs(target) > JOINT_LIMITS_DEG):
            self.rejected_frames += 1
            return
        self._last_frame_deg = target
        self.target_deg = target


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


_QUERIES = {
    "get_arm_software_info": _static({
        "Product_version": "RM75-6F", "algorithm_info": {"version": "1.4.4"}, "command": "arm_software_info",
        "ctrl_info": {"build_time": "2024/08/28 18:36:18", "commit_id": "0315333", "version": "V1.6.1"},
        "dynamic_info": {"model_version": "2"},
        "plan_info": {"build_time": "2024/08/28 18:36:33", "commit_id": "166c4a8", "version": "V1.6.1"}}),
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
