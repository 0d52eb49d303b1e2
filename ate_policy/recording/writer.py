"""The one episode writer behind every dataset we produce: the live recorder, the bag converter, the demo data.

Why one: LeRobot 0.6.1's streaming video encoder has a bounded queue per camera and, when one stays full for
0.1 s, drops the frame with only a log line, leaving an MP4 shorter than the episode's parquet rows (loading the
missing frame later raises ``IndexError``). Any writer that calls ``add_frame`` faster than the encoder keeps up
loses frames silently. Here, and only here:

* **encoding off the producer's thread, with back-pressure**: producers hand frames to a bounded queue; one
  writer thread owns the ``LeRobotDataset`` and waits for room in LeRobot's encoder queues before each
  ``add_frame``, so a slow encoder backs up into our queue. An *offline* producer (converter, demo data, lockstep
  sim) then blocks and never drops; the *live* recorder drops at its ``tick()`` and counts (``put_frame(...,
  block=False)`` returns False);
* **repeated frames keep time true**: a frame can carry ``repeat_before`` (and a save ``repeat_after``): the
  writer writes the previous frame again that many times first, so a tick that was missed or dropped still takes
  its 1/fps of the episode (its stored capture times stay those of the repeated sample: it is not passed off as
  new);
* **verified saves**: after ``save_episode`` every camera's video segment of the episode (its
  ``[from_timestamp, to_timestamp)`` span in the possibly multi-episode MP4) must hold exactly as many frames as
  the episode has rows, first and last frame decodable (``verify.check_segment``). A mismatch either flags the
  episode in the sidecar (the recorder: the operator saw the take, it should not vanish) or raises
  ``VideoMismatchError`` (offline writers, which can simply fail and leave no output);
* **codec choice** ``vcodec: auto`` (NVENC where it really encodes here, else x264 ``ultrafast``), for all;
* optional **durability** (the recorder): ``durable.py``'s per-episode finalize/resume and commit journal.

Every saved episode gets a line in ``meta/ate_episodes.jsonl`` (the producer's record plus frames, repeats,
encoder drops and the video check).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_description.errors import UserError
from ate_policy.recording import durable, verify

log = logging.getLogger(__name__)

# vcodec "auto": the first of these that really encodes a frame of the cameras' size on this machine ...
HARDWARE_VCODECS = ("h264_nvenc", "hevc_nvenc")
# ... else this software encoder and preset, chosen from the options that benchmarks/recorder_throughput.py
# measures side by side (docs/data.md, "Benchmark").
SOFTWARE_VCODEC, SOFTWARE_PRESET = "h264", "ultrafast"


class VideoMismatchError(UserError):
    """An episode's video holds a different number of frames than its rows (or does not decode)."""


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
    """(codec, preset) a writer will use; only "auto" is resolved, by trying the hardware encoders."""
    if vcodec != "auto":
        return vcodec, preset
    for cand in HARDWARE_VCODECS:
        if _can_encode(cand, width, height):
            return cand, preset
    return SOFTWARE_VCODEC, SOFTWARE_PRESET if preset is None else preset


@dataclass
class WriterConfig:
    root: str
    repo_id: str
    fps: int
    features: dict
    robot_type: str = contract.ROBOT_TYPE
    # Any codec LeRobot's writer accepts; "auto" = NVENC when it really encodes here, else SOFTWARE_VCODEC.
    # LeRobot's own "auto" only checks that FFmpeg was built with NVENC (the PyAV wheel always is) and then
    # fails at the first frame on a machine without an NVIDIA GPU.
    vcodec: str = "auto"
    encoder_preset: str | int | None = None
    encoder_crf: int | None = None        # None: LeRobot's default (30)
    encoder_pix_fmt: str | None = None    # None: LeRobot's default (yuv420p); a resumed dataset keeps its own
    encoder_threads: int | None = None
    streaming_encoding: bool = True
    image_writer_threads: int = 4
    # Frames between producer and writer thread. Live: beyond it the recorder drops (and counts) rather than
    # stall control. Offline: the producer waits.
    queue_size: int = 60
    # One set of files per episode + commit journal: a saved episode survives kill -9 (durable.py).
    durable: bool = False
    on_video_mismatch: str = "raise"     # raise (offline writers) | flag (the live recorder)
    verify_decode: bool = True           # decode each segment's first and last frame, not only count packets

    def video_keys(self) -> list[str]:
        return [k for k, ft in self.features.items() if ft.get("dtype") == "video"]


def check_features(existing: dict, wanted: dict, root: Path) -> None:
    problems = []
    for key, ft in wanted.items():
        have = existing.get(key)
        if have is None:
            problems.append(f"missing feature {key}")
        elif have["dtype"] != ft["dtype"] or tuple(have["shape"]) != tuple(ft["shape"]):
            problems.append(f"{key}: dataset has {have['dtype']} {tuple(have['shape'])}, "
                            f"writer writes {ft['dtype']} {tuple(ft['shape'])}")
        elif ft.get("names") and have.get("names") and list(have["names"]) != list(ft["names"]):
            problems.append(f"{key}: names differ")
    from lerobot.utils.constants import DEFAULT_FEATURES

    extra = set(existing) - set(wanted) - set(DEFAULT_FEATURES)
    if extra:
        problems.append(f"extra features {sorted(extra)}")
    if problems:
        raise UserError(f"cannot resume {root}: its features do not match the recorder's: " + "; ".join(problems))


class _Command:
    def __init__(self, kind: str, payload=None):
        self.kind = kind
        self.payload = payload
        self.future: concurrent.futures.Future = concurrent.futures.Future()


class EpisodeWriter:
    """Owns a ``LeRobotDataset`` on one thread; see the module docstring."""

    def __init__(self, cfg: WriterConfig, resume: bool = False):
        if cfg.on_video_mismatch not in ("raise", "flag"):
            raise UserError(f"on_video_mismatch must be raise or flag, got {cfg.on_video_mismatch!r}")
        if cfg.queue_size < 1:
            raise UserError("queue_size must be positive")
        self.cfg = cfg
        self.root = Path(cfg.root)
        self.vcodec, self.encoder_preset = cfg.vcodec, cfg.encoder_preset
        keys = cfg.video_keys()
        if keys:
            h, w = cfg.features[keys[0]]["shape"][:2]
            self.vcodec, self.encoder_preset = resolve_encoder(cfg.vcodec, cfg.encoder_preset, w, h)
            if self.vcodec != "libsvtav1" and (w % 2 or h % 2):
                # yuv420p halves the chroma planes: x264, x265 and NVENC refuse odd sizes at the first frame
                raise UserError(f"{self.vcodec} video needs even image sizes, got {h}x{w}: resize in the camera "
                                "node or set vcodec: libsvtav1")
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self._error: BaseException | None = None
        self._last_frame: dict | None = None
        self._episode_repeats = 0
        self.recovery: dict | None = None
        self._ds = self._open(resume)
        self._thread = threading.Thread(target=self._loop, name="episode-writer", daemon=True)
        self._thread.start()

    # ---- dataset handling (writer thread after __init__) -----------------------------------------------------
    def _kwargs(self) -> dict:
        from lerobot.configs import RGBEncoderConfig

        kw = dict(encoder_threads=self.cfg.encoder_threads, streaming_encoding=self.cfg.streaming_encoding)
        if self.cfg.video_keys():
            quality = {k: v for k, v in (("crf", self.cfg.encoder_crf), ("pix_fmt", self.cfg.encoder_pix_fmt))
                       if v is not None}
            kw["rgb_encoder"] = RGBEncoderConfig(vcodec=self.vcodec, preset=self.encoder_preset, **quality)
        if not self.cfg.streaming_encoding:
            kw["image_writer_threads"] = self.cfg.image_writer_threads
        return kw

    def _open(self, resume: bool):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        cfg = self.cfg
        if resume:
            if cfg.durable:
                self.recovery = durable.recover(self.root)
                if self.recovery["rolled_back"] or self.recovery["removed_staging"]:
                    log.warning("recovered %s after an interrupted recording: %s", self.root, self.recovery)
            ds = LeRobotDataset.resume(cfg.repo_id, root=self.root, **self._kwargs())
            if ds.meta.fps != cfg.fps:
                raise UserError(f"cannot resume {self.root}: dataset is {ds.meta.fps} Hz, recorder {cfg.fps} Hz")
            check_features(ds.meta.features, cfg.features, self.root)
            return ds
        return LeRobotDataset.create(repo_id=cfg.repo_id, fps=cfg.fps, root=self.root, features=cfg.features,
                                     robot_type=cfg.robot_type, use_videos=bool(cfg.video_keys()),
                                     **self._kwargs())

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, _Command):
                try:
                    item.future.set_result(self._run_command(item))
                except BaseException as e:  # noqa: BLE001  (handed to the caller through the future)
                    if not isinstance(e, UserError):
                        log.exception("episode writer: %s failed", item.kind)
                    item.future.set_exception(e)
                if item.kind == "close":
                    return
                continue
            if self._error is not None:
                continue  # the episode is already broken; its discard/save will report the error
            frame, repeat_before = item
            try:
                self._repeat(repeat_before)
                self._add(frame)
            except BaseException as e:  # noqa: BLE001
                log.exception("episode writer: add_frame failed")
                self._error = e

    def _add(self, frame: dict) -> None:
        self._wait_for_encoders()
        self._ds.add_frame(dict(frame))  # add_frame pops "task": keep ours intact for repeats
        self._last_frame = frame

    def _repeat(self, n: int) -> None:
        for _ in range(n):
            if self._last_frame is None:  # nothing to repeat before the episode's first frame
                return
            self._add(self._last_frame)
            self._episode_repeats += 1

    # LeRobot's streaming encoder has its own bounded queue per camera and, when one stays full for 0.1 s,
    # drops the frame with only a log line. This thread (the only producer of those queues) therefore waits for
    # room before each add_frame. Private attributes of LeRobot 0.6.1; if they move, the wait is skipped and the
    # count after the save (_encoder_drops) and the video check still catch any drop.
    def _encoder(self):
        return getattr(getattr(self._ds, "writer", None), "_streaming_encoder", None)

    def _wait_for_encoders(self) -> None:
        enc = self._encoder()
        queues = getattr(enc, "_frame_queues", None) or {}
        threads = getattr(enc, "_threads", None) or {}
        for key, q in list(queues.items()):
            thread = threads.get(key)
            # A dead encoder thread never makes room: add_frame then raises LeRobot's "crashed" error instead.
            while q.full() and (thread is None or thread.is_alive()):
                time.sleep(0.002)

    def _encoder_drops(self) -> int:
        return int(sum((getattr(self._encoder(), "_dropped_frames", None) or {}).values()))

    def _verify(self, record: dict) -> None:
        """Check every camera's segment of the episode just saved; flag or raise on a mismatch."""
        latest = self._ds.meta.latest_episode
        keys = self.cfg.video_keys()
        if not keys or latest is None:
            return
        rows = int(latest["length"][0])
        index = int(latest["episode_index"][0])
        checks = {}
        for key, (chunk, file, t0, t1) in verify.episode_segments(latest, keys).items():
            path = verify.video_path(self.root, self._ds.meta.video_path, key, chunk, file)
            checks[key] = verify.check_segment(path, t0, t1, self.cfg.fps, rows, decode=self.cfg.verify_decode)
        record["video_frames"] = {k.rsplit(".", 1)[-1]: c.frames for k, c in checks.items()}
        bad = {k.rsplit(".", 1)[-1]: "; ".join(c.problems) for k, c in checks.items() if not c.ok}
        if not bad:
            return
        what = ", ".join(f"{cam}: {p}" for cam, p in bad.items())
        if self.cfg.on_video_mismatch == "raise":
            raise VideoMismatchError(f"episode {index}: the saved video does not hold the episode ({what})")
        log.error("episode %d saved with a damaged video, flagged: %s", index, what)
        record["video_problems"] = bad
        record["flagged"] = True

    def _run_command(self, cmd: _Command):
        if cmd.kind == "discard":
            if self._ds.has_pending_frames():
                self._ds.clear_episode_buffer()
            self._error = None
            self._last_frame = None
            self._episode_repeats = 0
            return None
        if cmd.kind == "save":
            record, repeat_after = cmd.payload
            if self._error is not None:
                err, self._error = self._error, None
                self._ds.clear_episode_buffer()
                self._last_frame = None
                raise RuntimeError(f"episode could not be written and was discarded: {err}") from err
            self._repeat(repeat_after)
            record = dict(record)
            record["repeated_frames"] = record.get("repeated_frames", 0) + self._episode_repeats
            self._episode_repeats = 0
            self._last_frame = None
            if self.cfg.durable:
                durable.begin(self.root)
            self._ds.save_episode()
            record["frames"] = int(self._ds.meta.latest_episode["length"][0])
            lost = self._encoder_drops()
            if lost:  # frames missing from the videos (see _wait_for_encoders): counted and flagged
                log.error("LeRobot's video encoder dropped %d frame(s) of this episode", lost)
                record["encoder_dropped_frames"] = lost
                record["dropped_frames"] = record.get("dropped_frames", 0) + lost
                record["flagged"] = True
            self._verify(record)
            index = self._ds.meta.total_episodes - 1
            record["episode_index"] = index
            if self.cfg.durable:
                self._ds.finalize()      # closes the parquet footers: from here the episode is durable
                durable.append_sidecar(self.root, record)
                durable.end(self.root)
                # next episode goes to new files; nothing finished is reopened for writing
                from lerobot.datasets.lerobot_dataset import LeRobotDataset

                self._ds = LeRobotDataset.resume(self.cfg.repo_id, root=self.root, **self._kwargs())
            else:
                durable.append_sidecar(self.root, record)
            return record
        if cmd.kind == "close":
            if self._ds.has_pending_frames():
                self._ds.clear_episode_buffer()
            self._ds.finalize()
            return None
        raise ValueError(cmd.kind)

    def _submit(self, kind: str, payload=None):
        if not self._thread.is_alive():
            raise RuntimeError("episode writer thread is not running (writer closed?)")
        cmd = _Command(kind, payload)
        self._queue.put(cmd)  # control commands are never dropped: block until there is room
        return cmd.future.result()

    # ---- producer API ----------------------------------------------------------------------------------------
    def put_frame(self, frame: dict, repeat_before: int = 0, block: bool = True) -> bool:
        """Queue one frame (after ``repeat_before`` copies of the previous one).

        ``block=True`` (offline producers) waits for room and always returns True; ``block=False`` (the live
        recorder) returns False at once when the queue is full: the frame was not taken.
        """
        item = (frame, int(repeat_before))
        if not block:
            try:
                self._queue.put_nowait(item)
                return True
            except queue.Full:
                return False
        while True:
            if not self._thread.is_alive():
                raise RuntimeError("episode writer thread is not running (writer closed?)")
            try:
                self._queue.put(item, timeout=1.0)
                return True
            except queue.Full:
                continue

    def save(self, record: dict, repeat_after: int = 0) -> dict:
        """Save the episode (blocks until written, verified and, if durable, committed); returns its record."""
        return self._submit("save", (record, int(repeat_after)))

    def discard(self) -> None:
        self._submit("discard")

    @property
    def num_episodes(self) -> int:
        return self._ds.meta.total_episodes

    @property
    def dataset(self):
        return self._ds

    def close(self) -> None:
        """Discard an unfinished episode, finalize the dataset and stop the thread."""
        if self._thread.is_alive():
            self._submit("close")
            self._thread.join(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
