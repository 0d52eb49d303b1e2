"""The one interface between the runtime and a policy: ``select_chunk(obs) -> (L, 16)`` absolute targets.

The runtime (queue, merging, freshness, timing) never imports a model class (after openpi): anything
callable with an :class:`~ate_policy.runtime.observation.Observation` that returns an (L, 16) array of
absolute joint/gripper targets in the contract's order will do: the LeRobot checkpoint wrapper of
``policy.py``, a scripted fake in tests, a remote client. For LeRobot's real-time chunking the callable also
takes ``rtc=`` and says so with ``supports_rtc = True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ate_policy.runtime.observation import Observation


@dataclass(frozen=True)
class RTCRequest:
    """What real-time chunking needs to make the new chunk continue the current plan."""

    # Targets the plan still holds for ticks k0, k0 + 1, ... (k0 = the observation's tick), absolute units,
    # contract order; None when there is no plan (the first chunk of an episode: no guidance).
    leftover: np.ndarray | None
    # Ticks that will pass before the new chunk is used (its first `inference_delay_ticks` actions are
    # overtaken).
    inference_delay_ticks: int
    # How many leftover actions guide the new chunk.
    execution_horizon_ticks: int


@runtime_checkable
class ChunkPolicy(Protocol):
    def __call__(self, obs: Observation, rtc: RTCRequest | None = None) -> np.ndarray:
        """(L, 16) absolute joint/gripper targets for the observation's tick and the L - 1 ticks after it."""
