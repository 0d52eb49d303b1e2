"""A known-good policy: the recorded actions of a demonstration episode, as the runtime's ``select_chunk``.

``ate_policy eval --task pick_bun --replay DATASET`` runs it through the very runtime, delays, chunk merging and
safety layer a learned policy goes through. On the seed the episode was recorded with (the sim demonstrations
write their seed into ``meta/ate_episodes.jsonl``) the scripted demonstration succeeded, so the replay must
succeed too, with no safety refusal: a failure is an integration bug (action/observation alignment, delay, units,
time base), not a learning problem. ``--blind`` replays, on every evaluation seed, a demonstration recorded with
ANOTHER seed: the baseline of a policy that ignores its cameras (the objects move only a few cm between seeds,
so such a policy can score; a learned policy must beat it).

The action is selected by the observation's capture time, never by counting calls: the chunk for an observation
taken ``tau`` seconds after the episode began holds the recorded actions of frames ``round(tau * fps)``, ...
(action 0 is the target for the observation's own tick, as in the recorded data, ``plan.py``). Past the
recording's end the last action is held. The episode's time origin comes from :meth:`ReplayPolicy.begin_episode`
(the evaluation calls it with the simulated time of the episode's first tick and the episode's seed), so a
runtime that drops, repeats or delays chunks gets the action that belongs to the moment of its observation.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_description.errors import UserError
from ate_policy.runtime.observation import Observation

SIDECAR = Path("meta") / "ate_episodes.jsonl"


@dataclass(frozen=True)
class RecordedEpisode:
    episode_index: int
    seed: int | None          # the sim seed the episode was recorded with (None: not a sim demonstration)
    actions: np.ndarray       # (T, 16) absolute targets, contract order, one per 20 Hz frame

    @property
    def duration_s(self) -> float:
        return len(self.actions) / contract.FPS


def load_recorded_episodes(root: str | Path) -> list[RecordedEpisode]:
    """Every episode's actions of a LeRobot v3.0 dataset (parquet only, no video), with the seeds of the
    sidecar where it has them, ordered by episode index."""
    import pyarrow.parquet as pq

    root = Path(root)
    files = sorted(glob.glob(str(root / "data" / "*" / "*.parquet")))
    if not (root / "meta" / "info.json").is_file() or not files:
        raise UserError(f"{root} is not a LeRobot dataset (no meta/info.json or data/*/*.parquet)")
    seeds: dict[int, int | None] = {}
    if (root / SIDECAR).is_file():
        for line in (root / SIDECAR).read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                seeds[int(rec["episode_index"])] = rec.get("seed")
    by_ep: dict[int, list[tuple[int, np.ndarray]]] = {}
    for f in files:
        t = pq.read_table(f, columns=[contract.ACTION_KEY, "episode_index", "frame_index"]).to_pydict()
        for a, e, i in zip(t[contract.ACTION_KEY], t["episode_index"], t["frame_index"], strict=True):
            by_ep.setdefault(int(e), []).append((int(i), np.asarray(a, np.float64)))
    out = []
    for e in sorted(by_ep):
        rows = sorted(by_ep[e], key=lambda r: r[0])
        actions = np.stack([a for _, a in rows])
        if actions.shape[1] != contract.ACTION_DIM:
            raise UserError(f"{root}: actions are {actions.shape[1]}-dim, the data contract's are "
                            f"{contract.ACTION_DIM}")
        s = seeds.get(e)
        out.append(RecordedEpisode(e, None if s is None else int(s), actions))
    return out


class ReplayPolicy:
    """``select_chunk(obs) -> (L, 16)``: the recorded actions from the observation's moment on.

    ``mode="matched"``: each episode replays the demonstration recorded with the episode's seed;
    ``mode="blind"``: a demonstration recorded with another seed (the camera-blind baseline);
    ``mode="fixed"``: always ``episodes[0]``."""

    supports_rtc = False
    image_hw = None
    policy_type = "replay"

    def __init__(self, episodes: list[RecordedEpisode], chunk_len: int = 50, mode: str = "matched",
                 source: str = ""):
        if not episodes:
            raise UserError("a replay policy needs at least one recorded episode")
        if mode not in ("matched", "blind", "fixed"):
            raise ValueError(f"replay mode must be matched, blind or fixed, got {mode!r}")
        if chunk_len < 1:
            raise ValueError("chunk_len must be >= 1")
        self.episodes, self.chunk_len, self.mode, self.source = list(episodes), int(chunk_len), mode, source
        self._current = self.episodes[0]
        self._t0: float | None = None
        self.selected: list[dict] = []   # per begun episode: eval seed -> replayed episode (for the report)

    @classmethod
    def from_dataset(cls, root: str | Path, mode: str = "matched", episode: int | None = None,
                     chunk_len: int = 50) -> "ReplayPolicy":
        eps = load_recorded_episodes(root)
        if episode is not None:
            eps = [e for e in eps if e.episode_index == episode]
            if not eps:
                raise UserError(f"{root} has no episode {episode}")
            mode = "fixed"
        if mode != "fixed" and any(e.seed is None for e in eps):
            raise UserError(f"{root}: {SIDECAR} records no seed for some episodes (not sim demonstrations?): "
                            "give --replay-episode N to replay one episode on every seed")
        return cls(eps, chunk_len, mode, str(root))

    @property
    def info(self) -> dict:
        return {"policy_type": "replay", "mode": self.mode, "dataset": self.source, "device": "cpu",
                "dtype": "-", "recorded_seeds": [e.seed for e in self.episodes], "replayed": self.selected}

    def episode_for_seed(self, seed: int) -> RecordedEpisode:
        if self.mode == "fixed":
            return self.episodes[0]
        if self.mode == "matched":
            for e in self.episodes:
                if e.seed == seed:
                    return e
            raise UserError(f"no demonstration recorded with seed {seed} in {self.source or 'the dataset'} "
                            f"(recorded seeds: {sorted(e.seed for e in self.episodes)}); replay evaluates on "
                            "the demonstrations' own seeds (or use --blind)")
        others = [e for e in self.episodes if e.seed != seed]
        if not others:
            raise UserError(f"blind replay of seed {seed} needs a demonstration recorded with another seed")
        return others[seed % len(others)]

    def begin_episode(self, t0_s: float, seed: int) -> None:
        """The episode's first tick is at ``t0_s`` (the observations' clock) and its objects come from
        ``seed``."""
        self._current = self.episode_for_seed(seed)
        self._t0 = float(t0_s)
        self.selected.append({"seed": int(seed), "episode_index": self._current.episode_index,
                              "recorded_seed": self._current.seed})

    def frame_at(self, stamp_s: float) -> int:
        """Index of the recorded frame of the moment ``stamp_s`` (same clock as ``begin_episode``)."""
        if self._t0 is None:
            return 0   # warm-up before any episode: the first chunk, never used for a command
        return int(round((stamp_s - self._t0) * contract.FPS))

    def __call__(self, obs: Observation, rtc=None) -> np.ndarray:
        stamp = obs.stamps_s.get("state")
        if stamp is None:
            raise ValueError("the replay policy selects actions by the observation's state capture time; "
                             "the observation has none")
        acts = self._current.actions
        idx = np.clip(np.arange(self.frame_at(stamp), self.frame_at(stamp) + self.chunk_len), 0, len(acts) - 1)
        return acts[idx].copy()
