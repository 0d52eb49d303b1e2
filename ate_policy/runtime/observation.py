"""What the runtime is given each tick: the newest joint/gripper state and camera frames, with capture times.

Pure numpy. The contract (``ate_description.contract``, docs/architecture.md (data contract)) fixes the layout: ``state`` is the
16-vector ``[left_j1..7, left_gripper, right_j1..7, right_gripper]`` (radians, opening fraction), ``images``
the three cameras by their contract names as (H, W, 3) uint8 RGB, and ``stamps_s`` the capture time of every
stream (``contract.CAPTURE_STREAMS``: ``state`` and each camera) on the same clock as the ``now_s`` given to
``PolicyRuntime.tick``. Where the state comes from several messages (two joint states, two gripper states),
its stamp is the *oldest* of them: the state is only as fresh as its stalest part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ate_description import contract


@dataclass
class Observation:
    state: np.ndarray                                   # (16,) contract order
    images: dict[str, np.ndarray]                       # camera name -> (H, W, 3) uint8 RGB
    stamps_s: dict[str, float] = field(default_factory=dict)  # stream -> capture time (clock of now_s)
    task: str | None = None                             # None = the runtime's instruction

    @classmethod
    def dummy(cls, image_hw: tuple[int, int] = (224, 224), stamp_s: float = 0.0, task: str | None = None,
              state: np.ndarray | None = None) -> "Observation":
        """A mid-grey observation of the contract's shape (warm-up, benchmarks)."""
        h, w = int(image_hw[0]), int(image_hw[1])
        img = np.full((h, w, 3), 128, np.uint8)
        st = np.zeros(contract.STATE_DIM, np.float32) if state is None else np.asarray(state, np.float32)
        return cls(st, {c: img.copy() for c in contract.CAMERA_NAMES},
                   {s: stamp_s for s in contract.CAPTURE_STREAMS}, task)


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str = "ok"   # "stale:<stream>", "missing:<stream>", "future:<stream>", "bad_observation:<what>"
    detail: str = ""


def check_observation(obs: Observation, now_s: float, max_age_s: float,
                      streams: tuple[str, ...] = contract.CAPTURE_STREAMS) -> Check:
    """Is ``obs`` complete, well formed and fresh at ``now_s``? The first problem found, else ok."""
    state = np.asarray(obs.state)
    if state.shape != (contract.STATE_DIM,):
        return Check(False, "bad_observation:state", f"state shape {state.shape}, expected "
                                                     f"({contract.STATE_DIM},)")
    if not np.all(np.isfinite(state)):
        return Check(False, "bad_observation:state", "state holds NaN/inf")
    for cam in contract.CAMERA_NAMES:
        if cam not in streams:
            continue
        img = obs.images.get(cam)
        if img is None:
            return Check(False, f"missing:{cam}", "no frame yet")
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            return Check(False, f"bad_observation:{cam}",
                         f"image {img.shape} {img.dtype}, expected (H, W, 3) uint8 RGB")
    # Age: the tick's time minus the capture time. A capture time in the future beyond the limit means the two
    # clocks disagree, which is no more trustworthy than an old frame.
    for s in streams:
        t = obs.stamps_s.get(s)
        if t is None or not math.isfinite(t):
            return Check(False, f"missing:{s}", "no capture time")
        age = now_s - t
        if age > max_age_s:
            return Check(False, f"stale:{s}", f"age {age * 1e3:.0f} ms > {max_age_s * 1e3:.0f} ms")
        if age < -max_age_s:
            return Check(False, f"future:{s}", f"stamped {-age * 1e3:.0f} ms after now: clocks disagree")
    return Check(True)
