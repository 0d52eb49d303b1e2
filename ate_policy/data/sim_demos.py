"""Scripted demonstrations in the simulated cell as a LeRobot v3.0 dataset, and a video of an episode.

``ate_policy demo-data --sim cook_bun --episodes N`` (``demo.py`` hands its arguments here) runs the task's
scripted demonstrator (``ate_sim.demonstrator``) in the MuJoCo cell in lockstep simulated time and records
every 20 Hz tick through the project's episode recorder (``ate_policy.recording``, LeRobot's writer): the
16-dim joint/gripper state, the 16-dim action (the joint and gripper targets streamed to the sim
controllers), the 12-dim wrench, per-stream capture times (sim time) and the three cameras at
``--image-size`` (small by default: CPU rendering costs ~75 ms per 224x224 frame). Only episodes whose
success check passes are kept; failures are re-run with the next seed (at most 3 x N attempts). Each episode's
sidecar record (``meta/ate_episodes.jsonl``) carries its ``seed``. ``--workers K`` records in K processes (shards
merged in seed order: the same episodes as one process); re-running on an existing dataset adds only the missing
episodes (resume).

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


LOSSLESS_VIDEO = {"vcodec": "h264", "encoder_crf": 0, "encoder_pix_fmt": "yuv444p"}
"""How sim demonstrations store their videos by default: x264 at constant quality 0 with full-resolution colour.
LeRobot's default (crf 30, yuv420p, right for 960x540 cameras) changes a 48x64 frame by 4.6/255 per pixel on
average, four times what moving the scene's objects by up to 3.5 cm changes in the overhead view (1.05/255), so
a policy trained on such frames can hardly see where the objects are, and at evaluation it sees the renderer's
clean frames instead. This stores the render within ~0.4/255 (RGB <-> YUV rounding) at ~2-3 kB per frame.
``--lossy-video`` keeps LeRobot's default."""


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
                     vcodec: str = "auto", workers: int = 1, lossless: bool = True,
                     handover_jitter_m: float = 0.0) -> dict:
    """Record ``episodes`` successful scripted episodes of ``task``; returns a summary dict.

    The dataset holds the first ``episodes`` seeds from ``seed`` on whose demonstration succeeds, in seed order,
    whatever ``workers`` is: seeds are tried in rounds (the next seeds still needed), each round's seeds split
    into contiguous blocks, one per worker process writing its own shard, shards merged in order with LeRobot's
    ``aggregate_datasets`` (sidecar records re-indexed). An existing dataset is resumed: only the missing
    episodes are added, from the seed after its last recorded one (``--overwrite`` starts afresh).

    ``lossless`` (default): the videos are stored as ``LOSSLESS_VIDEO`` says, else with LeRobot's default
    quality. ``handover_jitter_m`` (cook_bun): the handed-over bun is put down anywhere within this distance of
    the plate's centre (``ate_sim.demonstrator.run_episode``); each episode's sidecar record keeps it, and a
    dataset is only resumed with the jitter it was recorded with."""
    _, demonstrator, _ = _sim_modules()
    if task not in demonstrator.SCRIPTS:
        raise UserError(f"no scripted sim task {task!r}; available: {sorted(demonstrator.SCRIPTS)}")
    if episodes < 1:
        raise UserError("--episodes must be >= 1")
    if workers < 1:
        raise UserError("--workers must be >= 1")
    try:
        demonstrator.check_handover_jitter(task, handover_jitter_m)
    except ValueError as e:
        raise UserError(f"--handover-jitter-cm: {e}") from e
    h, w = int(image_hw[0]), int(image_hw[1])
    from ate_policy.data.demo import MIN_VIDEO_H, MIN_VIDEO_W

    max_h, max_w = contract.CAMERA_RESOLUTION
    if not (MIN_VIDEO_H <= h <= max_h and MIN_VIDEO_W <= w <= max_w):
        raise UserError(f"image size {h}x{w} must be within {MIN_VIDEO_H}x{MIN_VIDEO_W} (smaller frames crash "
                        f"LeRobot's AV1 encoder) and {max_h}x{max_w} (the real cameras' recording size)")
    root = Path(output) / f"sim_{task}"
    if root.exists() and overwrite:
        shutil.rmtree(root)
    kept = _recorded_seeds(root, handover_jitter_m) if root.exists() else []
    already = len(kept)
    root.parent.mkdir(parents=True, exist_ok=True)
    next_seed = max([seed] + [s + 1 for s in kept])
    attempts, failed_seeds = 0, []
    max_attempts = max_attempts or 3 * episodes
    while len(kept) < episodes and attempts < max_attempts:
        seeds = list(range(next_seed, next_seed + min(episodes - len(kept), max_attempts - attempts)))
        next_seed += len(seeds)
        attempts += len(seeds)
        if workers == 1 or len(seeds) == 1:
            ok, bad = _record_seeds(task, root, seeds, (h, w), vcodec, lossless, handover_jitter_m)
        else:
            ok, bad = _record_parallel(task, root, seeds, (h, w), vcodec, workers, lossless, handover_jitter_m)
        kept += ok
        failed_seeds += bad
    instruction = _scene_instruction(task)
    if len(kept) < episodes:
        raise UserError(f"only {len(kept)} of {episodes} episodes succeeded in {attempts} attempts "
                        f"(failed seeds {failed_seeds}); the dataset at {root} holds the successful ones")
    sidecar = durable_sidecar(root)
    eps = [{"seed": r["seed"], "frames": r["frames"], "episode_index": i} for i, r in sorted(sidecar.items())]
    return {"root": root, "episodes": eps, "attempts": attempts, "failed_seeds": failed_seeds,
            "resumed_with": already, "instruction": instruction, "image_hw": (h, w)}


def _scene_instruction(task: str) -> str:
    from ate_sim.scenes import make_scene

    return make_scene(task).instruction


def durable_sidecar(root: Path) -> dict[int, dict]:
    from ate_policy.recording.durable import read_sidecar

    return read_sidecar(root)


def _recorded_seeds(root: Path, handover_jitter_m: float = 0.0) -> list[int]:
    """Seeds of the episodes already in ``root`` (a resumed dataset), from its sidecar; refused when they were
    recorded with another handover jitter."""
    if not (root / "meta" / "info.json").is_file():
        raise UserError(f"{root} exists but holds no LeRobot dataset; pass --overwrite to replace it")
    recs = durable_sidecar(root)
    if any("seed" not in r for r in recs.values()):
        raise UserError(f"{root}: its episodes carry no sim seed (recorded before seeds were kept?), so it cannot "
                        "be resumed; pass --overwrite to record it afresh")
    other = sorted({float(r.get("handover_jitter_m", 0.0)) for r in recs.values()} - {float(handover_jitter_m)})
    if other:
        raise UserError(f"{root} was recorded with a handover jitter of {other[0] * 100:g} cm, not "
                        f"{handover_jitter_m * 100:g} cm: resume it with that, or write another --output")
    return [int(r["seed"]) for _, r in sorted(recs.items())]


def _record_seeds(task: str, root: Path, seeds: list[int], image_hw: tuple[int, int],
                  vcodec: str, lossless: bool = True,
                  handover_jitter_m: float = 0.0) -> tuple[list[int], list[int]]:
    """Demonstrate each of ``seeds`` once, appending the successful ones to ``root`` (created or resumed);
    returns (kept seeds, failed seeds)."""
    SimCell, demonstrator, _ = _sim_modules()
    from ate_policy.recording.recorder import EpisodeRecorder

    h, w = image_hw
    cell = SimCell(task=task, seed=seeds[0], clock="lockstep")
    instruction = cell.scene.instruction
    cfg = recorder_config(root, task, instruction, image_hw, vcodec, lossless)
    kept, failed = [], []
    # The recorder's clock must not run backwards: each episode restarts the cell's time at 0, so its stamps
    # continue after the last episode's (else the recorder keeps the last episode's final samples as the newest
    # and every later episode's observations freeze).
    t_base = [0.0]
    from tqdm import tqdm

    bar = tqdm(total=len(seeds), desc=f"sim {task} seeds {seeds[0]}..{seeds[-1]}", unit="ep", leave=False,
               disable=None)
    try:
        with EpisodeRecorder(cfg, resume=(root / "meta" / "info.json").is_file()) as rec:
            for ep_seed in seeds:
                rec.start_episode(instruction)

                def on_tick(c, action):
                    record_tick(rec, c, action, t_base[0] + c.sim_time, (h, w))

                result = demonstrator.run_episode(cell, ep_seed, on_tick=on_tick,
                                                  handover_jitter_m=handover_jitter_m)
                t_base[0] += cell.sim_time + 1.0
                if result.success:
                    extra = {"handover_jitter_m": float(handover_jitter_m)} if handover_jitter_m else {}
                    rec.stop_and_save({"seed": int(ep_seed), "sim_task": task, **extra})
                    kept.append(ep_seed)
                else:
                    rec.discard()
                    failed.append(ep_seed)
                bar.update(1)
    finally:
        bar.close()
        cell.close()
    return kept, failed


def recorder_config(root: Path, task: str, instruction: str, image_hw: tuple[int, int], vcodec: str = "auto",
                    lossless: bool = True):
    """The episode recorder's settings for a sim dataset at ``root``: blocking writes (lockstep: nothing is real
    time, so the recorder waits for its writer instead of dropping a frame), videos as ``lossless`` says."""
    from ate_policy.recording.recorder import RecorderConfig

    video = {"vcodec": vcodec}
    if lossless:   # LOSSLESS_VIDEO's codec unless one was asked for
        video = {**LOSSLESS_VIDEO, **({} if vcodec == "auto" else video)}
    return RecorderConfig(root=str(root), repo_id=f"local/sim_{task}", task=instruction,
                          image_height=int(image_hw[0]), image_width=int(image_hw[1]), blocking=True, **video)


def record_tick(rec, cell, action: np.ndarray, t: float, image_hw: tuple[int, int]) -> None:
    """One 20 Hz frame of ``cell`` into the recorder ``rec``: the state and wrench, the three cameras at
    ``image_hw``, then ``action`` (the targets about to be sent), all stamped ``t``."""
    state, effort = observe(cell)
    rec.put_state(state, effort, t)
    for cam in contract.CAMERA_NAMES:
        rec.put_image(cam, cell.render(cam, tuple(image_hw)), t)
    rec.tick(action, now_s=t)


def _worker(args) -> tuple[list[int], list[int]]:
    task, root, seeds, image_hw, vcodec, lossless, handover_jitter_m = args
    from ate_policy.quiet import quiet_libraries

    quiet_libraries()
    return _record_seeds(task, Path(root), seeds, image_hw, vcodec, lossless, handover_jitter_m)


def _record_parallel(task: str, root: Path, seeds: list[int], image_hw: tuple[int, int], vcodec: str,
                     workers: int, lossless: bool = True,
                     handover_jitter_m: float = 0.0) -> tuple[list[int], list[int]]:
    """``seeds`` in contiguous blocks, one worker process (own sim cell, own shard dataset) each; the shards are
    appended to ``root`` in seed order."""
    import multiprocessing as mp

    n = min(workers, len(seeds))
    blocks = [b.tolist() for b in np.array_split(np.asarray(seeds), n)]
    shard_dir = root.parent / f".{root.name}.shards"
    shutil.rmtree(shard_dir, ignore_errors=True)
    shards = [shard_dir / f"shard_{i:02d}" for i in range(n)]
    # spawn: a forked child would inherit the parent's OpenGL context and LeRobot's encoder threads.
    with mp.get_context("spawn").Pool(n) as pool:
        results = pool.map(_worker, [(task, str(s), b, tuple(image_hw), vcodec, lossless, handover_jitter_m)
                                     for s, b in zip(shards, blocks)])
    kept = [s for ok, _ in results for s in ok]
    failed = [s for _, bad in results for s in bad]
    parts = [s for s, (ok, _) in zip(shards, results) if ok]
    if parts:
        merge_datasets([root] if (root / "meta" / "info.json").is_file() else [], parts, root)
    shutil.rmtree(shard_dir, ignore_errors=True)
    return kept, failed


def merge_datasets(existing: list[Path], shards: list[Path], root: Path) -> None:
    """``existing`` (0 or 1 dataset, = ``root``) followed by ``shards``, in order, into ``root`` with LeRobot's
    ``aggregate_datasets``; the sidecar records follow their episodes (indices shifted)."""
    from lerobot.datasets.aggregate import aggregate_datasets

    from ate_policy.data.curate import fix_episode_meta_index, with_fixed_meta_index
    from ate_policy.recording.durable import SIDECAR, append_sidecar

    # a dataset merged before this fix names wrong metadata files: merged through a fixed copy of its meta/
    scratch = root.parent / f".{root.name}.meta_fixed"
    tmp = root.parent / f".{root.name}.merging"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        sources = [with_fixed_meta_index(e, scratch) for e in existing] + list(shards)
        aggregate_datasets([f"local/part{i}" for i in range(len(sources))], f"local/{root.name}",
                           roots=sources, aggr_root=tmp)
        fix_episode_meta_index(tmp)   # LeRobot's aggregate keeps the sources' file index (docs/data.md)
        offset = 0
        for src in sources:
            recs = durable_sidecar(src)
            for i, r in sorted(recs.items()):
                append_sidecar(tmp, {**r, "episode_index": offset + i})
            offset += len(recs)
        if not (tmp / SIDECAR).is_file():
            raise RuntimeError(f"merging {sources} wrote no sidecar")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)   # root is untouched until here: a failed merge leaves no trace
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if root.exists():
        old = root.parent / f".{root.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        root.rename(old)
        tmp.rename(root)
        shutil.rmtree(old)
    else:
        tmp.rename(root)


def main(args: argparse.Namespace) -> int:
    """Entry from ``ate_policy demo-data --sim TASK`` (``args`` as parsed by ``ate_policy.data.demo``)."""
    hw = tuple(args.image_size)
    summary = record_sim_demos(args.sim, args.output, args.episodes, hw, seed=args.seed, overwrite=args.overwrite,
                               workers=getattr(args, "workers", 1),
                               lossless=not getattr(args, "lossy_video", False),
                               handover_jitter_m=getattr(args, "handover_jitter_cm", 0.0) / 100.0)
    frames = sum(e["frames"] for e in summary["episodes"])
    resumed = f", {summary['resumed_with']} were there already" if summary["resumed_with"] else ""
    print(f"sim dataset '{args.sim}' ({len(summary['episodes'])} successful episodes{resumed}; "
          f"{summary['attempts']} new attempts, {frames} frames at {contract.FPS} Hz, 16-dim, 3 cameras "
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
            frames.append(camera_strip({cam: c.render(cam, image_hw) for cam in contract.CAMERA_NAMES}))
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
        written["video"] = write_mp4(frames, output, max(1, round(contract.FPS / every)))
    return written


def camera_strip(images: dict[str, np.ndarray]) -> np.ndarray:
    """The three views side by side (cam_high | left wrist | right wrist), as the videos show them."""
    return np.concatenate([images[cam] for cam in contract.CAMERA_NAMES], axis=1)


def write_mp4(frames: list[np.ndarray], output: str | Path, fps: int) -> Path:
    """(H, W, 3) uint8 RGB frames as an H.264 MP4 (MPEG-4 where this PyAV has no x264)."""
    import av

    if not frames:
        raise ValueError("no frames to write")
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=int(fps))
        stream.width, stream.height = w - w % 2, h - h % 2   # yuv420p needs even sizes
        stream.pix_fmt = "yuv420p"
        for f in frames:
            f = np.ascontiguousarray(f[:stream.height, :stream.width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def video_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ate_policy sim-video", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="cook_bun", help="sim task (ate_sim.scenes.SCENES: cook_bun, pick_bun, ...)")
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
