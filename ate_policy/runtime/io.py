"""Between the cell's streams and the runtime (pure Python): per-stream samples -> ``Observation``, and a 16-dim
action -> per-arm targets. The policy node and ``ate_policy eval`` both use it, so the contract's layout
(``ate_description.contract``: ``[left_j1..7, left_gripper, right_j1..7, right_gripper]``) is assembled in one place.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ate_description import contract
from ate_policy.runtime.observation import Observation

Stamped = tuple  # (value, capture time in seconds)


def observation_from_streams(joints: Mapping[str, Stamped], grippers: Mapping[str, Stamped],
                             images: Mapping[str, Stamped], task: str | None = None) -> Observation:
    """``joints[arm] = ((7,) rad, t)``, ``grippers[arm] = (opening, t)``, ``images[cam] = ((H, W, 3) uint8, t)``.

    A missing arm or gripper leaves NaN in the state (the runtime's check then holds with ``bad_observation``);
    the state's capture time is the oldest of its parts: it is only as fresh as its stalest part."""
    state = np.full(contract.STATE_DIM, np.nan, dtype=np.float32)
    stamps: dict[str, float] = {}
    parts = []
    for arm in contract.ARMS:
        sl = contract.arm_slice(arm)
        if arm in joints:
            q, t = joints[arm]
            state[sl.start:sl.start + contract.N_ARM_JOINTS] = np.asarray(q, dtype=np.float32)
            parts.append(t)
        if arm in grippers:
            g, t = grippers[arm]
            state[sl.stop - 1] = float(g)
            parts.append(t)
    if len(parts) == 2 * len(contract.ARMS):
        stamps["state"] = float(min(parts))
    imgs = {}
    for cam in contract.CAMERA_NAMES:
        if cam in images:
            imgs[cam], t = images[cam]
            stamps[cam] = float(t)
    return Observation(state, imgs, stamps, task)


def targets_from_action(action) -> dict[str, tuple[np.ndarray, float]]:
    """``{arm: ((7,) joint targets rad, gripper opening)}`` of a 16-dim action.

    The gripper opening is clipped into [0, 1]: a regression head lands a little outside the range near the
    ends, and the safety layer would refuse such a command outright (a gripper that stops answering at fully
    open is worse than one that opens fully). Joint targets are passed on untouched: the drivers judge them."""
    a = np.asarray(action, dtype=float).reshape(-1)
    if a.shape != (contract.ACTION_DIM,):
        raise ValueError(f"expected a {contract.ACTION_DIM}-dim action, got shape {a.shape}")
    out = {}
    for arm in contract.ARMS:
        sl = contract.arm_slice(arm)
        out[arm] = (a[sl.start:sl.start + contract.N_ARM_JOINTS].copy(), float(np.clip(a[sl.stop - 1], 0.0, 1.0)))
    return out
