"""Camera backends that can run here: playback (test pattern and a recorded video) and LeRobot's classes failing
cleanly with no camera attached. Real RealSense capture and pyrealsense2 .bag playback need hardware."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ate_drivers.camera.cameras import LeRobotCamera, PlaybackCamera
from ate_drivers.camera.configuration_cameras import CameraConfig
from ate_drivers.interfaces import CameraBackend


def _wait_frame(cam, timeout=3.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            return cam.read_latest(500)
        except TimeoutError:
            time.sleep(0.01)
    raise AssertionError("no frame")


def test_pattern_playback_gives_fresh_rgb_frames_with_capture_times():
    cam = PlaybackCamera(CameraConfig(width=64, height=48, fps=30), "cam_high")
    assert isinstance(cam, CameraBackend)
    cam.open()
    try:
        f1 = _wait_frame(cam)
        time.sleep(0.1)
        f2 = cam.read_latest(500)
        assert f1.image.shape == (48, 64, 3) and f1.image.dtype == np.uint8
        assert f2.index > f1.index and f2.capture_time_s > f1.capture_time_s
        assert not np.array_equal(f1.image, f2.image)
    finally:
        cam.close()


def test_recorded_video_plays_resized_then_reads_as_unplugged(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = str(tmp_path / "clip.avi")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (128, 96))
    for i in range(6):
        img = np.zeros((96, 128, 3), np.uint8)
        img[:, :, 2] = 200  # red in BGR
        w.write(img)
    w.release()
    cam = PlaybackCamera(CameraConfig(width=64, height=48, fps=60, playback_file=path), "cam_left_wrist")
    cam.open()
    try:
        f = _wait_frame(cam)
        assert f.image.shape == (48, 64, 3) and f.image[..., 0].mean() > 150  # RGB: red first
        time.sleep(0.5)
        with pytest.raises(ConnectionError, match="playback ended"):
            cam.read_latest(500)
    finally:
        cam.close()


@pytest.mark.parametrize("kind, where", [
    ("uvc", "/dev/v4l/by-id/no-such-L515"),
    pytest.param("realsense", "000000000000", marks=pytest.mark.slow),  # librealsense searches ~15 s
])
def test_missing_camera_is_a_connection_error_naming_the_fallback(kind, where):
    cam = LeRobotCamera(CameraConfig(kind=kind, serial_or_path=where), "cam_high")
    with pytest.raises(ConnectionError, match="robot:=sim"):
        cam.open()
