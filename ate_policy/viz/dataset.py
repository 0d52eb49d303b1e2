"""``ate_policy viz DATASET --episode N``: one recorded episode in Rerun, with the audit's flags on its timeline.

    ate_policy viz DATASET --episode N [--save FILE.rrd] [--web] [--native] [--max-frames K]

What LeRobot's ``lerobot-dataset-viz`` shows of an episode (cameras, ``observation.state`` and ``action`` per
dimension) plus what only this project's datasets carry and ``ate_policy inspect`` audits: the robot's 3D model
driven by the recorded joints, measured joints against the recorded targets per arm, gripper openings, the wrist
wrenches (``observation.effort``), the per-stream sync error (nominal tick time - capture time, from
``observation.capture_time``) and, as ``events/audit`` entries at their frames, every stale stream (sync error
beyond the episode's freshness limit), repeated frame (a stream that delivered nothing new), joint-limit and
joint-speed outlier; the episode's summary (dropped frames, the recorder's flag, video problems) at frame 0.

Without ``--save`` / ``--web`` a native Viewer window opens (it needs a display); ``--save`` alone writes the
file to open later with ``rerun FILE.rrd``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_description.errors import UserError

SYNC_PATH = "audit/sync_error_ms"


def _frames_u8(x) -> np.ndarray:
    """A LeRobot image (C, H, W) float in [0, 1] (torch or numpy) -> (H, W, 3) uint8."""
    a = np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = np.moveaxis(a, 0, -1)
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)


def episode_flags(root: Path, episode: int) -> tuple[dict, dict[int, list[str]], dict[str, np.ndarray]]:
    """(the audit of ``episode`` as ``ate_policy inspect`` computes it, {frame: [flag text]}, {stream: sync error
    ms per frame})."""
    from ate_policy.data import inspect as audit
    from ate_policy.recording import durable

    info, fr = audit.load_frames(root)
    sel = fr["episode_index"] == episode
    if not sel.any():
        eps = sorted(int(e) for e in np.unique(fr["episode_index"]))
        raise UserError(f"{root} has no episode {episode}; it has {eps[0]}..{eps[-1]}" if eps else
                        f"{root} has no episodes")
    side = durable.read_sidecar(root)
    max_age_ms = side.get(episode, {}).get("max_age_ms", 1000.0 / info["fps"])
    ep = {k: v[sel] for k, v in fr.items()}
    report = audit.audit_episode(episode, ep, info, side, max_age_ms)
    flags: dict[int, list[str]] = {}
    sync: dict[str, np.ndarray] = {}
    for name, st in report.get("streams", {}).items():
        err = np.asarray(st["errors_ms"], dtype=float)
        sync[name] = err
        for i in np.flatnonzero(err > max_age_ms + 1e-6):
            flags.setdefault(int(i), []).append(f"stale {name}: {err[i]:.0f} ms old (limit {max_age_ms:.0f} ms)")
        cap = ep[contract.CAPTURE_TIME_KEY][:, list(report["streams"]).index(name)]
        for i in np.flatnonzero(np.diff(cap) == 0) + 1:
            flags.setdefault(int(i), []).append(f"repeated {name}: no new frame")
    names = info["features"].get(contract.STATE_KEY, {}).get("names") or []
    lims = audit._limits_for(names)
    if lims is not None and contract.STATE_KEY in ep:
        lim, vmax = lims
        joints = ~np.isnan(lim)
        for key, label in ((contract.STATE_KEY, "state"), (contract.ACTION_KEY, "action")):
            if key in ep:
                for i in np.flatnonzero((np.abs(ep[key][:, joints]) > lim[joints]).any(axis=1)):
                    flags.setdefault(int(i), []).append(f"{label} beyond a joint limit")
        speed = np.abs(np.diff(ep[contract.STATE_KEY], axis=0)) * info["fps"]
        for i in np.flatnonzero((speed[:, joints] > vmax[joints]).any(axis=1)) + 1:
            flags.setdefault(int(i), []).append("joint speed beyond the arm's maximum")
    return report, flags, sync


def log_episode(root: Path, episode: int, logger, max_frames: int | None = None) -> dict:
    """Log ``episode`` of the dataset at ``root`` into ``logger`` (a CellLogger); returns counts."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    import rerun as rr

    report, flags, sync = episode_flags(root, episode)
    ds = LeRobotDataset("local/" + root.name, root=root, episodes=[episode])
    n = len(ds) if max_frames is None else min(len(ds), max_frames)
    summary = (f"episode {episode}: {report['frames']} frames, {report['duration_s']:.1f} s; dropped frames "
               f"{report.get('dropped_frames')}; recorder flag {report.get('flagged') or '-'}; stale ticks "
               f"{report.get('stale_ticks', '-')}; limit outliers {report.get('state_limit_outliers', '-')}; "
               f"velocity outliers {report.get('velocity_outliers', '-')}")
    logger.log_event(0, 0.0, "audit", summary, level="INFO")
    n_flags = 0
    for i in range(n):
        item = ds[i]
        t = float(item["timestamp"])
        images = {c: _frames_u8(item[k]) for c, k in zip(contract.CAMERA_NAMES, contract.IMAGE_KEYS) if k in item}
        state = np.asarray(item[contract.STATE_KEY], dtype=float) if contract.STATE_KEY in item else None
        action = np.asarray(item[contract.ACTION_KEY], dtype=float) if contract.ACTION_KEY in item else None
        effort = np.asarray(item[contract.EFFORT_KEY], dtype=float) if contract.EFFORT_KEY in item else None
        logger.log_tick(i, t, state=state, target=action, wrench=effort, images=images)
        for name, err in sync.items():
            logger.log_scalar(i, t, f"{SYNC_PATH}/{rr.escape_entity_path_part(name)}", float(err[i]))
        for text in flags.get(i, []):
            logger.log_event(i, t, "audit", text)
            n_flags += 1
    return {"frames": n, "flags": n_flags, "report": report}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ate_policy viz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="LeRobot dataset folder (the recorder's or `ate_policy convert`'s output)")
    p.add_argument("--episode", type=int, required=True)
    p.add_argument("--save", default=None, metavar="FILE.rrd", help="write the recording to this file")
    p.add_argument("--web", action="store_true", help="serve a web viewer on localhost instead of a window")
    p.add_argument("--native", action="store_true", help="open a viewer window (the default without --save)")
    p.add_argument("--max-frames", type=int, default=None)
    a = p.parse_args(argv)
    root = Path(a.dataset)
    if not (root / "meta" / "info.json").exists():
        raise UserError(f"{root} is not a LeRobot dataset (no meta/info.json)")
    from ate_policy.viz import CellLogger, VizConfig
    from ate_policy.viz.viewer import start_viewer

    mode = "web" if a.web else ("native" if a.native or not a.save else None)
    viewer = start_viewer(mode) if mode else None
    try:
        lg = CellLogger(f"{root.name} episode {a.episode}", rrd_path=a.save,
                        viewer_url=viewer.grpc_url if viewer else None,
                        config=VizConfig(image_codec="png", drop_when_full=False))
        try:
            out = log_episode(root, a.episode, lg, a.max_frames)
        finally:
            lg.close()
        print(f"episode {a.episode}: {out['frames']} frames, {out['flags']} audit flags"
              + (f" -> {a.save}" if a.save else "") + (f"; web viewer: {viewer.web_url}" if mode == "web" else ""))
        if mode == "web":
            try:
                input("serving the web viewer; press Enter (or Ctrl-C) to stop\n")
            except (EOFError, KeyboardInterrupt):
                pass
    finally:
        if viewer is not None and mode == "web":
            viewer.close()
    return 0
