"""Deterministic synthetic streams for the data tests (imported by tests and by the crash-test child process).

Images are small (24x32) so LeRobot's real encoder runs in milliseconds; the code paths are the ones used at
960x540 (benchmarks/recorder_throughput.py covers the real size).
"""

from __future__ import annotations

import numpy as np

from ate_description import contract

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


# ---- rosbag2 bags written with the real `rosbags` writer and real message types -------------------------------
BAG_T0 = 1_700_000_000.0  # wall-clock seconds of a bag's first capture


def _ts():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _header(ts, t_s: float, frame: str = ""):
    T = ts.types
    sec = int(t_s)
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((t_s - sec) * 1e9))),
                                    frame_id=frame)


def _joint_state(ts, t_s, names, pos):
    return ts.types["sensor_msgs/msg/JointState"](header=_header(ts, t_s), name=list(names),
                                                 position=np.asarray(pos, dtype=np.float64),
                                                 velocity=np.zeros(0), effort=np.zeros(0))


def bag_image_at(k: int, cam: int) -> np.ndarray:
    """Camera frame k: the red level encodes the frame number (a decoded video can be matched to its frame);
    green and blue differ from red, so a swapped channel order (bgr8) would show."""
    v = (20 + 7 * k + 50 * cam) % 230
    img = np.empty((H, W, 3), dtype=np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = v, 128, 235 - v
    return img


def write_bag(path, storage: str = "mcap", seconds: float = 3.0, jitter_ms: float = 3.0,
              drop: tuple[str, float, float] | None = None, compressed: tuple[str, ...] = (),
              clock_offset_s: float = 0.0, markers: list[tuple[float, bool]] = (), seed: int = 0,
              cam_hz: float = 30.0, image_hw: tuple[int, int] = (H, W), layout: str = "split",
              rename: dict[str, str] | None = None) -> dict:
    """Write a dual-arm rosbag2 bag like the teleop launch records it.

    Streams (header stamp = capture time, log time = capture + transport latency):
    joint states 100 Hz, gripper states 50 Hz, wrench 100 Hz, commands 20 Hz, three cameras at cam_hz, all with
    uniform jitter of +-jitter_ms. ``drop=(camera, t_from, t_to)`` removes that camera's frames in the window
    (seconds from the start); ``compressed`` cameras are written as CompressedImage (PNG, lossless);
    ``clock_offset_s`` shifts every header stamp (a publisher with an unsynchronised clock); ``markers`` writes
    std_msgs/Bool on /recording. Returns the capture times per topic (seconds from BAG_T0) for assertions.

    ``layout``: ``split`` (one topic per arm and per gripper, as our drivers publish), ``gripper_in_arm`` (each
    arm's joint_states / joint_command carry its gripper as an 8th joint ``<arm>_gripper``; no gripper topics),
    ``combined`` (one ``/joint_states`` and one ``/joint_command`` with all 16 joints of both arms).
    ``rename`` maps our joint names to the names written into the messages (another lab's naming scheme).
    """
    import io

    from PIL import Image as PILImage
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = _ts()
    rng = np.random.default_rng(seed)
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    msgs = []  # (log_ns, topic, msgtype, msg)
    captures: dict[str, list[float]] = {}

    def stream(topic, msgtype, hz, make):
        n = int(seconds * hz)
        for k in range(n):
            t = k / hz + rng.uniform(-jitter_ms, jitter_ms) / 1e3 + jitter_ms / 1e3
            msg = make(k, t)
            if msg is None:
                continue
            captures.setdefault(topic, []).append(t)
            latency = rng.uniform(0.001, 0.004)
            msgs.append((int(round((BAG_T0 + t + latency) * 1e9)), topic, msgtype, msg))

    stamp = lambda t: BAG_T0 + t + clock_offset_s  # noqa: E731
    rn = (lambda names: [rename.get(n, n) for n in names]) if rename else list  # noqa: E731
    if layout == "combined":
        every = list(contract.STATE_NAMES)
        stream("/joint_states", "sensor_msgs/msg/JointState", 100,
               lambda k, t: _joint_state(ts, stamp(t), rn(every), state_at(t)))
        stream("/joint_command", "sensor_msgs/msg/JointState", 20,
               lambda k, t: _joint_state(ts, stamp(t), rn(every), state_at(t + 0.05)))
    for arm in contract.ARMS:
        sl = contract.arm_slice(arm)
        names = contract.arm_joint_names(arm)
        if layout == "gripper_in_arm":
            with_grip = names + [f"{arm}_gripper"]
            stream(f"/{arm}/joint_states", "sensor_msgs/msg/JointState", 100,
                   lambda k, t, sl=sl, n=with_grip: _joint_state(ts, stamp(t), rn(n), state_at(t)[sl]))
            stream(f"/{arm}/joint_command", "sensor_msgs/msg/JointState", 20,
                   lambda k, t, sl=sl, n=with_grip: _joint_state(ts, stamp(t), rn(n), state_at(t + 0.05)[sl]))
        elif layout == "split":
            stream(f"/{arm}/joint_states", "sensor_msgs/msg/JointState", 100,
                   lambda k, t, sl=sl, names=names: _joint_state(ts, stamp(t), rn(names), state_at(t)[sl][:7]))
            stream(f"/{arm}/gripper/state", "sensor_msgs/msg/JointState", 50,
                   lambda k, t, sl=sl, arm=arm: _joint_state(ts, stamp(t), rn([f"{arm}_gripper"]),
                                                              [state_at(t)[sl][7]]))
            stream(f"/{arm}/joint_command", "sensor_msgs/msg/JointState", 20,
                   lambda k, t, sl=sl, names=names: _joint_state(ts, stamp(t), rn(names),
                                                                  state_at(t + 0.05)[sl][:7]))
            stream(f"/{arm}/gripper/command", "sensor_msgs/msg/JointState", 20,
                   lambda k, t, sl=sl, arm=arm: _joint_state(ts, stamp(t), rn([f"{arm}_gripper"]),
                                                              [state_at(t + 0.05)[sl][7]]))

        def wrench(k, t, i=contract.ARMS.index(arm)):
            e = effort_at(t)[6 * i:6 * i + 6]
            T = ts.types
            v3 = T["geometry_msgs/msg/Vector3"]
            return T["geometry_msgs/msg/WrenchStamped"](
                header=_header(ts, stamp(t)),
                wrench=T["geometry_msgs/msg/Wrench"](force=v3(x=e[0], y=e[1], z=e[2]), torque=v3(x=e[3], y=e[4], z=e[5])))
        stream(f"/{arm}/wrench", "geometry_msgs/msg/WrenchStamped", 100, wrench)

    for ci, cam in enumerate(contract.CAMERA_NAMES):
        def image(k, t, ci=ci, cam=cam):
            if drop and drop[0] == cam and drop[1] <= t < drop[2]:
                return None
            img = bag_image_at(k, ci)
            if image_hw != (H, W):
                img = np.asarray(PILImage.fromarray(img).resize((image_hw[1], image_hw[0])))
            if cam in compressed:
                buf = io.BytesIO()
                PILImage.fromarray(img).save(buf, format="PNG")
                return ts.types["sensor_msgs/msg/CompressedImage"](header=_header(ts, stamp(t)), format="png",
                                                                  data=np.frombuffer(buf.getvalue(), np.uint8))
            bgr = img[..., ::-1] if ci == 2 else img  # one camera publishes bgr8, as RealSense can
            return ts.types["sensor_msgs/msg/Image"](
                header=_header(ts, stamp(t)), height=img.shape[0], width=img.shape[1],
                encoding="bgr8" if ci == 2 else "rgb8", is_bigendian=0, step=img.shape[1] * 3,
                data=np.ascontiguousarray(bgr).reshape(-1))
        topic = f"/cameras/{cam}/image_raw"
        mt = "sensor_msgs/msg/CompressedImage" if cam in compressed else "sensor_msgs/msg/Image"
        stream(topic, mt, cam_hz, image)
    for t, on in markers:
        msgs.append((int(round((BAG_T0 + t) * 1e9)), "/recording", "std_msgs/msg/Bool", ts.types["std_msgs/msg/Bool"](data=on)))

    msgs.sort(key=lambda m: m[0])
    with Writer(path, version=9, storage_plugin=plugin) as w:
        conns = {}
        for _, topic, mt, _ in msgs:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, mt, typestore=ts)
        for log_ns, topic, mt, msg in msgs:
            w.write(conns[topic], log_ns, ts.serialize_cdr(msg, mt))
    return {k: np.asarray(v) for k, v in captures.items()}


def rechunk_mcap_with_crcs(bag, chunk_size: int = 32 * 1024) -> list[dict[str, int]]:
    """Rewrite a bag's MCAP file with the `mcap` library's writer: same schemas, channels and messages, but in
    small uncompressed chunks that carry CRCs (as `ros2 bag record`'s MCAP plugin writes them; `rosbags`' writer
    stores CRC 0). Returns the messages per topic of each chunk, read back with the `mcap` library."""
    import io
    from pathlib import Path

    from mcap.reader import make_reader
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader, breakup_chunk
    from mcap.writer import CompressionType, Writer

    f = next(Path(bag).glob("*.mcap"))
    reader = make_reader(io.BytesIO(f.read_bytes()))
    summary = reader.get_summary()
    out = io.BytesIO()
    w = Writer(out, chunk_size=chunk_size, compression=CompressionType.NONE)
    w.start(profile="ros2", library="ate tests")
    schemas = {sid: w.register_schema(s.name, s.encoding, s.data) for sid, s in summary.schemas.items()}
    chans = {cid: w.register_channel(c.topic, c.message_encoding, schemas.get(c.schema_id, 0), c.metadata)
             for cid, c in summary.channels.items()}
    for _schema, channel, msg in reader.iter_messages(log_time_order=False):
        w.add_message(chans[channel.id], msg.log_time, msg.data, msg.publish_time, msg.sequence)
    w.finish()
    f.write_bytes(out.getvalue())
    topics = {cid: c.topic for cid, c in summary.channels.items()}
    per_chunk = []
    for rec in StreamReader(io.BytesIO(out.getvalue()), emit_chunks=True).records:
        if isinstance(rec, Chunk):
            assert rec.uncompressed_crc != 0
            counts: dict[str, int] = {}
            for r in breakup_chunk(rec):
                if hasattr(r, "channel_id") and hasattr(r, "log_time"):
                    counts[topics[r.channel_id]] = counts.get(topics[r.channel_id], 0) + 1
            per_chunk.append(counts)
    return per_chunk


def chunk_offsets(bag) -> list[tuple[int, int]]:
    """(start offset, length) of every chunk of a bag's MCAP file, from its summary."""
    from pathlib import Path

    from mcap.reader import make_reader

    f = next(Path(bag).glob("*.mcap"))
    with open(f, "rb") as fh:
        summary = make_reader(fh).get_summary()
    return sorted((c.chunk_start_offset, c.chunk_length) for c in summary.chunk_indexes)
