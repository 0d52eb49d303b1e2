"""Scripted demonstrations in the simulated cell as a LeRobot v3.0 dataset, and a video of an episode.

``ate_policy demo-data --sim cook_bun --episodes N`` (``demo.py`` hands its arguments here) runs the task's
scripted demonstrator (``ate_sim.demonstrator``) in the MuJoCo cell in lockstep simulated time and records
every 20 Hz tick through the project's episode recorder (``ate_policy.recording``, LeRobot's writer): the
16-dim joint/gripper state, the 16-dim action (the joint and gripper targets streamed to the sim
controllers), the 12-dim wrench, per-stream capture times (sim time) and the three cameras at
``--image-size`` (small by default: CPU rendering costs ~75 ms per 224x224 frame). Only episodes whose
success check passes are kept; failures are re-run with the next seed (at most 3 x N attempts).

``ate_policy sim-video --task cook_bun --seed 0 --output ep.mp4`` writes the three camera views of one
scripted episode side by side (MP4, or PNG frames with ``--frames-dir``) for people to look at.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_description.errors import UserError


def _sim_modules():
    try:
        from ate_sim import demonstrator, scenes
        from ate_sim.cell import SimCell
    except ImportError as e:
        raise UserError(f"the simulated cell (ate_sim + mujoco) is not installed here: {e}") from e
    return SimCell, demonstrator, scenes


def observe(cell) -> tuple[np.ndarray, np.ndarray]:
    """16-dim state (joints + measured gripper opening per arm) and 12-dim wrench of the sim cell."""
    state = np.zeros(contract.STATE_DIM, dtype=np.float32)
    effort = np.zeros(contract.EFFORT_DIM, dtype=np.float32)
    for i, arm in enumerate(contract.ARMS):
        s = contract.arm_slice(arm)
        state[s.start:s.start + contract.N_ARM_JOINTS] = cell.joint_positions(arm)
        state[s.start + contract.N_ARM_JOINTS] = cell.gripper_opening(arm)
        effort[6 * i:6 * i + 6] = cell.wrench(arm)
    return state, effort


def record_sim_demos(task: str, output: str | Path, episodes: int, image_hw: tuple[int, int] = (48, 64),
                     seed: int = 0, overwrite: bool = False, max_attempts: int | None = None,
                     vcodec: str = "auto") -> dict:
    """Record ``episodes`` successful scripted episodes of ``task``; returns a summary dict."""
    SimCell, demonstrator, scenes = _sim_modules()
    from ate_policy.recording.recorder import EpisodeRecorder, RecorderConfig

    if task not in demonstrator.SCRIPTS:
        raise UserError(f"no scripted sim task {task!r}; available: {sorted(demonstrator.SCRIPTS)}")
    if episodes < 1:
        raise UserError("--episodes must be >= 1")
    h, w = int(image_hw[0]), int(image_hw[1])
    from ate_policy.data.demo import MIN_VIDEO_H, MIN_VIDEO_W

    max_h, max_w = contract.CAMERA_RESOLUTION
    if not (MIN_VIDEO_H <= h <= max_h and MIN_VIDEO_W <= w <= max_w):
        raise UserError(f"image size {h}x{w} must be within {MIN_VIDEO_H}x{MIN_VIDEO_W} (smaller frames crash "
                        f"LeRobot's AV1 encoder) and {max_h}x{max_w} (the real cameras' recording size)")
    root = Path(output) / f"sim_{task}"
    if root.exists():
        if not overwrite:
            raise UserError(f"{root} already exists; pass --overwrite to replace it or choose another --output")
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    cell = SimCell(task=task, seed=seed, clock="lockstep")
    instruction = cell.scene.instruction
    # Lockstep: nothing is real time, so the recorder waits for its writer instead of dropping a frame.
    cfg = RecorderConfig(root=str(root), repo_id=f"local/sim_{task}", task=instruction, image_height=h,
                         image_width=w, blocking=True, vcodec=vcodec)
    attempts, kept, failed_seeds = 0, [], []
    max_attempts = max_attempts or 3 * episodes
    from tqdm import tqdm

    bar = tqdm(total=episodes, desc=f"sim {task} episodes", unit="ep", leave=False, disable=None)
    try:
        with EpisodeRecorder(cfg, resume=False) as rec:
            while len(kept) < episodes and attempts < max_attempts:
                ep_seed = seed + attempts
                attempts += 1
                rec.start_episode(instruction)

                def on_tick(c, action):
                    t = c.sim_time
                    state, effort = observe(c)
                    rec.put_state(state, effort, t)
                    for cam in contract.CAMERA_NAMES:
                        rec.put_image(cam, c.render(cam, (h, w)), t)
                    rec.tick(action, now_s=t)

                result = demonstrator.run_episode(cell, ep_seed, on_tick=on_tick)
                if result.success:
                    report = rec.stop_and_save()
                    kept.append({"seed": ep_seed, "frames": report.frames, "episode_index": report.episode_index})
                    bar.update(1)
                else:
                    rec.discard()
                    failed_seeds.append(ep_seed)
    finally:
        bar.close()
        cell.close()
    if len(kept) < episodes:
        raise UserError(f"only {len(kept)} of {episodes} episodes succeeded in {attempts} attempts "
                        f"(failed seeds {failed_seeds}); the dataset at {root} holds the successful ones")
    return {"root": root, "episodes": kept, "attempts": attempts, "failed_seeds": failed_seeds,
            "instruction": instruction, "image_hw": (h, w)}


def main(args: argparse.Namespace) -> int:
    """Entry from ``ate_policy demo-data --sim TASK`` (``args`` as parsed by ``ate_policy.data.demo``)."""
    hw = tuple(args.image_size)
    summary = record_sim_demos(args.sim, args.output, args.episodes, hw, seed=args.seed, overwrite=args.overwrite)
    frames = sum(e["frames"] for e in summary["episodes"])
    print(f"sim dataset '{args.sim}' ({len(summary['episodes'])} successful episodes of "
          f"{summary['attempts']} attempts, {frames} frames at {contract.FPS} Hz, 16-dim, 3 cameras "
          f"{hw[0]}x{hw[1]}): {summary['root']}")
    print("  --frames is not used with --sim: the scripted task sets each episode's length")
    return 0


# --- video of one episode ------------------------------------------------------------------------------------------

def write_episode_video(task: str, output: str | Path | None, seed: int = 0, image_hw: tuple[int, int] = (224, 224),
                        frames_dir: str | Path | None = None, every: int = 1) -> dict:
    """Run one scripted episode and write the three views side by side as MP4 and/or PNG frames."""
    SimCell, demonstrator, _ = _sim_modules()
    if output is None and frames_dir is None:
        raise UserError("give --output FILE.mp4 and/or --frames-dir DIR")
    cell = SimCell(task=task, seed=seed, clock="lockstep")
    frames: list[np.ndarray] = []
    tick = [0]

    def on_tick(c, _action):
        if tick[0] % every == 0:
            frames.append(np.concatenate([c.render(cam, image_hw) for cam in contract.CAMERA_NAMES], axis=1))
        tick[0] += 1

    try:
        result = demonstrator.run_episode(cell, seed, on_tick=on_tick)
    finally:
        cell.close()
    written = {"success": result.success, "frames": len(frames)}
    if frames_dir is not None:
        from PIL import Image

        d = Path(frames_dir)
        d.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(frames):
            Image.fromarray(f).save(d / f"frame_{i:05d}.png")
        written["frames_dir"] = d
    if output is not None:
        import av

        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(out), mode="w") as container:
            stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                          rate=max(1, round(contract.FPS / every)))
            stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
            stream.pix_fmt = "yuv420p"
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        written["video"] = out
    return written


def video_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ate_policy sim-video", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="cook_bun", help="sim task: cook_bun | pick_bun")
    p.add_argument("--seed", type=int, default=0, help="object randomisation seed")
    p.add_argument("--output", default=None, help="MP4 file to write (cam_high | left wrist | right wrist)")
    p.add_argument("--frames-dir", default=None, help="also (or instead) write PNG frames here")
    p.add_argument("--image-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    p.add_argument("--every", type=int, default=1, help="keep every N-th 20 Hz tick (faster on CPU)")
    a = p.parse_args(argv)
    if a.output is None and a.frames_dir is None:
        a.output = f"outputs/sim_{a.task}_seed{a.seed}.mp4"
    if a.every < 1:
        raise UserError("--every must be >= 1")
    res = write_episode_video(a.task, a.output, a.seed, tuple(a.image_size), a.frames_dir, a.every)
    print(f"{a.task} seed {a.seed}: {'success' if res['success'] else 'FAILED'}, {res['frames']} frames"
          + (f", video {res['video']}" if "video" in res else "")
          + (f", frames in {res['frames_dir']}" if "frames_dir" in res else ""))
    return 0


if __name__ == "__main__":
    sys.exit(video_main(sys.argv[1:]))
