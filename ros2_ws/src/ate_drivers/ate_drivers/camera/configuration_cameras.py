"""Configuration of one camera of the cell."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CameraConfig:
    # "realsense" (pyrealsense2 by serial; the D405s) or "uvc" (OpenCV/V4L2 device path; the L515 on Python 3.12,
    # whose support librealsense dropped in 2.55.1).
    kind: str = "realsense"
    serial_or_path: str = ""
    # What the camera is asked for; D405 has no 960x540 mode, so it captures 1280x720 and is resized.
    capture_width: int = 1280
    capture_height: int = 720
    fps: int = 30
    # What the node publishes (the recorded resolution of the data contract).
    width: int = 960
    height: int = 540
    # Recorded video for robot:=emulated (the playback backend); empty = a generated test pattern.
    playback_file: str = ""
    # A frame older than this is not published (the camera stalled or was unplugged).
    max_age_ms: float = 200.0
