"""Camera backends (``CameraBackend``): LeRobot's ``RealSenseCamera`` / ``OpenCVCamera`` for the real cameras, and a
paced playback of a recorded video (or a test pattern) for ``robot:=emulated``.

The real cameras use LeRobot 0.6.1's classes (background read thread, ``read_latest(max_age_ms)``); this module only
converts their frames and capture times to ``Frame`` (capture time on ``time.monotonic``) and resizes to the
published resolution (the D405 has no 960x540 mode: it captures 1280x720). Playback is our own small loop because
LeRobot's ``OpenCVCamera`` reads a video file as fast as it decodes, not at the recorded rate.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ate_drivers.camera.configuration_cameras import CameraConfig
from ate_drivers.interfaces import Frame
from ate_drivers.registry import register_camera


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if img.shape[1] == width and img.shape[0] == height:
        return img
    import cv2
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


class LeRobotCamera:
    """A RealSense (by serial) or UVC (device path) camera through LeRobot's camera classes."""

    def __init__(self, config: CameraConfig, name: str = "camera"):
        self.config, self.name = config, name
        self._cam = None
        self._index = 0

    def open(self) -> None:
        c = self.config
        if c.kind == "realsense":
            from lerobot.cameras.realsense import RealSenseCamera, RealSenseCameraConfig
            cam = RealSenseCamera(RealSenseCameraConfig(serial_number_or_name=c.serial_or_path, fps=c.fps,
                                                        width=c.capture_width, height=c.capture_height))
        elif c.kind == "uvc":
            from lerobot.cameras.opencv import OpenCVCamera, OpenCVCameraConfig
            cam = OpenCVCamera(OpenCVCameraConfig(index_or_path=c.serial_or_path, fps=c.fps,
                                                  width=c.capture_width, height=c.capture_height))
        else:
            raise ValueError(f"camera {self.name}: kind must be 'realsense' or 'uvc', got {c.kind!r}")
        try:
            cam.connect()
        except Exception as e:
            raise ConnectionError(f"camera {self.name} ({c.kind} {c.serial_or_path!r}) cannot be opened: {e} "
                                  "(or run with robot:=sim / robot:=emulated)") from e
        self._cam = cam

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.disconnect()
            finally:
                self._cam = None

    def read_latest(self, max_age_ms: float | None = None) -> Frame:
        if self._cam is None:
            raise ConnectionError(f"camera {self.name} not open")
        img = self._cam.read_latest(max_age_ms=int(max_age_ms or self.config.max_age_ms))
        with self._cam.frame_lock:
            ts = self._cam.latest_timestamp
        capture = time.monotonic() - (time.perf_counter() - ts)
        self._index += 1
        return Frame(_resize(img, self.config.width, self.config.height), capture, self._index)


class PlaybackCamera:
    """Frames of a video file (or a moving test pattern) at the recorded rate; when the file ends the camera
    behaves as an unplugged one: ``read_latest`` raises ``ConnectionError``."""

    def __init__(self, config: CameraConfig, name: str = "camera", n_pattern_frames: int | None = None):
        self.config, self.name = config, name
        self.n_pattern_frames = n_pattern_frames
        self._latest: Frame | None = None
        self._ended = False
        self._running = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        self._cap = None
        if self.config.playback_file:
            import cv2
            self._cap = cv2.VideoCapture(self.config.playback_file)
            if not self._cap.isOpened():
                raise ConnectionError(f"camera {self.name}: cannot open playback file {self.config.playback_file}")
        self._running = True
        self._thread = threading.Thread(target=self._loop, name=f"playback-{self.name}", daemon=True)
        self._thread.start()

    def _next_image(self, i: int) -> np.ndarray | None:
        c = self.config
        if self._cap is not None:
            ok, bgr = self._cap.read()
            return None if not ok else _resize(bgr[:, :, ::-1].copy(), c.width, c.height)
        if self.n_pattern_frames is not None and i >= self.n_pattern_frames:
            return None
        img = np.zeros((c.height, c.width, 3), np.uint8)
        x = (i * 8) % c.width
        img[:, x:x + 8] = (255, 255, 255)   # a bar that moves: consecutive frames differ
        return img

    def _loop(self) -> None:
        period = 1.0 / max(self.config.fps, 1)
        i = 0
        t_next = time.monotonic()
        while self._running:
            img = self._next_image(i)
            if img is None:
                self._ended = True
                return
            with self._lock:
                self._latest = Frame(img, time.monotonic(), i)
            i += 1
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))

    def close(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._cap is not None:
            self._cap.release()

    def read_latest(self, max_age_ms: float | None = None) -> Frame:
        if self._ended:
            raise ConnectionError(f"camera {self.name}: playback ended (camera gone)")
        with self._lock:
            f = self._latest
        age_ms = float("inf") if f is None else (time.monotonic() - f.capture_time_s) * 1e3
        if age_ms > (max_age_ms or self.config.max_age_ms):
            raise TimeoutError(f"camera {self.name}: no frame newer than {max_age_ms or self.config.max_age_ms} ms")
        return f


@register_camera("lerobot")
def make_lerobot_camera(name: str = "camera", config: CameraConfig | None = None, **_) -> LeRobotCamera:
    return LeRobotCamera(config or CameraConfig(), name)


@register_camera("playback")
def make_playback_camera(name: str = "camera", config: CameraConfig | None = None, **_) -> PlaybackCamera:
    return PlaybackCamera(config or CameraConfig(), name)
