"""``ate_policy demo-data``: synthetic but real LeRobot v3.0 datasets, so every path runs without a robot.

Two datasets are written through LeRobot's own writer:

* ``demo_dual``: the dual-arm data contract (docs/architecture.md (data contract)): 16-dim state/action at 20 Hz, effort,
  per-stream capture times, three small camera streams as video, one task string. Trajectories are smooth
  (sums of low-frequency sines inside the joint limits, gripper open/close ramps); the state follows the
  commanded action with the lag of a position controller; the images show where the arms are.
* ``demo_pretrain``: a different embodiment (a 7-dim single arm: 6 joints + gripper, 10 Hz, larger and
  faster motions, no cameras), standing in for the pre-training mixture, so the cross-embodiment path of
  the InfoVAE is always exercised.

Everything is deterministic in ``--seed``. ``--sim TASK`` (scripted demonstrations in the MuJoCo cell) is the
realistic source once the sim cell is installed.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_description.errors import UserError

DUAL_NAME = "demo_dual"
PRETRAIN_NAME = "demo_pretrain"
DEMO_TASK = "cook the bun: put the bun in the steamer and close the lid"
PRETRAIN_TASK = "pick up the object"
PRETRAIN_FPS = 10
PRETRAIN_DIM = 7
# SVT-AV1, LeRobot's default video encoder (and what LeRobot's tools may re-encode with), dies with SIGFPE on
# frames narrower than 32 px (seen with 24 px) and we have only checked heights down to 16 px.
MIN_VIDEO_W, MIN_VIDEO_H = 32, 16


@dataclass
class DemoSpec:
    episodes: int = 6
    frames: int = 80
    pretrain_episodes: int = 12
    pretrain_frames: int = 100
    image_hw: tuple[int, int] = (48, 64)
    seed: int = 0


def smooth_trajectory(rng: np.random.Generator, n: int, dim: int, fps: float, amp: np.ndarray,
                      center: np.ndarray, max_freq_hz: float = 0.3, n_terms: int = 3) -> np.ndarray:
    """Sum of low-frequency sines per dim: smooth (bounded jerk) and within center +/- amp."""
    t = np.arange(n) / fps
    out = np.zeros((n, dim))
    for _ in range(n_terms):
        freq = rng.uniform(0.05, max_freq_hz, size=dim)
        phase = rng.uniform(0, 2 * math.pi, size=dim)
        weight = rng.uniform(0.3, 1.0, size=dim)
        out += weight * np.sin(2 * math.pi * freq * t[:, None] + phase)
    out /= np.abs(out).max(axis=0, keepdims=True) + 1e-9
    return center + amp * out


def gripper_profile(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    """Open (1) / closed (0) phases joined by 0.5 s ramps."""
    g = np.ones(n)
    k = 0
    state = 1.0
    while k < n:
        hold = int(rng.uniform(1.0, 2.5) * fps)
        target = 0.0 if state > 0.5 else 1.0
        ramp = np.linspace(state, target, int(0.5 * fps))
        g[k:k + hold] = state
        g[k + hold:k + hold + len(ramp)] = ramp[: max(0, n - k - hold)]
        k += hold + len(ramp)
        state = target
    return g[:n]


def follow(action: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """State of a position controller tracking the commanded targets with a first-order lag."""
    state = np.empty_like(action)
    state[0] = action[0]
    for i in range(1, len(action)):
        state[i] = state[i - 1] + alpha * (action[i - 1] - state[i - 1])
    return state


def render_views(state: np.ndarray, hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Three small images showing the arms: a blob per arm whose place follows its joints."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    views = {}
    for ci, cam in enumerate(contract.CAMERA_NAMES):
        img = np.zeros((h, w, 3), dtype=np.float32)
        img[..., 2] = 40 + 40 * yy / h  # background gradient
        img[..., ci] += 30
        arms = contract.ARMS if cam == "cam_high" else (contract.ARMS[ci - 1],)
        for arm in arms:
            q = state[contract.arm_slice(arm)]
            cx = w * (0.5 + 0.35 * math.tanh(q[0] + 0.5 * q[2]) + (-0.2 if arm == "left" else 0.2) * (cam == "cam_high"))
            cy = h * (0.5 + 0.35 * math.tanh(q[1] + 0.5 * q[3]))
            r = 4 + 6 * q[7]  # the gripper opening changes the blob's size
            blob = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
            img[blob] = (220, 180, 60) if arm == "left" else (60, 200, 220)
        views[cam] = np.clip(img, 0, 255).astype(np.uint8)
    return views


def dual_episode(rng: np.random.Generator, frames: int) -> dict[str, np.ndarray]:
    lim = np.array(contract.JOINT_LIMITS_RAD)
    action = np.zeros((frames, contract.ACTION_DIM))
    for arm in contract.ARMS:
        center = rng.uniform(-0.3, 0.3, size=7) * lim * 0.3
        amp = np.minimum(0.5 * lim, 0.6) * rng.uniform(0.4, 1.0, size=7)
        sl = contract.arm_slice(arm)
        action[:, sl.start:sl.start + 7] = smooth_trajectory(rng, frames, 7, contract.FPS, amp, center)
        action[:, sl.start + 7] = gripper_profile(rng, frames, contract.FPS)
    state = follow(action)
    effort = np.concatenate([np.diff(state[:, :6], axis=0, prepend=state[:1, :6]) * 40.0,
                             np.diff(state[:, 8:14], axis=0, prepend=state[:1, 8:14]) * 40.0], axis=1)
    # Capture times: camera frames arrive 5-25 ms before each tick, joint states ~2 ms before.
    ticks = np.arange(frames) * contract.PERIOD_S
    capture = np.stack([ticks - 0.002] + [ticks - rng.uniform(0.005, 0.025, size=frames)
                                          for _ in contract.CAMERA_NAMES], axis=1).clip(min=0.0)
    return {"action": action, "state": state, "effort": effort, "capture": capture}


def _writer(root: Path, repo_id: str, fps: int, features: dict, robot_type: str):
    """The project's one episode writer (offline: blocks, never drops a frame, verifies each episode's videos)."""
    from ate_policy.recording.writer import EpisodeWriter, WriterConfig

    return EpisodeWriter(WriterConfig(root=str(root), repo_id=repo_id, fps=fps, features=features,
                                      robot_type=robot_type, vcodec="auto", durable=False,
                                      on_video_mismatch="raise"))


def write_dual_dataset(root: Path, spec: DemoSpec, rng: np.random.Generator) -> Path:
    h, w = spec.image_hw
    with _writer(root, f"local/{DUAL_NAME}", contract.FPS, contract.features(image_shape=(h, w, 3)),
                 contract.ROBOT_TYPE) as writer:
        for _ in _progress(range(spec.episodes), f"{DUAL_NAME} episodes"):
            ep = dual_episode(rng, spec.frames)
            for i in range(spec.frames):
                frame = {
                    contract.STATE_KEY: ep["state"][i].astype(np.float32),
                    contract.ACTION_KEY: ep["action"][i].astype(np.float32),
                    contract.EFFORT_KEY: ep["effort"][i].astype(np.float32),
                    contract.CAPTURE_TIME_KEY: ep["capture"][i].astype(np.float32),
                    "task": DEMO_TASK,
                }
                for cam, img in render_views(ep["state"][i], (h, w)).items():
                    frame[f"observation.images.{cam}"] = img
                writer.put_frame(frame)
            writer.save({"source": "demo", "task": DEMO_TASK, "flagged": False, "dropped_frames": 0})
    return root


def write_pretrain_dataset(root: Path, spec: DemoSpec, rng: np.random.Generator) -> Path:
    names = [f"joint{i}" for i in range(1, PRETRAIN_DIM)] + ["gripper"]
    feats = {
        "observation.state": {"dtype": "float32", "shape": (PRETRAIN_DIM,), "names": names},
        "action": {"dtype": "float32", "shape": (PRETRAIN_DIM,), "names": names},
    }
    with _writer(root, f"local/{PRETRAIN_NAME}", PRETRAIN_FPS, feats, "synthetic_single_arm") as writer:
        for _ in _progress(range(spec.pretrain_episodes), f"{PRETRAIN_NAME} episodes"):
            n = spec.pretrain_frames
            action = np.zeros((n, PRETRAIN_DIM))
            action[:, :6] = smooth_trajectory(rng, n, 6, PRETRAIN_FPS, amp=rng.uniform(0.5, 1.5, size=6),
                                              center=rng.normal(0, 0.3, size=6), max_freq_hz=0.5, n_terms=4)
            action[:, 6] = gripper_profile(rng, n, PRETRAIN_FPS)
            state = follow(action, alpha=0.8)
            for i in range(n):
                writer.put_frame({"observation.state": state[i].astype(np.float32),
                                  "action": action[i].astype(np.float32), "task": PRETRAIN_TASK})
            writer.save({"source": "demo", "task": PRETRAIN_TASK, "flagged": False, "dropped_frames": 0})
    return root


def _progress(it, desc):
    from tqdm import tqdm

    return tqdm(it, desc=desc, unit="ep", leave=False, disable=None)


def write_demo_data(output: str | Path, spec: DemoSpec, overwrite: bool = False) -> dict[str, Path]:
    """Write both demo datasets under ``output``; returns {"adaptation": path, "pretrain": path}."""
    h, w = spec.image_hw
    if w < MIN_VIDEO_W or h < MIN_VIDEO_H:
        raise UserError(f"image size {h}x{w} is too small: LeRobot's AV1 video encoder (SVT-AV1) crashes below "
                        f"{MIN_VIDEO_H} rows x {MIN_VIDEO_W} columns; use --image-size {max(h, MIN_VIDEO_H)} "
                        f"{max(w, MIN_VIDEO_W)} or larger")
    output = Path(output)
    paths = {"adaptation": output / DUAL_NAME, "pretrain": output / PRETRAIN_NAME}
    for p in paths.values():
        if p.exists():
            if not overwrite:
                raise UserError(f"{p} already exists; pass --overwrite to replace it or choose another --output")
            shutil.rmtree(p)
    output.mkdir(parents=True, exist_ok=True)
    # Independent streams per dataset: changing one dataset's size leaves the other's content unchanged.
    seeds = np.random.SeedSequence(spec.seed).spawn(2)
    write_dual_dataset(paths["adaptation"], spec, np.random.default_rng(seeds[0]))
    write_pretrain_dataset(paths["pretrain"], spec, np.random.default_rng(seeds[1]))
    return paths


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ate_policy demo-data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="outputs/demo_data", help="folder that receives the datasets")
    p.add_argument("--episodes", type=int, default=DemoSpec.episodes, help="dual-arm episodes")
    p.add_argument("--frames", type=int, default=DemoSpec.frames, help="frames per dual-arm episode (20 Hz)")
    p.add_argument("--pretrain-episodes", type=int, default=DemoSpec.pretrain_episodes)
    p.add_argument("--pretrain-frames", type=int, default=DemoSpec.pretrain_frames)
    p.add_argument("--image-size", type=int, nargs=2, default=DemoSpec.image_hw, metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    p.add_argument("--sim", metavar="TASK", default=None,
                   help="scripted demonstrations of TASK in the MuJoCo cell instead of synthetic trajectories")
    p.add_argument("--workers", type=int, default=1,
                   help="--sim: worker processes (shards merged; the same episodes as one worker)")
    p.add_argument("--handover-jitter-cm", type=float, default=0.0,
                   help="--sim cook_bun: the right arm puts the bun down anywhere within this distance of the left "
                        "plate's centre (at most 3), so the left arm's grasp of it must find it (default 0: at the "
                        "centre)")
    p.add_argument("--takeover-from", metavar="CHECKPOINT", default=None,
                   help="--sim: instead of whole scripted episodes, let this policy run each seed until the task's "
                        "takeover point and record the scripted demonstrator finishing the task from the state the "
                        "policy reached (DAgger-style; cook_bun; docs/sim.md)")
    p.add_argument("--takeover-delay-s", type=float, default=4.0,
                   help="--takeover-from: the takeover comes a random 0..this many seconds after the takeover "
                        "stages, or when the policy first closes a gripper")
    p.add_argument("--device", default="cpu", help="--takeover-from: the policy's device (cpu | cuda | auto)")
    p.add_argument("--lossy-video", action="store_true",
                   help="--sim: store the videos at LeRobot's default quality (crf 30, yuv420p) instead of "
                        "near-lossless (at a few dozen pixels the default hides where the objects are)")
    args = p.parse_args(argv)
    if args.sim:
        try:
            from ate_policy.data import sim_demos  # noqa: F401  (provided by the sim cell)
        except ImportError as e:
            raise UserError(f"--sim needs the simulated cell, which is not installed here ({e})") from e
        if args.takeover_from:
            from ate_policy.data import sim_takeover

            return sim_takeover.main(args)
        return sim_demos.main(args)
    if args.takeover_from:
        raise UserError("--takeover-from needs --sim TASK")
    if args.episodes < 1 or args.frames < 2:
        raise UserError("--episodes must be >= 1 and --frames >= 2")
    spec = DemoSpec(args.episodes, args.frames, args.pretrain_episodes, args.pretrain_frames,
                    tuple(args.image_size), args.seed)
    paths = write_demo_data(args.output, spec, overwrite=args.overwrite)
    print(f"adaptation dataset ({spec.episodes} episodes x {spec.frames} frames, 16-dim, 3 cameras): "
          f"{paths['adaptation']}")
    print(f"pre-training dataset ({spec.pretrain_episodes} episodes x {spec.pretrain_frames} frames, "
          f"{PRETRAIN_DIM}-dim single arm): {paths['pretrain']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
