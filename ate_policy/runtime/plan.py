"""The action plan: which target goes out at which tick, and how a new chunk is merged into it.

Everything is indexed by the episode's tick number k (tick k happens at ``t0 + k / rate``). A chunk computed
from the observation of tick k0 holds the targets for ticks k0, k0 + 1, ..., k0 + L - 1 (action 0 is the
target for the observation's own tick, as in the recorded data). When it becomes available at tick k > k0, its
first k - k0 actions have been overtaken by time and are skipped; the rest is merged with what the plan still
holds:

* ``latest``: the new chunk replaces the plan;
* ``blend``: over the overlap with the old plan the new chunk's weight rises from near 0 to 1 (linear or
  exponential cross-fade, over ``fade_ticks`` or the whole overlap), then the new chunk alone;
* ``rtc``: like latest; LeRobot's real-time chunking already made the new chunk agree with the old plan over
  the inference delay when it was generated.

Pure numpy; no locking (the runtime holds its lock around every call).
"""

from __future__ import annotations

import numpy as np

from ate_policy.runtime.configuration_runtime import BlendConfig


def fade_weights(n: int, shape: str = "linear", exp_rate: float = 3.0) -> np.ndarray:
    """Weights of the new chunk over an ``n``-tick cross-fade: increasing, in (0, 1], the last one exactly
    1."""
    if n < 1:
        return np.zeros(0)
    x = np.arange(1, n + 1, dtype=float) / n
    if shape == "linear":
        return x
    if shape == "exp":
        return np.expm1(-exp_rate * x) / np.expm1(-exp_rate)
    raise ValueError(f"unknown fade shape {shape!r}")


class ActionPlan:
    """Targets for consecutive ticks ``start .. end - 1``, each with the tick of the observation it came
    from."""

    def __init__(self, dim: int):
        self.dim = dim
        self.clear()

    def clear(self) -> None:
        self.start = 0
        self.actions = np.zeros((0, self.dim))
        self.source = np.zeros(0, dtype=np.int64)

    @property
    def end(self) -> int:
        return self.start + len(self.actions)

    def __len__(self) -> int:
        return len(self.actions)

    def drop_before(self, k: int) -> int:
        """Forget the targets of ticks before ``k``; returns how many were dropped."""
        n = min(max(k - self.start, 0), len(self.actions))
        if n:
            self.actions, self.source = self.actions[n:], self.source[n:]
        self.start = max(self.start, k) if len(self.actions) else k
        return n

    def remaining_after(self, k: int) -> int:
        """Planned targets for ticks after ``k``."""
        return max(0, self.end - max(k + 1, self.start))

    def pop(self, k: int) -> tuple[np.ndarray | None, int | None, int]:
        """(target of tick k or None, the tick of its observation, targets of earlier ticks dropped
        unused)."""
        dropped = self.drop_before(k)
        if len(self.actions) and self.start == k:
            a, src = self.actions[0].copy(), int(self.source[0])
            self.drop_before(k + 1)
            return a, src, dropped
        return None, None, dropped

    def window(self, k0: int, n: int) -> np.ndarray | None:
        """The planned targets for ticks ``k0 .. k0 + n - 1`` that exist, contiguous from k0; None if k0 is
        not."""
        if not len(self.actions) or not self.start <= k0 < self.end:
            return None
        i = k0 - self.start
        return self.actions[i:i + n].copy()

    def merge(self, k0: int, chunk: np.ndarray, now_k: int, blending: BlendConfig) -> int:
        """Merge the chunk of tick ``k0`` arriving at tick ``now_k``; returns how many actions were
        overtaken."""
        chunk = np.asarray(chunk, dtype=float)
        first = max(now_k, k0)
        overtaken = min(first - k0, len(chunk))
        new = chunk[overtaken:]
        self.drop_before(first)
        if not len(new):
            return overtaken
        src = np.full(len(new), k0, dtype=np.int64)
        if blending.strategy == "blend" and len(self.actions):
            lo, hi = max(self.start, first), min(self.end, first + len(new))
            n = hi - lo
            if n > 0:
                fade = n if blending.fade_ticks is None else min(blending.fade_ticks, n)
                w = np.concatenate([fade_weights(fade, blending.shape, blending.exp_rate), np.ones(n - fade)])
                old = self.actions[lo - self.start:hi - self.start]
                i = lo - first
                new = new.copy()
                new[i:i + n] = (1.0 - w)[:, None] * old + w[:, None] * new[i:i + n]
        # Beyond the new chunk's end the old plan is dropped too: returning to it after a full cross-fade to
        # the new chunk would be a jump back to an older prediction.
        self.start, self.actions, self.source = first, new, src
        return overtaken
