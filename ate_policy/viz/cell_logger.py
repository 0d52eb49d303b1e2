"""``CellLogger``: the cell as a Rerun recording, logged off the control path.

What a 20 Hz loop (the policy node, the teleop node, ``ate_policy eval``) hands it each tick, and where it lands
(entity paths; timelines ``tick`` (sequence) and ``time`` (seconds since the logger's first tick)):

=================================  ============================================================================
``cameras/<cam>``                  the three camera streams (PNG = lossless, or JPEG; ``VizConfig.image_codec``)
``arms/<arm>/q``                   measured joints (7 series, rad)
``arms/<arm>/target``              commanded joint targets (7 series, rad); no row on a held tick
``arms/<arm>/gripper/opening``     measured gripper opening (0 closed .. 1 open); ``.../gripper/target`` commanded
``arms/<arm>/wrench/force``        wrist force (N, 3 series); ``.../wrench/torque`` (Nm)
``cell/...``                       the robot's 3D model from the description's URDF (static), its joints driven
                                   by the measured joint states (``cell/joints/<urdf joint>``, one Transform3D
                                   each) and the planned gripper path ``cell/plan/<arm>`` (the current chunk's
                                   TCP positions by forward kinematics: the future trajectory in 3D)
``policy/chunk``                   the plan the runtime holds at a chunk's arrival, from that tick on: a
                                   (n, 16) tensor in the data contract's order (the future trajectory in numbers)
``policy/queue_depth``             planned targets left after each tick
``events/<kind>``                  text events: chunk (arrivals and merges), hold, refusal, estop, operator,
                                   recording, audit (a dataset's flags, ``ate_policy viz``), info
``status/recording``               1 while an episode is recorded (teleop), else 0
=================================  ============================================================================

Every ``log_*`` call only puts the item into a bounded queue (``VizConfig.queue_size``) and returns: a full
queue drops the item and counts it (``stats()["dropped"]``), so a slow viewer or encoder never delays a tick.
One worker thread encodes images, computes the URDF joint transforms and the forward kinematics and calls
Rerun. Arrays passed in must not be modified afterwards by the caller (the policy node and the sim hand over
fresh arrays each tick).

Sinks: ``rrd_path`` (a ``.rrd`` file to replay with ``rerun FILE``) and/or ``viewer_url`` (a viewer's gRPC
address, ``ate_policy.viz.viewer.start_viewer``).
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_description.errors import UserError

log = logging.getLogger(__name__)

APP_ID = "ate_cell"
TICK = "tick"
TIME = "time"
EVENT_KINDS = ("chunk", "hold", "refusal", "estop", "operator", "recording", "audit", "info")
IMAGE_CODECS = ("png", "jpeg", "raw")
_LEVELS = {"chunk": "INFO", "hold": "WARN", "refusal": "WARN", "estop": "ERROR", "operator": "INFO",
           "recording": "INFO", "audit": "WARN", "info": "INFO"}
_STOP = object()
WORKER_NICE = 10   # the logging thread yields the CPU to the control loop on a busy machine


def camera_path(cam: str) -> str:
    return f"cameras/{cam}"


def arm_path(arm: str, what: str) -> str:
    """``what``: q | target | gripper/opening | gripper/target | wrench/force | wrench/torque."""
    return f"arms/{arm}/{what}"


def event_path(kind: str) -> str:
    return f"events/{kind}"


CHUNK_PATH = "policy/chunk"
QUEUE_DEPTH_PATH = "policy/queue_depth"
RECORDING_PATH = "status/recording"
URDF_PREFIX = "cell"


@dataclass
class VizConfig:
    # Items waiting for the worker (one tick = one item); a full queue drops instead of blocking the loop.
    queue_size: int = 256
    # png: lossless (a replay shows exactly what the policy saw); jpeg: ~10x smaller, for live 960x540 streams.
    image_codec: str = "jpeg"
    jpeg_quality: int = 85
    # Live loops drop when the queue is full (counted); offline runs in simulated time (eval) wait instead.
    drop_when_full: bool = True
    # Log the cameras every n-th tick only (1 = every tick): halves the encoder load at 2.
    camera_every_n_ticks: int = 1
    # The robot's 3D model and its joints; off for plots-only logging.
    urdf: bool = True

    def validate(self) -> None:
        if self.image_codec not in IMAGE_CODECS:
            raise UserError(f"viz image_codec {self.image_codec!r}: expected one of {', '.join(IMAGE_CODECS)}")
        if self.queue_size < 1 or self.camera_every_n_ticks < 1:
            raise UserError("viz queue_size and camera_every_n_ticks must be >= 1")


class CellLogger:
    """See the module docstring. ``close()`` drains the queue and closes the sinks (the .rrd is complete)."""

    def __init__(self, name: str = "cell", *, rrd_path: str | Path | None = None, viewer_url: str | None = None,
                 config: VizConfig | None = None, calibration=None, recording_id: str | None = None):
        import rerun as rr

        self.cfg = config or VizConfig()
        self.cfg.validate()
        if rrd_path is None and viewer_url is None:
            raise UserError("CellLogger needs a sink: an rrd_path, a viewer_url or both")
        self.rrd_path = Path(rrd_path) if rrd_path is not None else None
        self.viewer_url = viewer_url
        self._calibration = calibration
        self.rec = rr.RecordingStream(APP_ID, recording_id=recording_id or f"{name}-{time.time_ns()}")
        sinks = []
        if self.rrd_path is not None:
            self.rrd_path.parent.mkdir(parents=True, exist_ok=True)
            sinks.append(rr.FileSink(str(self.rrd_path)))
        if viewer_url is not None:
            sinks.append(rr.GrpcSink(viewer_url))
        self.rec.set_sinks(*sinks, default_blueprint=blueprint())
        self.rec.send_recording_name(name)
        self._queue: queue.Queue = queue.Queue(maxsize=self.cfg.queue_size)
        self.dropped: collections.Counter = collections.Counter()   # by item kind; producer side only
        self.logged: collections.Counter = collections.Counter()    # worker side only
        self.errors = 0
        self._t0: float | None = None
        self._closed = False
        self.ready = threading.Event()   # set once the worker has logged the static parts (URDF, series)
        self._worker = threading.Thread(target=self._run, name="ate-viz", daemon=True)
        self._worker.start()

    # --- producer side (the control loop): never blocks -------------------------------------------------------
    def _put(self, kind: str, *item) -> bool:
        if self._closed:
            return False
        try:
            if self.cfg.drop_when_full:
                self._queue.put_nowait((kind, *item))
            else:
                self._queue.put((kind, *item))
            return True
        except queue.Full:
            self.dropped[kind] += 1
            return False

    def log_tick(self, tick: int, t_s: float, *, state=None, target=None, wrench=None,
                 images: dict | None = None, queue_depth: int | None = None) -> bool:
        """One control tick: ``state`` / ``target`` 16-vectors in the contract's order (target None: held),
        ``wrench`` (12,) both arms' wrist wrench, ``images`` camera name -> (H, W, 3) uint8 RGB."""
        if images and tick % self.cfg.camera_every_n_ticks:
            images = None
        return self._put("tick", tick, t_s, state, target, wrench, images, queue_depth)

    def log_chunk(self, tick: int, t_s: float, plan, source_tick: int | None = None) -> bool:
        """The plan from tick ``tick`` on at a chunk's arrival: (n, 16), row 0 the target of ``tick``."""
        return self._put("chunk", tick, t_s, plan, source_tick)

    def log_event(self, tick: int, t_s: float, kind: str, text: str, level: str | None = None) -> bool:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
        return self._put("event", tick, t_s, kind, text, level or _LEVELS[kind])

    def log_status(self, tick: int, t_s: float, recording: bool) -> bool:
        return self._put("status", tick, t_s, bool(recording))

    def log_scalar(self, tick: int, t_s: float, path: str, value: float) -> bool:
        """Any other time series (e.g. a dataset's per-stream sync error)."""
        return self._put("scalar", tick, t_s, path, float(value))

    def stats(self) -> dict:
        return {"queued": self._queue.qsize(), "logged": dict(self.logged), "dropped": sum(self.dropped.values()),
                "dropped_by_kind": dict(self.dropped), "errors": self.errors}

    def close(self, timeout_s: float = 30.0) -> dict:
        """Log what is queued, close the sinks; returns ``stats()``. Idempotent."""
        if not self._closed:
            self._closed = True
            deadline = time.monotonic() + timeout_s
            while self._worker.is_alive() and time.monotonic() < deadline:
                try:
                    self._queue.put(_STOP, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self._worker.join(max(0.0, deadline - time.monotonic()))
            if self._worker.is_alive():
                log.warning("viz: the logger did not drain its queue within %.0f s", timeout_s)
            self.rec.flush(timeout_sec=max(1.0, deadline - time.monotonic()))
            self.rec.disconnect()
        return self.stats()

    # --- worker side --------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:   # this thread below the control loop's priority (Linux: nice is per thread)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(
                os.PRIO_PROCESS, threading.get_native_id()) + WORKER_NICE))
        except (AttributeError, OSError):
            pass
        try:
            self._setup()
        except Exception:  # noqa: BLE001  (visualisation must never take the loop down)
            self.errors += 1
            log.exception("viz: set-up failed; logging without the robot model")
            self._tree, self._joints = None, {}
        self.ready.set()
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                getattr(self, f"_do_{item[0]}")(*item[1:])
                self.logged[item[0]] += 1
            except Exception:  # noqa: BLE001
                self.errors += 1
                if self.errors <= 3:
                    log.exception("viz: could not log a %s item", item[0])

    def _setup(self) -> None:
        import rerun as rr

        rec = self.rec
        for arm in contract.ARMS:
            joints = [f"j{i + 1}" for i in range(contract.N_ARM_JOINTS)]
            rec.log(arm_path(arm, "q"), rr.SeriesLines(names=[f"{arm} {j}" for j in joints]), static=True)
            rec.log(arm_path(arm, "target"), rr.SeriesPoints(names=[f"{arm} {j} target" for j in joints],
                                                            marker_sizes=1.5), static=True)
            rec.log(arm_path(arm, "gripper/opening"), rr.SeriesLines(names=f"{arm} gripper"), static=True)
            rec.log(arm_path(arm, "gripper/target"), rr.SeriesPoints(names=f"{arm} gripper target",
                                                                    marker_sizes=1.5), static=True)
            rec.log(arm_path(arm, "wrench/force"), rr.SeriesLines(names=["Fx", "Fy", "Fz"]), static=True)
            rec.log(arm_path(arm, "wrench/torque"), rr.SeriesLines(names=["Tx", "Ty", "Tz"]), static=True)
        self._tree, self._joints, self._t_cell_base = None, {}, {}
        if not self.cfg.urdf:
            return
        from ate_description.calibration import load_calibration
        from ate_description.urdf import DEFAULT_URDF, cell_urdf

        if self._calibration is None:
            path = DEFAULT_URDF
            cal = load_calibration()
        else:
            cal = self._calibration
            tmp = tempfile.NamedTemporaryFile("w", suffix=".urdf", delete=False)
            tmp.write(cell_urdf(cal))
            tmp.close()
            path = Path(tmp.name)
        self._tree = rr.urdf.UrdfTree.from_file_path(path, entity_path_prefix=URDF_PREFIX)
        self._tree.log_urdf_to_recording(rec)
        self._joints = {j.name: j for j in self._tree.joints() if j.joint_type in ("revolute", "prismatic",
                                                                                   "continuous")}
        self._root_frame = self._tree.root_link().name
        self._t_cell_base = {arm: cal.t_cell_base(arm) for arm in contract.ARMS}
        for arm in contract.ARMS:
            rec.log(f"{URDF_PREFIX}/plan/{arm}", rr.CoordinateFrame(self._root_frame), static=True)

    def _time(self, tick: int, t_s: float) -> None:
        if self._t0 is None:
            self._t0 = t_s
        self.rec.set_time(TICK, sequence=int(tick))
        self.rec.set_time(TIME, duration=float(t_s - self._t0))

    def _image(self, img: np.ndarray):
        import rerun as rr

        img = np.asarray(img)
        if self.cfg.image_codec == "raw":
            return rr.Image(img, color_model="RGB")
        import cv2

        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        if self.cfg.image_codec == "png":
            ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            media = "image/png"
        else:
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(self.cfg.jpeg_quality)])
            media = "image/jpeg"
        if not ok:
            raise RuntimeError("image encoding failed")
        return rr.EncodedImage(contents=buf.tobytes(), media_type=media)

    def _do_tick(self, tick, t_s, state, target, wrench, images, queue_depth) -> None:
        import rerun as rr

        rec = self.rec
        self._time(tick, t_s)
        for cam, img in (images or {}).items():
            if img is not None:
                rec.log(camera_path(cam), self._image(img))
        for arm in contract.ARMS:
            sl = contract.arm_slice(arm)
            nj = contract.N_ARM_JOINTS
            if state is not None:
                s = np.asarray(state, dtype=float)
                rec.log(arm_path(arm, "q"), rr.Scalars(s[sl.start:sl.start + nj]))
                rec.log(arm_path(arm, "gripper/opening"), rr.Scalars(s[sl.stop - 1]))
                self._drive_model(arm, s[sl.start:sl.start + nj], s[sl.stop - 1])
            if target is not None:
                a = np.asarray(target, dtype=float)
                rec.log(arm_path(arm, "target"), rr.Scalars(a[sl.start:sl.start + nj]))
                rec.log(arm_path(arm, "gripper/target"), rr.Scalars(a[sl.stop - 1]))
            if wrench is not None:
                w = np.asarray(wrench, dtype=float)[6 * contract.ARMS.index(arm):][:6]
                rec.log(arm_path(arm, "wrench/force"), rr.Scalars(w[:3]))
                rec.log(arm_path(arm, "wrench/torque"), rr.Scalars(w[3:]))
        if queue_depth is not None:
            rec.log(QUEUE_DEPTH_PATH, rr.Scalars(float(queue_depth)))

    def _drive_model(self, arm: str, q: np.ndarray, opening: float) -> None:
        if not self._joints or not np.all(np.isfinite(q)):
            return
        from ate_description.urdf import finger_position_m

        values = {f"{arm}_joint{i + 1}": float(x) for i, x in enumerate(q)}
        if np.isfinite(opening):
            x = finger_position_m(float(np.clip(opening, 0.0, 1.0)))
            values[f"{arm}_finger_a"] = values[f"{arm}_finger_b"] = x
        for name, value in values.items():
            joint = self._joints.get(name)
            if joint is not None:
                self.rec.log(f"{URDF_PREFIX}/joints/{name}", joint.compute_transform(value, clamp=False))

    def _do_chunk(self, tick, t_s, plan, source_tick) -> None:
        import rerun as rr

        from ate_description.kinematics import fk

        plan = np.asarray(plan, dtype=float)
        self._time(tick, t_s)
        self.rec.log(CHUNK_PATH, rr.Tensor(plan, dim_names=["step", "action"]))
        if self._t_cell_base:
            tcp = np.eye(4)
            tcp[2, 3] = contract.GRIPPER_TCP_OFFSET_M
            for arm in contract.ARMS:
                sl = contract.arm_slice(arm)
                q = plan[:, sl.start:sl.start + contract.N_ARM_JOINTS]
                q = q[np.all(np.isfinite(q), axis=1)]
                pts = [(self._t_cell_base[arm] @ fk(qi) @ tcp)[:3, 3] for qi in q]
                if pts:
                    self.rec.log(f"{URDF_PREFIX}/plan/{arm}", rr.LineStrips3D([pts], radii=0.004))

    def _do_event(self, tick, t_s, kind, text, level) -> None:
        import rerun as rr

        self._time(tick, t_s)
        self.rec.log(event_path(kind), rr.TextLog(text, level=level))

    def _do_scalar(self, tick, t_s, path, value) -> None:
        import rerun as rr

        self._time(tick, t_s)
        self.rec.log(path, rr.Scalars(value))

    def _do_status(self, tick, t_s, recording) -> None:
        import rerun as rr

        self._time(tick, t_s)
        self.rec.log(RECORDING_PATH, rr.Scalars(1.0 if recording else 0.0))


def blueprint():
    """The default layout: the 3D cell and the cameras on top; joints, grippers, wrenches and events below."""
    import rerun.blueprint as rrb

    cams = [rrb.Spatial2DView(origin=camera_path(c), name=c) for c in contract.CAMERA_NAMES]
    arms = []
    for arm in contract.ARMS:
        arms.append(rrb.TimeSeriesView(name=f"{arm} joints (rad): measured lines, targets dots",
                                       contents=[f"+ /{arm_path(arm, 'q')}", f"+ /{arm_path(arm, 'target')}"]))
    grip = rrb.TimeSeriesView(name="grippers (0 closed .. 1 open)", contents=["+ /arms/*/gripper/**"])
    force = rrb.TimeSeriesView(name="wrist wrench", contents=["+ /arms/*/wrench/**"])
    sync = rrb.TimeSeriesView(name="sync error (ms, datasets)", contents=["+ /audit/**"])
    return rrb.Blueprint(
        rrb.Vertical(
            rrb.Horizontal(rrb.Spatial3DView(origin="/", name="cell", contents=[f"+ /{URDF_PREFIX}/**"]),
                           rrb.Vertical(*cams), column_shares=[2, 1]),
            rrb.Horizontal(rrb.Tabs(*arms, grip, force, sync),
                           rrb.Vertical(rrb.TextLogView(origin="/events", name="events"),
                                        rrb.TimeSeriesView(name="plan depth / recording",
                                                           contents=[f"+ /{QUEUE_DEPTH_PATH}",
                                                                     f"+ /{RECORDING_PATH}"])),
                           column_shares=[2, 1]),
            row_shares=[3, 2]),
        collapse_panels=True)
