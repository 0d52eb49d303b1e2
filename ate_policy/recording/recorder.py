"""Episode recorder: asynchronous robot/camera streams -> crash-safe 20 Hz LeRobot v3.0 dataset.

Used by the teleop node (which only wires topics to it) and by tests/benchmarks directly. Threads:

* **producers** (driver callbacks) call ``put_state`` / ``put_image``: they only store the newest sample;
* the **control loop** calls ``tick(action, now_s)`` at 20 Hz: it assembles a frame (``sync.FrameAssembler``:
  newest sample per stream, freshness limit, stale accounting) and puts it on a *bounded* queue without ever
  blocking; when the queue is full the frame is dropped and counted (and the episode flagged), never silently;
* one **writer thread** owns the ``LeRobotDataset``: ``add_frame`` (LeRobot's streaming encoder encodes video in
  its own threads, or PNG staging + encoding at save time), ``save_episode``, discard, and the crash-safe commit
  of ``durable.py``. Episode control calls travel through the same queue, so they apply in order.

Every saved episode gets a line in ``meta/ate_episodes.jsonl`` (ticks, stale ticks per stream, sync error
percentiles, dropped frames, flag) that ``ate_policy inspect`` reads.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_description.errors import UserError
from ate_policy.recording import durable
from ate_policy.recording.sync import EpisodeSyncStats, FrameAssembler

log = logging.getLogger(__name__)

STATE_STREAM = "state"
STREAMS = contract.CAPTURE_STREAMS  # ("state", cam_high, cam_left_wrist, cam_right_wrist)

# vcodec "auto": the first of these that really encodes a frame of the cameras' size on this machine ...
HARDWARE_VCODECS = ("h264_nvenc", "hevc_nvenc")
# ... else this software encoder and preset, chosen from the options that benchmarks/recorder_throughput.py
# measures side by side (docs/data.md, "Benchmark").
SOFTWARE_VCODEC, SOFTWARE_PRESET = "h264", "ultrafast"


def _can_encode(vcodec: str, width: int, height: int) -> bool:
    """Open ``vcodec`` and encode one frame in memory: the only test that NVENC is really usable here."""
    import av

    try:
        ctx = av.CodecContext.create(vcodec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = Fraction(1, contract.FPS)
        ctx.open()
        frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")
        frame.pts = 0
        ctx.encode(frame.reformat(format="yuv420p"))
        ctx.encode(None)
        return True
    except Exception as e:  # noqa: BLE001  (no device, no driver, unsupported size: all mean "not here")
        log.debug("video encoder %s unusable here: %s", vcodec, e)
        return False


def resolve_encoder(vcodec: str, preset, width: int, height: int) -> tuple[str, object]:
    """(codec, preset) the recorder will use; only "auto" is resolved, by trying the hardware encoders."""
    if vcodec != "auto":
        return vcodec, preset
    for cand in HARDWARE_VCODECS:
        if _can_encode(cand, width, height):
            return cand, preset
    return SOFTWARE_VCODEC, SOFTWARE_PRESET if preset is None else preset


@dataclass
class RecorderConfig:
    root: str = "outputs/recordings/ate_dual"
    repo_id: str = "local/ate_dual"
    task: str = ""                              # default language instruction (tasks/<name>.yaml)
    fps: int = contract.FPS
    image_height: int = contract.CAMERA_RESOLUTION[0]
    image_width: int = contract.CAMERA_RESOLUTION[1]
    # Freshness limit: a sample older than this at a tick is stale. One period: an older sample means the
    # stream skipped a whole tick.
    max_age_ms: float = 1000.0 / contract.FPS
    required_streams: list[str] = field(default_factory=lambda: list(STREAMS))
    # Past this share of ticks with a stale required stream the episode is flagged (a demonstration whose
    # observations lag its actions teaches the policy the wrong timing).
    max_stale_share: float = 0.05
    flagged_policy: str = "keep"               # keep | drop: what stop_and_save does with a flagged episode
    # Bounded hand-off between control loop and writer: 60 frames = 3 s of slack for a slow disk/encoder,
    # about 280 MB at 3 x 960x540; beyond it frames are dropped (and counted) rather than stalling control.
    queue_size: int = 60
    streaming_encoding: bool = True            # encode video while recording (no PNG round-trip)
    # Any codec LeRobot's writer accepts (h264, hevc, libsvtav1, h264_nvenc, ...). "auto" = NVENC when this
    # machine can really open it (checked by encoding a test frame), else SOFTWARE_VCODEC. LeRobot's own
    # "auto" only checks that FFmpeg was built with NVENC, which the PyAV wheel always is, and then fails at
    # the first frame on a machine without an NVIDIA GPU.
    vcodec: str = "auto"
    # Codec speed/quality preset; None = the codec's default (x264: medium, libsvtav1: LeRobot's 12), or
    # SOFTWARE_PRESET when "auto" falls back to SOFTWARE_VCODEC. benchmarks/recorder_throughput.py measures
    # the options side by side (docs/data.md).
    encoder_preset: str | int | None = None
    encoder_threads: int | None = None         # per camera; None = the codec decides
    image_writer_threads: int = 4              # PNG staging threads when streaming_encoding is off

    def validate(self) -> None:
        if self.fps <= 0 or self.max_age_ms <= 0 or self.queue_size < 1:
            raise UserError("fps, max_age_ms and queue_size must be positive")
        if self.flagged_policy not in ("keep", "drop"):
            raise UserError(f"flagged_policy must be 'keep' or 'drop', got {self.flagged_policy!r}")
        unknown = set(self.required_streams) - set(STREAMS)
        if unknown:
            raise UserError(f"unknown required_streams {sorted(unknown)}; streams are {list(STREAMS)}")
        if not 0.0 <= self.max_stale_share <= 1.0:
            raise UserError("max_stale_share must be within [0, 1]")

    def features(self) -> dict:
        return contract.features(image_shape=(self.image_height, self.image_width, 3))


@dataclass
class EpisodeReport:
    """What stop_and_save did with an episode."""

    saved: bool
    episode_index: int | None
    frames: int
    dropped_frames: int
    flagged: bool
    reason: str
    sync: dict


class _Command:
    def __init__(self, kind: str, payload=None):
        self.kind = kind
        self.payload = payload
        self.future: concurrent.futures.Future = concurrent.futures.Future()


def _check_features(existing: dict, wanted: dict, root: Path) -> None:
    problems = []
    for key, ft in wanted.items():
        have = existing.get(key)
        if have is None:
            problems.append(f"missing feature {key}")
        elif have["dtype"] != ft["dtype"] or tuple(have["shape"]) != tuple(ft["shape"]):
            problems.append(f"{key}: dataset has {have['dtype']} {tuple(have['shape'])}, "
                            f"recorder writes {ft['dtype']} {tuple(ft['shape'])}")
        elif ft.get("names") and have.get("names") and list(have["names"]) != list(ft["names"]):
            problems.append(f"{key}: names differ")
    from lerobot.utils.constants import DEFAULT_FEATURES

    extra = set(existing) - set(wanted) - set(DEFAULT_FEATURES)
    if extra:
        problems.append(f"extra features {sorted(extra)}")
    if problems:
        raise UserError(f"cannot resume {root}: its features do not match the recorder's: " + "; ".join(problems))


class EpisodeRecorder:
    """Record episodes into a LeRobot v3.0 dataset; see the module docstring for the threading model."""

    def __init__(self, cfg: RecorderConfig, resume: bool | None = None):
        cfg.validate()
        self.cfg = cfg
        self.root = Path(cfg.root)
        self.max_age_s = cfg.max_age_ms / 1000.0
        self.period_s = 1.0 / cfg.fps
        self._assembler = FrameAssembler(STREAMS, self.max_age_s)
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._recording = False
        self._task = cfg.task
        self._t0: float | None = None
        self._frames = 0
        self._dropped = 0
        self._waiting_ticks = 0
        self._stats: EpisodeSyncStats | None = None
        self.recovery: dict | None = None
        exists = (self.root / "meta" / "info.json").exists()
        if resume is None:
            resume = exists
        if resume and not exists:
            raise UserError(f"cannot resume {self.root}: no LeRobot dataset there (meta/info.json missing)")
        if not resume and self.root.exists() and any(self.root.iterdir()):
            raise UserError(f"{self.root} exists and is not empty; resume it or choose another root")
        self.vcodec, self.encoder_preset = resolve_encoder(cfg.vcodec, cfg.encoder_preset, cfg.image_width,
                                                           cfg.image_height)
        if self.vcodec != "libsvtav1" and (cfg.image_width % 2 or cfg.image_height % 2):
            # yuv420p halves the chroma planes: x264, x265 and NVENC refuse odd sizes at the first frame
            raise UserError(f"{self.vcodec} video needs even image sizes, got "
                            f"{cfg.image_height}x{cfg.image_width}: resize in the camera node or set "
                            "vcodec: libsvtav1")
        self._ds = self._open(resume)
        self._thread = threading.Thread(target=self._writer_loop, name="episode-writer", daemon=True)
        self._thread.start()

    # ---- dataset handling (writer thread after __init__) -----------------------------------------------------
    def _writer_kwargs(self) -> dict:
        from lerobot.configs import RGBEncoderConfig

        kw = dict(rgb_encoder=RGBEncoderConfig(vcodec=self.vcodec, preset=self.encoder_preset),
                  encoder_threads=self.cfg.encoder_threads, streaming_encoding=self.cfg.streaming_encoding)
        if not self.cfg.streaming_encoding:
            kw["image_writer_threads"] = self.cfg.image_writer_threads
        return kw

    def _open(self, resume: bool):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        if resume:
            self.recovery = durable.recover(self.root)
            if self.recovery["rolled_back"] or self.recovery["removed_staging"]:
                log.warning("recovered %s after an interrupted recording: %s", self.root, self.recovery)
            ds = LeRobotDataset.resume(self.cfg.repo_id, root=self.root, **self._writer_kwargs())
            if ds.meta.fps != self.cfg.fps:
                raise UserError(f"cannot resume {self.root}: dataset is {ds.meta.fps} Hz, recorder {self.cfg.fps} Hz")
            _check_features(ds.meta.features, self.cfg.features(), self.root)
            return ds
        return LeRobotDataset.create(repo_id=self.cfg.repo_id, fps=self.cfg.fps, root=self.root,
                                     features=self.cfg.features(), robot_type=contract.ROBOT_TYPE,
                                     use_videos=True, **self._writer_kwargs())

    def _reopen(self) -> None:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        self._ds = LeRobotDataset.resume(self.cfg.repo_id, root=self.root, **self._writer_kwargs())

    def _writer_loop(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, _Command):
                try:
                    result = self._run_command(item)
                    item.future.set_result(result)
                except BaseException as e:  # noqa: BLE001  (handed to the caller through the future)
                    log.exception("episode writer: %s failed", item.kind)
                    item.future.set_exception(e)
                if item.kind == "close":
                    return
                continue
            if self._error is not None:
                continue  # the episode is already broken; its discard/stop will report the error
            try:
                self._wait_for_encoders()
                self._ds.add_frame(item)
            except BaseException as e:  # noqa: BLE001
                log.exception("episode writer: add_frame failed")
                self._error = e

    # LeRobot's streaming encoder has its own bounded queue per camera and, when one stays full for 0.1 s,
    # drops the frame with only a log line: the video would then be shorter than the episode's parquet rows.
    # The writer thread (the only producer of those queues) therefore waits for room before each add_frame:
    # a slow encoder backs up into our queue, where tick() drops and counts. Private attributes of LeRobot
    # 0.6.1; if they move, the wait is skipped and the count after the save (_encoder_drops) still reports
    # such drops.
    def _encoder(self):
        return getattr(getattr(self._ds, "writer", None), "_streaming_encoder", None)

    def _wait_for_encoders(self) -> None:
        enc = self._encoder()
        queues = getattr(enc, "_frame_queues", None) or {}
        threads = getattr(enc, "_threads", None) or {}
        deadline = time.monotonic() + 10.0  # never hang on a stopped encoder: LeRobot then drops, we count
        for key, q in list(queues.items()):
            thread = threads.get(key)
            # A dead encoder thread never makes room: add_frame then raises LeRobot's "crashed" error instead.
            while q.full() and (thread is None or thread.is_alive()) and time.monotonic() < deadline:
                time.sleep(0.002)

    def _encoder_drops(self) -> int:
        return int(sum((getattr(self._encoder(), "_dropped_frames", None) or {}).values()))

    def _run_command(self, cmd: _Command):
        if cmd.kind == "discard":
            if self._ds.has_pending_frames():
                self._ds.clear_episode_buffer()
            self._error = None
            return None
        if cmd.kind == "save":
            if self._error is not None:
                err, self._error = self._error, None
                self._ds.clear_episode_buffer()
                raise RuntimeError(f"episode could not be written and was discarded: {err}") from err
            record = cmd.payload
            durable.begin(self.root)
            self._ds.save_episode()
            lost = self._encoder_drops()
            if lost:  # frames missing from the videos (see _wait_for_encoders): counted and flagged
                log.error("LeRobot's video encoder dropped %d frame(s) of this episode", lost)
                record["encoder_dropped_frames"] = lost
                record["dropped_frames"] += lost
                record["flagged"] = True
            self._ds.finalize()      # closes the parquet footers: from here the episode is durable
            index = self._ds.meta.total_episodes - 1
            record["episode_index"] = index
            durable.append_sidecar(self.root, record)
            durable.end(self.root)
            self._reopen()           # next episode goes to new files; nothing finished is reopened for writing
            return index
        if cmd.kind == "close":
            if self._ds.has_pending_frames():
                self._ds.clear_episode_buffer()
            self._ds.finalize()
            return None
        raise ValueError(cmd.kind)

    def _submit(self, kind: str, payload=None, wait: bool = True):
        if not self._thread.is_alive():
            raise RuntimeError("episode writer thread is not running (recorder closed?)")
        cmd = _Command(kind, payload)
        self._queue.put(cmd)  # control commands are never dropped: block until there is room
        return cmd.future.result() if wait else cmd.future

    # ---- producers -------------------------------------------------------------------------------------------
    def put_state(self, state: np.ndarray, effort: np.ndarray, capture_time_s: float) -> None:
        """Joint state (16) + wrench (12) of both arms, read together by the driver at ``capture_time_s``."""
        state = np.asarray(state, dtype=np.float32).reshape(-1)
        effort = np.asarray(effort, dtype=np.float32).reshape(-1)
        if state.shape != (contract.STATE_DIM,) or effort.shape != (contract.EFFORT_DIM,):
            raise ValueError(f"state must have {contract.STATE_DIM} values and effort {contract.EFFORT_DIM}, "
                             f"got {state.shape} and {effort.shape}")
        self._assembler.put(STATE_STREAM, (state, effort), capture_time_s)

    def put_image(self, camera: str, image: np.ndarray, capture_time_s: float) -> None:
        want = (self.cfg.image_height, self.cfg.image_width, 3)
        if camera not in contract.CAMERA_NAMES:
            raise ValueError(f"unknown camera {camera!r}; expected one of {contract.CAMERA_NAMES}")
        if image.shape != want or image.dtype != np.uint8:
            raise ValueError(f"camera {camera}: expected uint8 {want}, got {image.dtype} {image.shape} "
                             "(resize in the camera node)")
        self._assembler.put(camera, image, capture_time_s)

    # ---- episode control -------------------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self._recording

    @property
    def num_episodes(self) -> int:
        return self._ds.meta.total_episodes

    def start_episode(self, task: str | None = None) -> None:
        with self._lock:
            if self._recording:
                raise RuntimeError("an episode is already being recorded; stop_and_save() or discard() it first")
            task = self.cfg.task if task is None else task
            if not task:
                raise ValueError("an episode needs a task string (RecorderConfig.task or start_episode(task))")
            self._task = task
            self._t0 = None
            self._frames = self._dropped = self._waiting_ticks = 0
            self._stats = EpisodeSyncStats(STREAMS, self.cfg.required_streams, self.cfg.max_stale_share)
            self._recording = True

    def tick(self, action: np.ndarray, now_s: float | None = None) -> str:
        """One 20 Hz control tick: returns "idle", "waiting", "recorded", "stale" or "dropped". Never blocks."""
        now_s = time.monotonic() if now_s is None else now_s
        if not self._recording:
            return "idle"
        res = self._assembler.assemble(now_s)
        if res.missing:
            # Before every stream has delivered once there is no frame to record; the episode starts later.
            self._waiting_ticks += 1
            return "waiting"
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (contract.ACTION_DIM,):
            raise ValueError(f"action must have {contract.ACTION_DIM} values, got {action.shape}")
        if self._t0 is None:
            self._t0 = now_s
        self._stats.add(res)
        state, effort = res.values[STATE_STREAM]
        capture = np.array([res.capture_times_s[s] - self._t0 for s in STREAMS], dtype=np.float32)
        frame = {contract.STATE_KEY: state, contract.ACTION_KEY: action, contract.EFFORT_KEY: effort,
                 contract.CAPTURE_TIME_KEY: capture, "task": self._task}
        for cam, key in zip(contract.CAMERA_NAMES, contract.IMAGE_KEYS):
            frame[key] = res.values[cam]
        try:
            self._queue.put_nowait(frame)
        except queue.Full:
            self._dropped += 1
            return "dropped"
        self._frames += 1
        return "stale" if res.stale else "recorded"

    def _episode_record(self) -> dict:
        summary = self._stats.summary()
        return {"source": "recorder", "frames": self._frames, "dropped_frames": self._dropped,
                "waiting_ticks": self._waiting_ticks, "max_age_ms": self.cfg.max_age_ms,
                "task": self._task, **summary, "flagged": summary["flagged"] or self._dropped > 0}

    def stop_and_save(self) -> EpisodeReport:
        """End the episode and save it (or drop it if flagged and ``flagged_policy == 'drop'``).

        Blocks until the episode is durable on disk (video encoding finished, parquet closed, commit done).
        """
        with self._lock:
            if not self._recording:
                raise RuntimeError("no episode is being recorded")
            self._recording = False
            rec = self._episode_record()
        if self._frames == 0:
            self._submit("discard")
            return EpisodeReport(False, None, 0, self._dropped, rec["flagged"], "no frames recorded", rec)
        if rec["flagged"] and self.cfg.flagged_policy == "drop":
            self._submit("discard")
            why = (f"flagged ({rec['stale_ticks']}/{rec['ticks']} stale ticks, {self._dropped} dropped frames) "
                   "and flagged_policy is 'drop'")
            return EpisodeReport(False, None, self._frames, self._dropped, True, why, rec)
        index = self._submit("save", rec)  # the writer adds drops inside LeRobot's encoder to rec, if any
        return EpisodeReport(True, index, self._frames, rec["dropped_frames"], rec["flagged"], "saved", rec)

    def discard(self) -> None:
        """Throw the current episode away (operator pressed 'discard')."""
        with self._lock:
            self._recording = False
        self._submit("discard")

    def rerecord(self, task: str | None = None) -> None:
        """Discard the current episode and start it again."""
        self.discard()
        self.start_episode(task if task is not None else self._task)

    def close(self) -> None:
        """Discard an unfinished episode and release the writer. Saved episodes are already durable."""
        if self._thread.is_alive():
            with self._lock:
                self._recording = False
            self._submit("close")
            self._thread.join(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
