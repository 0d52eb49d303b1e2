"""Deterministic synthetic streams for the data tests (imported by tests and by the crash-test child process).

Images are small (24x32) so LeRobot's real encoder runs in milliseconds; the code paths are the ones used at
960x540 (benchmarks/recorder_throughput.py covers the real size).
"""

from __future__ import annotations

import numpy as np

from ate_policy import contract

H, W = 24, 32
TASK = "put the bun in the steamer"


def state_at(t_s: float) -> np.ndarray:
    """A smooth 16-dim joint/gripper trajectory inside the joint limits, known at any time."""
    k = np.arange(contract.STATE_DIM)
    q = 0.5 * np.sin(0.7 * t_s + 0.3 * k)
    for arm in contract.ARMS:
        q[contract.arm_slice(arm).stop - 1] = 0.5 + 0.5 * np.sin(0.5 * t_s)  # gripper fraction 0..1
    return q.astype(np.float32)


def effort_at(t_s: float) -> np.ndarray:
    return (np.cos(t_s + np.arange(contract.EFFORT_DIM))).astype(np.float32)


def image_at(k: int, cam: int) -> np.ndarray:
    """Flat image whose brightness encodes the frame number, so a decoded video can be matched to its tick."""
    return np.full((H, W, 3), (40 + 9 * k + 30 * cam) % 200, dtype=np.uint8)


def feed_tick(rec, t_s: float, k: int, cams=contract.CAMERA_NAMES, cam_lag_s: float = 0.010,
              state_lag_s: float = 0.002) -> str:
    """Deliver one sample per stream (cameras lagging by cam_lag_s) and tick the recorder at t_s."""
    rec.put_state(state_at(t_s - state_lag_s), effort_at(t_s), t_s - state_lag_s)
    for ci, cam in enumerate(contract.CAMERA_NAMES):
        if cam in cams:
            rec.put_image(cam, image_at(k, ci), t_s - cam_lag_s)
    return rec.tick(state_at(t_s + 0.05), t_s)
