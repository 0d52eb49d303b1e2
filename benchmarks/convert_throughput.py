"""Bag conversion throughput: seconds of a rosbag2 bag converted per wall-clock second, every frame verified.

A synthetic MCAP bag like the teleop launch records it (three 960x540 cameras at 30 Hz, joint/gripper states,
commands and wrenches of both arms), once with raw ``sensor_msgs/Image`` (rgb8) and once with
``sensor_msgs/CompressedImage`` (JPEG), converted by ``ate_policy.data.convert.convert_bags`` with its default
codec (``auto``: NVENC where it really encodes, else x264 ``ultrafast``; ``--vcodec`` to compare, e.g.
``libsvtav1``, the converter's earlier default). The converter verifies every episode's videos itself (frames
per camera == rows, first/last frame decodable) and fails otherwise; the benchmark also loads the dataset with
``LeRobotDataset`` and decodes the last frame. Goal (issue 13): >= 2x real time with the default codec.

Images are video-like (moving gradient, moving blocks, noise), pre-generated so the bag writer is not measured.

Usage: ``python benchmarks/convert_throughput.py [--seconds 10] [--repeats 1] [--vcodec auto,libsvtav1]``; quick:
``--seconds 4``. Writes ``benchmarks/results/convert_throughput.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_policy.data.convert import CONVERSION_RECORD, convert_bags, load_config
from ate_policy.recording import durable

OUT = Path(__file__).parent / "results" / "convert_throughput.json"
H, W = contract.CAMERA_RESOLUTION
CAM_HZ, STATE_HZ, CMD_HZ = 30, 100, 20
POOL = 12  # distinct frames per camera, cycled


def make_frames(rng) -> list[list[np.ndarray]]:
    yy, xx = np.mgrid[0:H, 0:W]
    pools = []
    for ci in range(len(contract.CAMERA_NAMES)):
        pool = []
        for k in range(POOL):
            img = np.empty((H, W, 3), np.float32)
            img[..., 0] = (xx + 8 * k + 40 * ci) % 256
            img[..., 1] = (yy + 5 * k) % 256
            img[..., 2] = 128
            x0 = (60 * k + 100 * ci) % (W - 120)
            img[200:320, x0:x0 + 120] = (220, 80, 40)
            img += rng.normal(0, 4, img.shape)
            pool.append(np.clip(img, 0, 255).astype(np.uint8))
        pools.append(pool)
    return pools


def write_bag(path: Path, seconds: float, compressed: bool, pools) -> int:
    """The bag; returns its size in bytes."""
    from PIL import Image as PILImage
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    t0 = 1_700_000_000.0

    def header(t):
        stamp = T["builtin_interfaces/msg/Time"](sec=int(t), nanosec=int((t % 1) * 1e9))
        return T["std_msgs/msg/Header"](stamp=stamp, frame_id="")

    def joints(t, names, pos):
        return T["sensor_msgs/msg/JointState"](header=header(t), name=names, position=np.asarray(pos, np.float64),
                                               velocity=np.zeros(0), effort=np.zeros(0))

    jpeg = []
    if compressed:
        for pool in pools:
            enc = []
            for img in pool:
                buf = io.BytesIO()
                PILImage.fromarray(img).save(buf, format="JPEG", quality=90)
                enc.append(np.frombuffer(buf.getvalue(), np.uint8))
            jpeg.append(enc)
    msgs = []
    for arm in contract.ARMS:
        names = contract.arm_joint_names(arm)
        for k in range(int(seconds * STATE_HZ)):
            t = k / STATE_HZ
            q = 0.3 * np.sin(t + np.arange(7))
            msgs.append((t, f"/{arm}/joint_states", "sensor_msgs/msg/JointState", joints(t0 + t, names, q)))
            msgs.append((t, f"/{arm}/gripper/state", "sensor_msgs/msg/JointState",
                         joints(t0 + t, [f"{arm}_gripper"], [0.5])))
            v3 = T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=1.0)
            w = T["geometry_msgs/msg/WrenchStamped"](header=header(t0 + t),
                                                     wrench=T["geometry_msgs/msg/Wrench"](force=v3, torque=v3))
            msgs.append((t, f"/{arm}/wrench", "geometry_msgs/msg/WrenchStamped", w))
        for k in range(int(seconds * CMD_HZ)):
            t = k / CMD_HZ + 0.001
            msgs.append((t, f"/{arm}/joint_command", "sensor_msgs/msg/JointState",
                         joints(t0 + t, names, 0.3 * np.sin(t + 0.05 + np.arange(7)))))
            msgs.append((t, f"/{arm}/gripper/command", "sensor_msgs/msg/JointState",
                         joints(t0 + t, [f"{arm}_gripper"], [0.5])))
    for ci, cam in enumerate(contract.CAMERA_NAMES):
        for k in range(int(seconds * CAM_HZ)):
            t = k / CAM_HZ + 0.002
            if compressed:
                m = T["sensor_msgs/msg/CompressedImage"](header=header(t0 + t), format="jpeg",
                                                         data=jpeg[ci][k % POOL])
                mt = "sensor_msgs/msg/CompressedImage"
            else:
                m = T["sensor_msgs/msg/Image"](header=header(t0 + t), height=H, width=W, encoding="rgb8",
                                               is_bigendian=0, step=W * 3, data=pools[ci][k % POOL].reshape(-1))
                mt = "sensor_msgs/msg/Image"
            msgs.append((t, f"/cameras/{cam}/image_raw", mt, m))
    msgs.sort(key=lambda m: m[0])
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {}
        for t, topic, mt, m in msgs:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, mt, typestore=ts)
            w.write(conns[topic], int((t0 + t + 0.002) * 1e9), ts.serialize_cdr(m, mt))
    return sum(f.stat().st_size for f in path.iterdir())


def convert_once(bag: Path, out: Path, vcodec: str, seconds: float) -> dict:
    cfg = load_config({"task": "benchmark", "vcodec": vcodec})
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    convert_bags([bag], out, cfg)
    wall = time.perf_counter() - t
    side = durable.read_sidecar(out)[0]
    rec = json.loads((out / CONVERSION_RECORD).read_text())
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/ate_dual_bags", root=out)
    last = ds[len(ds) - 1][contract.IMAGE_KEYS[0]]   # decodes with LeRobot's default decoder
    verified = all(n == side["frames"] for n in side["video_frames"].values())
    return {"wall_s": wall, "x_real_time": seconds / wall, "frames": side["frames"], "vcodec": rec["vcodec"],
            "video_frames": side["video_frames"], "frames_verified": verified,
            "lerobot_decodes_last_frame": tuple(last.shape) == (3, H, W), "load_avg_1min": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="bag length")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--vcodec", default="auto", help="comma-separated converter codecs to compare")
    p.add_argument("--output", default=str(OUT))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    import lerobot.datasets.lerobot_dataset  # noqa: F401  (import once, outside the timed conversions)

    pools = make_frames(np.random.default_rng(0))
    tmp = Path(tempfile.mkdtemp(prefix="convert_bench_"))
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cpus", "python": platform.python_version(),
               "image": [H, W, 3], "cameras": len(contract.CAMERA_NAMES), "camera_hz": CAM_HZ,
               "bag_seconds": args.seconds, "repeats": args.repeats, "runs": {}}
    try:
        for kind in ("raw_image", "compressed_jpeg"):
            bag = tmp / kind
            size = write_bag(bag, args.seconds, kind == "compressed_jpeg", pools)
            for vcodec in args.vcodec.split(","):
                runs = [convert_once(bag, tmp / f"ds_{kind}_{vcodec}", vcodec, args.seconds)
                        for _ in range(args.repeats)]
                ratio = statistics.median(r["x_real_time"] for r in runs)
                results["runs"][f"{kind}/{vcodec}"] = {**runs[0], "x_real_time": ratio, "bag_mb": size / 1e6,
                                                       "x_real_time_runs": [r["x_real_time"] for r in runs]}
                print(f"{kind} {vcodec}: {ratio:.2f}x real time", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nbag conversion, 3 x {W}x{H} @ {CAM_HZ} Hz -> {contract.FPS} Hz dataset, {args.seconds:g} s bags, "
          f"{results['machine']}")
    print(f"{'input':16} {'vcodec':10} {'used':10} {'bag MB':>7} {'wall s':>7} {'x real time':>11} "
          f"{'frames':>6} {'verified':>8} {'loads':>5} {'load':>5}")
    for key, r in results["runs"].items():
        kind, vcodec = key.split("/")
        print(f"{kind:16} {vcodec:10} {r['vcodec']:10} {r['bag_mb']:7.0f} {r['wall_s']:7.1f} "
              f"{r['x_real_time']:11.2f} "
              f"{r['frames']:6d} {str(r['frames_verified']):>8} {str(r['lerobot_decodes_last_frame']):>5} "
              f"{r['load_avg_1min']:5.1f}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
