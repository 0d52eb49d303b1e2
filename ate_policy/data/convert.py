"""``ate_policy convert BAG... --output DATASET``: rosbag2 bags (MCAP or sqlite3) -> LeRobot v3.0 dataset.

Bags are read with the pure-Python ``rosbags`` library, so no ROS install is needed. A mapping config
(``ate_policy/configs/convert_*.yaml``, dataclass ``ConvertConfig``) names the topics of each feature of the data
contract, the episode boundaries (one bag per episode, a std_msgs/Bool topic, or time ranges), the task string,
the rate and the freshness limit. Frames are assembled by the same rule as the live recorder
(``ate_policy.recording.sync``): each 20 Hz tick takes the newest sample of every stream captured at or before it;
older than ``max_age_ms`` is stale (used, counted, real capture time stored). Sync statistics of every episode
go to ``meta/ate_episodes.jsonl`` for ``ate_policy inspect``.

Timing: ``time_source: header`` uses the publisher's capture stamps (what the recorder uses); ``receive`` uses
the bag's log times. Either way the offset between the two is measured per topic and a median offset beyond
``max_skew_ms`` stops the conversion: it means two machines' clocks disagree, which would silently shift one
stream against another.

``convert_bags(bags, output, config)`` is the entry point ``ate_policy train`` uses; it is cached on the bags'
content + config (``meta/ate_conversion.json``): a second call with the same input returns at once.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import shutil
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ate_description import contract
from ate_policy.config import load_yaml, to_dict
from ate_description.errors import UserError
from ate_policy.data.bagio import BagSource
from ate_policy.recording import durable
from ate_policy.recording.sync import age_summary, align
from ate_policy.recording.writer import EpisodeWriter, WriterConfig

log = logging.getLogger(__name__)

CONVERTER_VERSION = 2  # part of the cache key: bump when the output of the same input changes
CONVERSION_RECORD = Path("meta") / "ate_conversion.json"


def _per_arm(fmt: str) -> dict[str, str]:
    return {arm: fmt.format(arm=arm) for arm in contract.ARMS}


@dataclass
class TopicsConfig:
    """Topic of each feature (docs/architecture.md (bring-up graph) names by default). Empty dict = feature not in the bags."""

    joint_states: dict[str, str] = field(default_factory=lambda: _per_arm("/{arm}/joint_states"))
    gripper_states: dict[str, str] = field(default_factory=lambda: _per_arm("/{arm}/gripper/state"))
    joint_commands: dict[str, str] = field(default_factory=lambda: _per_arm("/{arm}/joint_command"))
    gripper_commands: dict[str, str] = field(default_factory=lambda: _per_arm("/{arm}/gripper/command"))
    wrench: dict[str, str] = field(default_factory=lambda: _per_arm("/{arm}/wrench"))
    # sensor_msgs/Image or sensor_msgs/CompressedImage; the type is read from the bag
    cameras: dict[str, str] = field(
        default_factory=lambda: {c: f"/cameras/{c}/image_raw" for c in contract.CAMERA_NAMES})


@dataclass
class EpisodesConfig:
    mode: str = "bag"                    # bag: one episode per bag | topic: Bool topic | ranges: time ranges
    topic: str = "/recording"            # mode topic: std_msgs/Bool, true starts an episode, false ends it
    # mode ranges: [start_s, end_s] pairs, seconds from each bag's first message
    ranges: list[list[float]] = field(default_factory=list)


@dataclass
class ConvertConfig:
    repo_id: str = "local/ate_dual_bags"
    task: str = ""                       # language instruction of every episode (required)
    fps: int = contract.FPS
    # The tick grid starts at the first sample of this stream once every stream has delivered, so the
    # reference stream's samples fall on ticks. "state" or a camera name.
    reference: str = "state"
    max_age_ms: float = 1000.0 / contract.FPS   # freshness limit: one period
    required_streams: list[str] = field(default_factory=lambda: list(contract.CAPTURE_STREAMS))
    max_stale_share: float = 0.05        # past this share of stale ticks an episode is flagged
    flagged_policy: str = "keep"         # keep | drop
    time_source: str = "header"          # header (capture stamps) | receive (bag log time)
    # Median |receive - header| per topic above this means unsynchronised clocks: stop (see module doc).
    max_skew_ms: float = 200.0
    action_source: str = "command"       # command: command topics | next_state: the next tick's state
    image_height: int = contract.CAMERA_RESOLUTION[0]
    image_width: int = contract.CAMERA_RESOLUTION[1]
    # The recorder's choice (ate_policy.recording.writer): NVENC where it really encodes, else x264 ultrafast;
    # LeRobot's libsvtav1 reaches only ~1.2x real time for three 960x540 cameras on a small CPU.
    vcodec: str = "auto"
    encoder_preset: str | int | None = None
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    # Joint names in the bag where they differ from ours: {our name: the bag's name}, e.g.
    # {left_joint1: arm_l_j1, left_gripper: gripper_l}. Joints are always selected by name from any
    # JointState, so one message may hold an arm and its gripper, or both arms (map several features to it).
    joint_names: dict[str, str] = field(default_factory=dict)
    episodes: EpisodesConfig = field(default_factory=EpisodesConfig)

    def validate(self) -> None:
        checks = [
            (bool(self.task), "task must be set (the language instruction of the episodes)"),
            (self.fps > 0 and self.max_age_ms > 0, "fps and max_age_ms must be positive"),
            (self.reference in contract.CAPTURE_STREAMS, f"reference must be one of {contract.CAPTURE_STREAMS}"),
            (set(self.required_streams) <= set(contract.CAPTURE_STREAMS),
             f"required_streams must be among {contract.CAPTURE_STREAMS}"),
            (self.flagged_policy in ("keep", "drop"), "flagged_policy must be keep or drop"),
            (self.time_source in ("header", "receive"), "time_source must be header or receive"),
            (self.action_source in ("command", "next_state"), "action_source must be command or next_state"),
            (self.episodes.mode in ("bag", "topic", "ranges"), "episodes.mode must be bag, topic or ranges"),
            (self.episodes.mode != "ranges" or bool(self.episodes.ranges), "episodes.mode ranges needs ranges"),
            (set(self.topics.cameras) == set(contract.CAMERA_NAMES),
             f"topics.cameras must name exactly {contract.CAMERA_NAMES}"),
            (set(self.topics.joint_states) == set(contract.ARMS) and set(self.topics.gripper_states) ==
             set(contract.ARMS), "topics.joint_states and topics.gripper_states need both arms"),
        ]
        if self.action_source == "command":
            checks.append((set(self.topics.joint_commands) == set(contract.ARMS) and
                           set(self.topics.gripper_commands) == set(contract.ARMS),
                           "action_source command needs joint_commands and gripper_commands of both arms"))
        unknown = set(self.joint_names) - set(contract.STATE_NAMES)
        checks.append((not unknown, f"joint_names keys must be our joint names {contract.STATE_NAMES}, "
                                    f"got {sorted(unknown)}"))
        for r in self.episodes.ranges:
            checks.append((len(r) == 2 and r[1] > r[0], f"episode range {r} must be [start_s, end_s]"))
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise UserError("bad convert config: " + "; ".join(bad))


def load_config(config: ConvertConfig | str | Path | dict | None) -> ConvertConfig:
    if isinstance(config, ConvertConfig):
        return config
    if isinstance(config, dict):
        return load_yaml(ConvertConfig, None, config)
    return load_yaml(ConvertConfig, config or "convert_default")


# ---- reading ----------------------------------------------------------------------------------------------------
# Message type each feature kind accepts.
MSGTYPES = {
    "joint_states": ("sensor_msgs/msg/JointState",), "gripper_states": ("sensor_msgs/msg/JointState",),
    "joint_commands": ("sensor_msgs/msg/JointState",), "gripper_commands": ("sensor_msgs/msg/JointState",),
    "wrench": ("geometry_msgs/msg/WrenchStamped",),
    "cameras": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    "episode_marker": ("std_msgs/msg/Bool",),
}


@dataclass
class Series:
    """One feature: sample times (s, chosen time source, sorted), values, and both clocks for the skew check."""

    topic: str
    msgtype: str
    times: np.ndarray
    values: list
    offsets_s: np.ndarray  # receive - header per message


def _stamp(msg) -> float | None:
    h = getattr(msg, "header", None)
    if h is None:
        return None
    return h.stamp.sec + h.stamp.nanosec * 1e-9


def _cdr_header_stamp(raw: bytes) -> float | None:
    """Header stamp of a CDR message that starts with std_msgs/Header (Image, CompressedImage), read from its
    first bytes: the first pass over a bag needs only the stamps of camera messages, and deserialising a
    1.5 MB image to read 8 bytes was most of that pass."""
    if len(raw) < 12 or raw[1] not in (0, 1):
        return None
    sec, nsec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return sec + nsec * 1e-9


def _open_reader(bag: Path, skip_corrupt: bool = False) -> BagSource:
    return BagSource(bag, skip_corrupt=skip_corrupt)


class JointPicker:
    """Selects named joints from JointState messages (the index is cached per name list: one lookup per topic)."""

    def __init__(self, names: list[str], feature: str):
        self.names, self.feature = names, feature
        self._cache: dict[tuple, np.ndarray] = {}

    def __call__(self, msg, topic: str) -> np.ndarray:
        pos = np.asarray(msg.position, dtype=np.float64)
        got = tuple(msg.name)
        if not got:
            if len(pos) == len(self.names):  # an unnamed message of exactly this feature's joints
                return pos
            raise UserError(f"{topic}: {self.feature} needs joints {self.names}, but the message names no "
                            f"joints and has {len(pos)} positions")
        idx = self._cache.get(got)
        if idx is None:
            if len(pos) != len(got):
                raise UserError(f"{topic}: JointState with {len(got)} names but {len(pos)} positions")
            missing = [n for n in self.names if n not in got]
            if missing:
                raise UserError(f"{topic}: {self.feature} needs joints {missing}, the message has {list(got)}. "
                                "Map other joint names with joint_names in the convert config "
                                "({our_name: bag_name})")
            idx = self._cache[got] = np.array([got.index(n) for n in self.names])
        if len(pos) != len(got):
            raise UserError(f"{topic}: JointState with {len(got)} names but {len(pos)} positions")
        return pos[idx]


def _wrench(msg) -> np.ndarray:
    f, t = msg.wrench.force, msg.wrench.torque
    return np.array([f.x, f.y, f.z, t.x, t.y, t.z])


def _decode_image(msg, msgtype: str, hw: tuple[int, int], topic: str) -> np.ndarray:
    from PIL import Image as PILImage

    if msgtype.endswith("CompressedImage"):
        try:
            img = np.asarray(PILImage.open(io.BytesIO(bytes(msg.data))).convert("RGB"))
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{topic}: cannot decode compressed image ({msg.format}): {e}") from e
    else:
        enc = msg.encoding.lower()
        ch = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(enc)
        if ch is None:
            raise UserError(f"{topic}: image encoding {msg.encoding!r} not supported (rgb8, bgr8, rgba8, bgra8, mono8)")
        data = np.asarray(msg.data, dtype=np.uint8)
        if msg.height <= 0 or msg.width <= 0 or msg.step < msg.width * ch or data.size != msg.height * msg.step:
            raise UserError(f"{topic}: image of {msg.height}x{msg.width} {msg.encoding} (step {msg.step}) carries "
                            f"{data.size} bytes: the message is malformed")
        rows = data.reshape(msg.height, msg.step)
        img = rows[:, : msg.width * ch].reshape(msg.height, msg.width, ch)
        if enc.startswith("bgr"):
            img = img[..., [2, 1, 0]]
        elif ch == 4:
            img = img[..., :3]
        elif ch == 1:
            img = np.repeat(img, 3, axis=2)
    if img.shape[:2] != hw:
        img = np.asarray(PILImage.fromarray(np.ascontiguousarray(img)).resize((hw[1], hw[0]), PILImage.BILINEAR))
    return np.ascontiguousarray(img, dtype=np.uint8)


def feature_map(cfg: ConvertConfig) -> dict[str, tuple[str, str | None, str]]:
    """Feature id ("joint_states:left", "cameras:cam_high", ...) -> (kind, arm/camera, topic). Several features
    may share one topic."""
    t = cfg.topics
    kinds = [("joint_states", t.joint_states), ("gripper_states", t.gripper_states), ("wrench", t.wrench),
             ("cameras", t.cameras)]
    if cfg.action_source == "command":
        kinds += [("joint_commands", t.joint_commands), ("gripper_commands", t.gripper_commands)]
    out = {f"{kind}:{key}": (kind, key, topic) for kind, mapping in kinds for key, topic in mapping.items()}
    if cfg.episodes.mode == "topic":
        out["episode_marker"] = ("episode_marker", None, cfg.episodes.topic)
    return out


def _fid(kind: str, key: str) -> str:
    return f"{kind}:{key}"


class BagData:
    """Everything but the images of one bag, read in one pass; images are read again, lazily, per episode."""

    def __init__(self, bag: Path, cfg: ConvertConfig, skip_corrupt: bool = False):
        self.bag, self.cfg, self.skip_corrupt = bag, cfg, skip_corrupt
        self.features = feature_map(cfg)
        self.series: dict[str, Series] = {}              # feature id -> series
        self.image_ordinals: dict[str, np.ndarray] = {}  # camera feature: topic ordinal of each sorted sample
        self.start_s = 0.0
        self.integrity: dict = {}
        self._read()

    def _extractors(self, present: set[str]) -> dict[str, list[tuple[str, Any]]]:
        """topic -> [(feature id, value function)] for every mapped feature whose topic is in the bag."""
        jn = self.cfg.joint_names
        out: dict[str, list] = {}
        for fid, (kind, key, topic) in self.features.items():
            if topic not in present:
                continue
            if kind in ("joint_states", "joint_commands"):
                fn = JointPicker([jn.get(n, n) for n in contract.arm_joint_names(key)], fid)
            elif kind in ("gripper_states", "gripper_commands"):
                fn = JointPicker([jn.get(f"{key}_gripper", f"{key}_gripper")], fid)
            elif kind == "wrench":
                fn = lambda msg, tp: _wrench(msg)  # noqa: E731
            elif kind == "cameras":
                fn = None  # images are decoded later, only those a tick uses
            else:
                fn = lambda msg, tp: bool(msg.data)  # noqa: E731
            out.setdefault(topic, []).append((fid, fn))
        return out

    def _read(self) -> None:
        with _open_reader(self.bag, self.skip_corrupt) as reader:
            conns = {c.topic: c for c in reader.connections}
            optional = set(self.cfg.topics.wrench.values())
            missing = sorted({tp for _, _, tp in self.features.values() if tp not in conns and tp not in optional})
            if missing:
                raise UserError(f"bag {self.bag}: topics {missing} not found; it has {sorted(conns)}. "
                                "Set the topic names in the convert config (topics.*)")
            for fid, (kind, _, topic) in self.features.items():
                if topic in conns and conns[topic].msgtype not in MSGTYPES[kind]:
                    raise UserError(f"bag {self.bag}: topic {topic} carries {conns[topic].msgtype}, but {fid} needs "
                                    f"{' or '.join(MSGTYPES[kind])}")
            self.start_s = reader.start_s
            extract = self._extractors(set(conns))
            use = [conns[tp] for tp in extract]
            raw: dict[str, list] = {fid: [] for fns in extract.values() for fid, _ in fns}
            counts = {c.topic: 0 for c in use}
            self.msgtypes = {c.topic: c.msgtype for c in use}
            for conn, t_ns, data in reader.messages(use):
                tp = conn.topic
                try:
                    fns = extract[tp]
                    if all(fn is None for _, fn in fns) and (header := _cdr_header_stamp(data)) is not None:
                        msg = None  # camera: only the stamp now, the image later if a tick uses it
                    else:
                        msg = reader.deserialize(data, conn.msgtype)
                        header = _stamp(msg)
                    for fid, fn in fns:
                        value = counts[tp] if fn is None else fn(msg, tp)
                        raw[fid].append((t_ns * 1e-9, header, value))
                except UserError as e:
                    raise UserError(f"bag {self.bag}: {e}") from e
                except Exception as e:  # noqa: BLE001  (a message that does not deserialise is damaged)
                    raise UserError(f"bag {self.bag}: message {counts[tp]} on {tp} cannot be read "
                                    f"({type(e).__name__}: {e}): the bag is damaged") from e
                counts[tp] += 1
            integ = reader.integrity
            lost = integ.lost_messages
            short = {c.topic: (counts[c.topic], c.msgcount) for c in use
                     if counts[c.topic] + lost.get(c.topic, 0) < c.msgcount}
            if short:
                raise UserError(f"bag {self.bag} is truncated: metadata lists more messages than can be read "
                                f"(topic: read/listed {short})")
            self.integrity = integ.to_dict()
        for fid, rows in raw.items():
            self.series[fid] = self._series(fid, rows)

    def _series(self, fid: str, rows: list) -> Series:
        kind, _, topic = self.features[fid]
        recv = np.array([r[0] for r in rows])
        header = np.array([np.nan if r[1] is None else r[1] for r in rows])
        if self.cfg.time_source == "header" and kind != "episode_marker":
            if np.isnan(header).any():
                raise UserError(f"{topic} ({self.msgtypes[topic]}) has no header: use time_source: receive")
            if len(header) and np.all(header == 0):
                raise UserError(f"{topic}: header stamps are all zero (publisher does not stamp): "
                                "use time_source: receive")
            if not np.all(np.isfinite(header)):
                raise UserError(f"bag {self.bag}: {topic} has non-finite header stamps")
            times = header
        else:
            times = recv
        order = np.argsort(times, kind="stable")
        values = [rows[i][2] for i in order]
        if kind == "cameras":
            self.image_ordinals[fid] = np.asarray(values, dtype=np.int64)
        return Series(topic, self.msgtypes[topic], times[order], values, (recv - header)[order])

    def skew_report(self) -> dict[str, float]:
        """Median receive - header offset per topic, in ms (NaN for topics without headers)."""
        out = {}
        for s in self.series.values():
            if s.topic in out:
                continue
            off = s.offsets_s[np.isfinite(s.offsets_s)]
            out[s.topic] = float(np.median(off) * 1e3) if off.size else float("nan")
        return out

    def check_skew(self) -> dict[str, float]:
        rep = self.skew_report()
        bad = {t: round(v, 1) for t, v in rep.items() if np.isfinite(v) and abs(v) > self.cfg.max_skew_ms}
        # With receive times every stream is timed by the recording machine's one clock: the offsets are then
        # only reported (they are transport latency plus the publisher's clock error).
        if bad and self.cfg.time_source == "header":
            raise UserError(
                f"bag {self.bag}: receive time and header stamp differ by more than max_skew_ms="
                f"{self.cfg.max_skew_ms:g} ms on {bad} (median, ms). The publishing machine's clock is probably "
                "not synchronised (chrony/PTP). Fix the clocks, or convert with time_source: receive, or raise "
                "max_skew_ms if the latency is real")
        return rep

    def episode_spans(self) -> list[tuple[float, float]]:
        ep = self.cfg.episodes
        timed = [s for s in self.series.values() if len(s.times)]
        if not timed:
            raise UserError(f"bag {self.bag} holds no message on the mapped topics")
        first = min(s.times[0] for s in timed)
        last = max(s.times[-1] for s in timed)
        if ep.mode == "bag":
            return [(first, last)]
        if ep.mode == "ranges":
            t0 = self.start_s if self.cfg.time_source == "receive" else first
            return [(t0 + a, t0 + b) for a, b in ep.ranges]
        marker = self.series["episode_marker"]
        spans, open_at = [], None
        for t, v in zip(marker.times, marker.values):
            if v and open_at is None:
                open_at = t
            elif not v and open_at is not None:
                spans.append((open_at, t))
                open_at = None
        if open_at is not None:
            spans.append((open_at, last))  # recording still on when the bag ended
        return spans


# ---- assembling ---------------------------------------------------------------------------------------------
@dataclass
class EpisodePlan:
    """Tick grid of one episode and, per feature (``feature_map`` id), which sample each tick uses."""

    bag: Path
    span: tuple[float, float]
    ticks: np.ndarray
    index: dict[str, np.ndarray]
    stale: dict[str, np.ndarray]


def _stream_features(cfg: ConvertConfig) -> dict[str, list[str]]:
    """Capture stream -> the features it is made of ("state" = joint + gripper states of both arms)."""
    out = {"state": [_fid("joint_states", a) for a in contract.ARMS] + [_fid("gripper_states", a)
                                                                         for a in contract.ARMS]}
    out.update({cam: [_fid("cameras", cam)] for cam in contract.CAMERA_NAMES})
    return out


def plan_episode(data: BagData, span: tuple[float, float]) -> EpisodePlan | None:
    cfg = data.cfg
    period = 1.0 / cfg.fps
    max_age = cfg.max_age_ms / 1000.0
    streams = _stream_features(cfg)
    fids = [f for fs in streams.values() for f in fs]
    if cfg.action_source == "command":
        fids += [_fid(k, a) for k in ("joint_commands", "gripper_commands") for a in contract.ARMS]
    fids += [_fid("wrench", a) for a in cfg.topics.wrench if _fid("wrench", a) in data.series]
    lo, hi = span
    # Start once every stream has delivered inside the span, on the reference stream's next sample.
    firsts = []
    for f in fids:
        s = data.series[f].times
        inside = s[(s >= lo) & (s <= hi)]
        if inside.size == 0:
            return None
        firsts.append(inside[0])
    start = max(firsts)
    ref = np.concatenate([data.series[f].times for f in streams[cfg.reference]])
    ref = np.sort(ref[(ref >= start - 1e-9) & (ref <= hi)])
    if ref.size == 0:
        return None
    t0 = ref[0]
    n = int(np.floor((hi - t0) / period + 1e-9)) + 1
    ticks = t0 + np.arange(n) * period
    index, stale = {}, {}
    for f in fids:
        index[f], stale[f] = align(ticks, data.series[f].times, max_age)
    return EpisodePlan(data.bag, span, ticks, index, stale)


def _episode_arrays(data: BagData, plan: EpisodePlan) -> dict[str, np.ndarray]:
    cfg = data.cfg
    n = len(plan.ticks)

    def pick(fid):
        vals = data.series[fid].values
        return np.stack([np.asarray(vals[i], dtype=np.float64).reshape(-1) for i in plan.index[fid]])

    state = np.zeros((n, contract.STATE_DIM))
    action = np.zeros((n, contract.ACTION_DIM))
    effort = np.zeros((n, contract.EFFORT_DIM))
    nj = contract.N_ARM_JOINTS
    for i, arm in enumerate(contract.ARMS):
        sl = contract.arm_slice(arm)
        state[:, sl.start:sl.start + nj] = pick(_fid("joint_states", arm))
        state[:, sl.start + nj] = pick(_fid("gripper_states", arm))[:, 0]
        if cfg.action_source == "command":
            action[:, sl.start:sl.start + nj] = pick(_fid("joint_commands", arm))
            action[:, sl.start + nj] = pick(_fid("gripper_commands", arm))[:, 0]
        if _fid("wrench", arm) in plan.index:
            effort[:, 6 * i:6 * i + 6] = pick(_fid("wrench", arm))
    if cfg.action_source == "next_state":
        action[:-1] = state[1:]
        action[-1] = state[-1]
    streams = _stream_features(cfg)
    t0 = plan.ticks[0]
    capture = np.zeros((n, len(contract.CAPTURE_STREAMS)))
    for j, name in enumerate(contract.CAPTURE_STREAMS):
        # A stream made of several features is as old as its oldest part.
        capture[:, j] = np.min([data.series[f].times[plan.index[f]] for f in streams[name]], axis=0) - t0
    bad = [k for k, v in (("state", state), ("action", action), ("effort", effort)) if not np.all(np.isfinite(v))]
    if bad:
        raise UserError(f"bag {data.bag}: non-finite values (NaN/inf) in {bad} between "
                        f"{plan.span[0]:.3f} and {plan.span[1]:.3f} s")
    return {"state": state, "action": action, "effort": effort, "capture": capture}


def _episode_record(data: BagData, plan: EpisodePlan, capture: np.ndarray) -> dict:
    cfg = data.cfg
    streams = _stream_features(cfg)
    nominal = plan.ticks - plan.ticks[0]
    per_stream, stale_any = {}, np.zeros(len(plan.ticks), dtype=bool)
    for j, name in enumerate(contract.CAPTURE_STREAMS):
        st = np.any([plan.stale[f] for f in streams[name]], axis=0)
        ages = nominal - capture[:, j]
        repeated = int(np.sum(np.diff(capture[:, j]) == 0))
        per_stream[name] = {**age_summary(ages), "stale_ticks": int(st.sum()), "repeated": repeated}
        if name in cfg.required_streams:
            stale_any |= st
    ticks = len(plan.ticks)
    share = float(stale_any.sum()) / ticks
    return {"source": "bag", "bag": str(plan.bag), "span_s": [float(plan.span[0]), float(plan.span[1])],
            "frames": ticks, "ticks": ticks, "dropped_frames": 0, "stale_ticks": int(stale_any.sum()),
            "stale_share": share, "flagged": share > cfg.max_stale_share, "max_age_ms": cfg.max_age_ms,
            "time_source": cfg.time_source, "task": cfg.task, "streams": per_stream}


def _iter_images(data: BagData, plan: EpisodePlan):
    """Yield {camera: image} per tick in tick order, decoding only the frames the ticks use (one bag pass)."""
    cfg = data.cfg
    hw = (cfg.image_height, cfg.image_width)
    cam_fids = {_fid("cameras", c): c for c in contract.CAMERA_NAMES}
    topic_of = {f: data.features[f][2] for f in cam_fids}
    need: dict[str, dict[int, list[int]]] = {f: {} for f in cam_fids}  # fid -> topic ordinal -> ticks
    for f in cam_fids:
        ordinals = data.image_ordinals[f][plan.index[f]]  # topic ordinal of the message each tick uses
        for k, o in enumerate(ordinals):
            need[f].setdefault(int(o), []).append(k)
    last_needed = {f: max(d) for f, d in need.items()}
    by_topic: dict[str, list[str]] = {}
    for f, tp in topic_of.items():
        by_topic.setdefault(tp, []).append(f)
    pending: dict[int, dict[str, np.ndarray]] = {}
    next_tick = 0
    with _open_reader(data.bag, data.skip_corrupt) as reader:
        conns = [c for c in reader.connections if c.topic in by_topic]
        counts = {tp: 0 for tp in by_topic}
        for conn, _t, raw in reader.messages(conns):
            tp = conn.topic
            o = counts[tp]
            counts[tp] += 1
            wanted = [f for f in by_topic[tp] if o in need[f]]
            if wanted:
                try:
                    img = _decode_image(reader.deserialize(raw, conn.msgtype), conn.msgtype, hw, tp)
                except UserError as e:
                    raise UserError(f"bag {data.bag}: {e}") from e
                except Exception as e:  # noqa: BLE001
                    raise UserError(f"bag {data.bag}: image {o} on {tp} cannot be read "
                                    f"({type(e).__name__}: {e}): the bag is damaged") from e
                for f in wanted:
                    for k in need[f][o]:
                        pending.setdefault(k, {})[cam_fids[f]] = img
            while next_tick in pending and len(pending[next_tick]) == len(cam_fids):
                yield pending.pop(next_tick)
                next_tick += 1
            if next_tick == len(plan.ticks) or all(counts[topic_of[f]] > last_needed[f] for f in cam_fids):
                break
    while next_tick in pending and len(pending[next_tick]) == len(cam_fids):
        yield pending.pop(next_tick)
        next_tick += 1
    if next_tick != len(plan.ticks):
        raise UserError(f"bag {data.bag}: image messages ended early (tick {next_tick} of {len(plan.ticks)})")


# ---- writing ------------------------------------------------------------------------------------------------
def cache_key(bags: list[Path], cfg: ConvertConfig, skip_corrupt: bool = False) -> str:
    """sha256 of every file of every bag (names + bytes) and of the config: same input, same dataset."""
    h = hashlib.sha256()
    h.update(f"ate-convert-v{CONVERTER_VERSION}".encode())
    h.update(json.dumps(to_dict(cfg), sort_keys=True, default=str).encode())
    h.update(f"skip_corrupt:{bool(skip_corrupt)}".encode())
    for bag in bags:
        files = sorted(p for p in Path(bag).rglob("*") if p.is_file()) if Path(bag).is_dir() else [Path(bag)]
        h.update(f"bag:{len(files)}".encode())
        for p in files:
            h.update(p.name.encode())
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def convert_bags(bags: list[Path], output: Path, config: ConvertConfig | str | Path | dict | None = None,
                 overwrite: bool = True, skip_corrupt: bool = False) -> Path:
    """Convert rosbag2 bags into a LeRobot v3.0 dataset at ``output`` and return its path.

    Cached: if ``output`` holds a conversion of the same bag contents with the same config, it is returned
    as is. A different earlier conversion at ``output`` is replaced when ``overwrite`` is true; any other
    existing folder is never touched. The dataset is written to ``<output>.partial`` and renamed at the end,
    so ``output`` is always either complete or absent. ``skip_corrupt``: MCAP chunks whose CRC fails are left
    out (their messages counted in ``meta/ate_conversion.json``) instead of stopping the conversion.
    """
    cfg = load_config(config)
    cfg.validate()
    bags = [Path(b) for b in bags]
    if not bags:
        raise UserError("no bags given")
    for b in bags:
        if not b.exists():
            raise UserError(f"bag {b} does not exist")
    output = Path(output)
    key = cache_key(bags, cfg, skip_corrupt)
    record_path = output / CONVERSION_RECORD
    if output.exists():
        if record_path.exists():
            old = json.loads(record_path.read_text())
            if old.get("cache_key") == key:
                log.info("conversion cached at %s", output)
                return output
            if not overwrite:
                raise UserError(f"{output} holds a conversion of other bags/config; pass --overwrite to replace it")
        elif any(output.iterdir()):
            raise UserError(f"{output} exists and is not a bag conversion; choose another --output")
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        summary = _write_dataset(bags, partial, cfg, skip_corrupt)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # never partial output
        raise
    summary.update({"cache_key": key, "bags": [str(b) for b in bags], "config": to_dict(cfg),
                    "skip_corrupt": skip_corrupt})
    (partial / CONVERSION_RECORD).write_text(json.dumps(summary, indent=1, default=str))
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)
    return output


def _frames(data: BagData, plan: EpisodePlan, arrays: dict, cfg: ConvertConfig):
    for k, images in enumerate(_iter_images(data, plan)):
        frame = {contract.STATE_KEY: arrays["state"][k].astype(np.float32),
                 contract.ACTION_KEY: arrays["action"][k].astype(np.float32),
                 contract.EFFORT_KEY: arrays["effort"][k].astype(np.float32),
                 contract.CAPTURE_TIME_KEY: arrays["capture"][k].astype(np.float32),
                 "task": cfg.task}
        for cam, key in zip(contract.CAMERA_NAMES, contract.IMAGE_KEYS):
            frame[key] = images[cam]
        yield frame


def _write_dataset(bags: list[Path], root: Path, cfg: ConvertConfig, skip_corrupt: bool = False) -> dict:
    # The project's one episode writer, offline: decoding the bag here and encoding in the writer's and
    # LeRobot's threads overlap; a slow encoder makes this loop wait (never a dropped frame), and every saved
    # episode's videos are verified against its rows (a mismatch raises: the conversion fails, no output).
    writer = EpisodeWriter(WriterConfig(
        root=str(root), repo_id=cfg.repo_id, fps=cfg.fps, robot_type=contract.ROBOT_TYPE,
        features=contract.features(image_shape=(cfg.image_height, cfg.image_width, 3)), vcodec=cfg.vcodec,
        encoder_preset=cfg.encoder_preset, durable=False, on_video_mismatch="raise"))
    saved, skipped, skews, integrity, warnings = 0, [], {}, {}, []
    try:
        for bag in bags:
            data = BagData(bag, cfg, skip_corrupt)
            skews[str(bag)] = data.check_skew()
            integrity[str(bag)] = data.integrity
            warnings += [f"{bag}: {w}" for w in data.integrity.get("warnings", [])]
            lost = data.integrity.get("lost_messages") or {}
            if lost:
                warnings.append(f"{bag}: {sum(lost.values())} messages in "
                                f"{len(data.integrity['corrupt_chunks'])} corrupt chunk(s) left out: {lost}")
            for span in data.episode_spans():
                plan = plan_episode(data, span)
                if plan is None or len(plan.ticks) < 2:
                    skipped.append({"bag": str(bag), "span_s": list(span), "reason": "a stream has no sample"})
                    continue
                arrays = _episode_arrays(data, plan)
                record = _episode_record(data, plan, arrays["capture"])
                if record["flagged"] and cfg.flagged_policy == "drop":
                    skipped.append({"bag": str(bag), "span_s": list(span), "reason": "flagged",
                                    "stale_share": record["stale_share"]})
                    continue
                for frame in _frames(data, plan, arrays, cfg):
                    writer.put_frame(frame, block=True)
                writer.save(record)
                saved += 1
    finally:
        writer.close()
    if saved == 0:
        raise UserError(f"no episode could be converted: {skipped}")
    for w in warnings:
        log.warning("%s", w)
    return {"episodes": saved, "skipped": skipped, "skew_ms": skews, "converter_version": CONVERTER_VERSION,
            "vcodec": writer.vcodec, "integrity": integrity, "warnings": warnings}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ate_policy convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bags", nargs="+", type=Path, help="rosbag2 folders (MCAP or sqlite3)")
    p.add_argument("--output", required=True, type=Path, help="dataset folder to write")
    p.add_argument("--config", default="convert_default",
                   help="mapping config: a YAML file or a shipped one (convert_default)")
    p.add_argument("--task", default=None, help="language instruction (overrides the config's task)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier conversion at --output")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="leave out MCAP chunks whose CRC fails (counted in meta/ate_conversion.json) instead of "
                        "stopping")
    args = p.parse_args(argv)
    overrides = {"task": args.task} if args.task else None
    cfg = load_yaml(ConvertConfig, args.config, overrides)
    out = convert_bags(args.bags, args.output, cfg, overwrite=args.overwrite, skip_corrupt=args.skip_corrupt)
    rec = json.loads((out / CONVERSION_RECORD).read_text())
    side = durable.read_sidecar(out)
    print(f"{out}: {rec['episodes']} episode(s), {sum(r['frames'] for r in side.values())} frames at {cfg.fps} Hz, "
          f"videos {rec.get('vcodec')} (every frame verified)")
    for i, r in sorted(side.items()):
        flag = "  FLAGGED" if r["flagged"] else ""
        print(f"  episode {i}: {r['frames']} frames from {Path(r['bag']).name}, stale ticks {r['stale_ticks']}"
              f" ({100 * r['stale_share']:.1f}%){flag}")
    for s in rec["skipped"]:
        print(f"  skipped {Path(s['bag']).name} {s['span_s']}: {s['reason']}")
    for w in rec.get("warnings", []):
        print(f"  warning: {w}")
    print("audit it with: ate_policy inspect", out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
