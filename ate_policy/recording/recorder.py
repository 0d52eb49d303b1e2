"""Episode recorder: asynchronous robot/camera streams -> crash-safe 20 Hz LeRobot v3.0 dataset.

Used by the teleop node (which only wires topics to it), the sim demonstrations and tests/benchmarks. Threads:

* **producers** (driver callbacks) call ``put_state`` / ``put_image``: they only store the newest sample;
* the **control loop** calls ``tick(action, now_s)`` at 20 Hz: it assembles a frame (``sync.FrameAssembler``:
  newest sample per stream, freshness limit, stale accounting) and hands it to the episode writer without ever
  blocking; when the writer's queue is full the frame is dropped and counted (and the episode flagged);
* the **episode writer** (``writer.EpisodeWriter``, the one writer of every dataset we produce) owns the
  ``LeRobotDataset`` on its own thread: back-pressure against LeRobot's video encoder, verified saves, the
  crash-safe commit of ``durable.py``.

**Time stays true.** A tick the loop missed (the timer fired late: a busy CPU) and a frame dropped on a full
queue would each shorten the episode by one period, so a policy trained on it would learn the motion too fast.
By default (``missed_tick_policy: repeat``) each becomes a *repeated frame*: the previous frame written again,
with its old capture times (so it is stale, not passed off as new), counted in ``missed_ticks`` /
``dropped_frames`` / ``repeated_frames``. The loop's achieved rate is reported live (``live_status()``, a warning
log line and ``add_rate_listener``) the moment it falls below the configured rate, before the episode is saved.

Every saved episode gets a line in ``meta/ate_episodes.jsonl`` (ticks, stale ticks per stream, sync error
percentiles, dropped / missed / repeated frames, video check, flag) that ``ate_policy inspect`` reads.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_description.errors import UserError
from ate_policy.recording.rate import RateMonitor
from ate_policy.recording.sync import EpisodeSyncStats, FrameAssembler, TickResult, is_stale
# re-exported: the codec choice is part of the recorder's API
from ate_policy.recording.writer import (  # noqa: F401
    HARDWARE_VCODECS, SOFTWARE_PRESET, SOFTWARE_VCODEC, EpisodeWriter, WriterConfig, resolve_encoder)

log = logging.getLogger(__name__)

STATE_STREAM = "state"
STREAMS = contract.CAPTURE_STREAMS  # ("state", cam_high, cam_left_wrist, cam_right_wrist)


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
    # Quality: None = LeRobot's (crf 30, yuv420p), right for the cameras' 960x540; sim demonstrations at a few
    # dozen pixels store near-lossless (ate_policy.data.sim_demos.LOSSLESS_VIDEO).
    encoder_crf: int | None = None
    encoder_pix_fmt: str | None = None
    encoder_threads: int | None = None         # per camera; None = the codec decides
    image_writer_threads: int = 4              # PNG staging threads when streaming_encoding is off
    # repeat: a tick the loop missed, or a frame dropped on a full queue, becomes a repeated frame so the
    # episode's duration equals the real time (see the module doc); skip: leave it out (time shrinks).
    missed_tick_policy: str = "repeat"
    # Offline producers (lockstep sim): tick() waits for the writer instead of dropping a frame.
    blocking: bool = False
    # Below this share of fps (over the last second) the loop's rate is reported as too low.
    min_rate_share: float = 0.95

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
        if self.missed_tick_policy not in ("repeat", "skip"):
            raise UserError(f"missed_tick_policy must be 'repeat' or 'skip', got {self.missed_tick_policy!r}")
        if not 0.0 < self.min_rate_share <= 1.0:
            raise UserError("min_rate_share must be within (0, 1]")

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


class EpisodeRecorder:
    """Record episodes into a LeRobot v3.0 dataset; see the module docstring for the threading model."""

    def __init__(self, cfg: RecorderConfig, resume: bool | None = None):
        cfg.validate()
        self.cfg = cfg
        self.root = Path(cfg.root)
        self.max_age_s = cfg.max_age_ms / 1000.0
        self.period_s = 1.0 / cfg.fps
        self._assembler = FrameAssembler(STREAMS, self.max_age_s)
        self._lock = threading.Lock()
        self._recording = False
        self._task = cfg.task
        self._t0: float | None = None
        self._last_tick_s: float | None = None
        self._prev: TickResult | None = None
        self._frames = 0
        self._dropped = 0
        self._missed = 0
        self._pending_repeats = 0
        self._waiting_ticks = 0
        self._stats: EpisodeSyncStats | None = None
        # The loop's achieved rate, live: add_rate_listener() for a warning line the moment it falls too low.
        self.rate = RateMonitor(cfg.fps, min_share=cfg.min_rate_share, name="recording loop")
        self.rate.add_listener(lambda line: log.warning("%s", line))
        exists = (self.root / "meta" / "info.json").exists()
        if resume is None:
            resume = exists
        if resume and not exists:
            raise UserError(f"cannot resume {self.root}: no LeRobot dataset there (meta/info.json missing)")
        if not resume and self.root.exists() and any(self.root.iterdir()):
            raise UserError(f"{self.root} exists and is not empty; resume it or choose another root")
        self._writer = EpisodeWriter(WriterConfig(
            root=str(self.root), repo_id=cfg.repo_id, fps=cfg.fps, features=cfg.features(), vcodec=cfg.vcodec,
            encoder_preset=cfg.encoder_preset, encoder_crf=cfg.encoder_crf, encoder_pix_fmt=cfg.encoder_pix_fmt,
            encoder_threads=cfg.encoder_threads, streaming_encoding=cfg.streaming_encoding,
            image_writer_threads=cfg.image_writer_threads,
            queue_size=cfg.queue_size, durable=True, on_video_mismatch="flag"), resume=resume)
        self.vcodec, self.encoder_preset = self._writer.vcodec, self._writer.encoder_preset
        self.recovery = self._writer.recovery

    # The writer's dataset and queue, for tests and benchmarks that reach inside.
    @property
    def _ds(self):
        return self._writer.dataset

    @property
    def _queue(self):
        return self._writer._queue

    def add_rate_listener(self, fn) -> None:
        """``fn(line)`` is called when the recording loop's achieved rate falls below the configured rate."""
        self.rate.add_listener(fn)

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
        return self._writer.num_episodes

    def start_episode(self, task: str | None = None) -> None:
        with self._lock:
            if self._recording:
                raise RuntimeError("an episode is already being recorded; stop_and_save() or discard() it first")
            task = self.cfg.task if task is None else task
            if not task:
                raise ValueError("an episode needs a task string (RecorderConfig.task or start_episode(task))")
            self._task = task
            self._t0 = self._last_tick_s = self._prev = None
            self._frames = self._dropped = self._missed = self._pending_repeats = self._waiting_ticks = 0
            self._stats = EpisodeSyncStats(STREAMS, self.cfg.required_streams, self.cfg.max_stale_share)
            self.rate.reset()
            self._recording = True

    def tick(self, action: np.ndarray, now_s: float | None = None) -> str:
        """One 20 Hz control tick: returns "idle", "waiting", "recorded", "stale" or "dropped".

        Never blocks (unless ``cfg.blocking``, for offline producers). A gap of more than one period since the
        previous tick counts the ticks in between as missed (and, by default, fills them with repeated frames).
        """
        now_s = time.monotonic() if now_s is None else now_s
        if not self._recording:
            return "idle"
        missed = self.rate.tick(now_s)
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
        elif missed and self._prev is not None:
            self._missed += missed
            if self.cfg.missed_tick_policy == "repeat":
                self._account_repeats(missed)
        self._last_tick_s = now_s
        self._stats.add(res)
        self._prev = res
        state, effort = res.values[STATE_STREAM]
        capture = np.array([res.capture_times_s[s] - self._t0 for s in STREAMS], dtype=np.float32)
        frame = {contract.STATE_KEY: state, contract.ACTION_KEY: action, contract.EFFORT_KEY: effort,
                 contract.CAPTURE_TIME_KEY: capture, "task": self._task}
        for cam, key in zip(contract.CAMERA_NAMES, contract.IMAGE_KEYS):
            frame[key] = res.values[cam]
        if not self._writer.put_frame(frame, self._pending_repeats, block=self.cfg.blocking):
            self._dropped += 1
            if self.cfg.missed_tick_policy == "repeat":
                self._pending_repeats += 1   # the next frame that gets through is preceded by a repeat
            return "dropped"
        self._frames += 1 + self._pending_repeats
        self._pending_repeats = 0
        return "stale" if res.stale else "recorded"

    def _account_repeats(self, n: int) -> None:
        """``n`` missed ticks become repeats of the previous frame: counted in the sync statistics as the stale
        ticks they are (the previous samples, aged by one more period each)."""
        prev = self._prev
        for j in range(1, n + 1):
            t = self._last_tick_s + j * self.period_s
            stale = {s for s, c in prev.capture_times_s.items() if is_stale(t, c, self.max_age_s)}
            self._stats.add(TickResult(t, prev.values, prev.capture_times_s, stale))
        self._pending_repeats += n

    def live_status(self) -> dict:
        """What the operator should see while recording: achieved loop rate (and warning), frames so far,
        missed ticks, drops and repeats."""
        return {**self.rate.status(), "recording": self._recording, "frames": self._frames + self._pending_repeats,
                "missed_ticks": self._missed, "dropped_frames": self._dropped,
                "repeated_frames": self._missed + self._dropped if self.cfg.missed_tick_policy == "repeat" else 0}

    def _episode_record(self) -> dict:
        summary = self._stats.summary()
        return {"source": "recorder", "frames": self._frames, "dropped_frames": self._dropped,
                "missed_ticks": self._missed, "missed_tick_policy": self.cfg.missed_tick_policy,
                "waiting_ticks": self._waiting_ticks, "max_age_ms": self.cfg.max_age_ms,
                "task": self._task, **summary, "flagged": summary["flagged"] or self._dropped > 0}

    def stop_and_save(self, extra: dict | None = None) -> EpisodeReport:
        """End the episode and save it (or drop it if flagged and ``flagged_policy == 'drop'``).

        Blocks until the episode is durable on disk (video encoding finished and verified, parquet closed,
        commit done). ``extra`` goes into the episode's sidecar record (e.g. the sim seed of a demonstration).
        """
        with self._lock:
            if not self._recording:
                raise RuntimeError("no episode is being recorded")
            self._recording = False
            rec = {**(extra or {}), **self._episode_record()}
        if self._frames == 0:
            self._writer.discard()
            return EpisodeReport(False, None, 0, self._dropped, rec["flagged"], "no frames recorded", rec)
        if rec["flagged"] and self.cfg.flagged_policy == "drop":
            self._writer.discard()
            why = (f"flagged ({rec['stale_ticks']}/{rec['ticks']} stale ticks, {self._dropped} dropped frames) "
                   "and flagged_policy is 'drop'")
            return EpisodeReport(False, None, self._frames, self._dropped, True, why, rec)
        # The writer adds trailing repeats, drops inside LeRobot's encoder and the video check to the record.
        rec = self._writer.save(rec, repeat_after=self._pending_repeats)
        self._pending_repeats = 0
        return EpisodeReport(True, rec["episode_index"], rec["frames"], rec["dropped_frames"], rec["flagged"],
                             "saved", rec)

    def discard(self) -> None:
        """Throw the current episode away (operator pressed 'discard')."""
        with self._lock:
            self._recording = False
        self._writer.discard()

    def rerecord(self, task: str | None = None) -> None:
        """Discard the current episode and start it again."""
        self.discard()
        self.start_episode(task if task is not None else self._task)

    def close(self) -> None:
        """Discard an unfinished episode and release the writer. Saved episodes are already durable."""
        with self._lock:
            self._recording = False
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
