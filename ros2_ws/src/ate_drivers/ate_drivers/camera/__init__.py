"""Camera backends: RealSense (by serial) and UVC through LeRobot's camera classes, and video playback."""
