"""Silence third-party progress bars and codec chatter so our own progress bars and summaries stay readable."""

import logging
import os


def quiet_libraries() -> None:
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 (LeRobot's video encoder): errors only
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass
    try:
        import av

        av.logging.set_level(av.logging.ERROR)
        # FFmpeg's own threshold too: LeRobot's encoders hand the log back to FFmpeg's printer after each video
        # (restore_default_callback), which otherwise prints libx264's statistics for every later one.
        av.logging.set_libav_level(av.logging.ERROR)
    except (ImportError, AttributeError):
        pass
    for name in ("lerobot", "datasets", "huggingface_hub", "fsspec"):
        logging.getLogger(name).setLevel(logging.WARNING)
