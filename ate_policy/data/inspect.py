"""``ate_policy inspect DATASET``: audit a LeRobot dataset before training on it.

Per episode: length, per-stream sync error (p50 / p95 / max of nominal tick time - real capture time, from
``observation.capture_time``), stale ticks (sync error beyond the freshness limit), repeated frames (a stream
that delivered nothing new for a tick), frames the recorder dropped (from ``meta/ate_episodes.jsonl``),
joint-limit and joint-velocity outliers (limits and speeds of ``ate_description.contract``), and gripper usage.
Prints a summary table; writes ``audit.json`` and PNG plots (joint trajectories per episode, sync error
histogram per stream) into ``<DATASET>_inspect/`` beside the dataset (``--plots DIR`` to choose).

Videos are checked too (``--no-video-check`` skips it): per episode and camera, the frames in the episode's
``[from_timestamp, to_timestamp)`` span of its MP4 against the episode's rows (packets counted, no decoding), the
first and last frame of the span decoded, codec and pixel format. A video that lost a frame is flagged (and fails
``--strict``): loading such an episode would raise ``IndexError`` in training.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from ate_description import contract
from ate_description.errors import UserError
from ate_policy.recording import durable, verify
from ate_policy.recording.sync import age_summary

GRIPPER_CLOSED_BELOW = 0.5  # opening fraction under which the gripper counts as closed


def load_frames(root: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """info.json and the non-video columns of every frame (numpy), without decoding any video."""
    import pyarrow.parquet as pq

    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.exists():
        raise UserError(f"{root} is not a LeRobot dataset (no meta/info.json)")
    info = json.loads(info_path.read_text())
    files = sorted((root / "data").rglob("*.parquet"))
    if not files:
        raise UserError(f"{root} has no data files (no saved episode?)")
    cols = ["episode_index", "frame_index", "timestamp"] + [
        k for k, ft in info["features"].items() if ft["dtype"] not in ("video", "image", "string")
        and k not in ("episode_index", "frame_index", "timestamp", "index", "task_index")]
    tables = []
    for f in files:
        try:
            t = pq.read_table(f)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{f} cannot be read ({e}); if a recording crashed, re-open the dataset with the "
                            "recorder (it rolls back the interrupted episode)") from e
        tables.append(t.select([c for c in cols if c in t.column_names]))
    import pyarrow as pa

    table = pa.concat_tables(tables)
    out = {}
    for c in table.column_names:
        col = table.column(c).to_pylist() if isinstance(table.column(c).type, pa.ListType) or \
            isinstance(table.column(c).type, pa.FixedSizeListType) else table.column(c).to_numpy()
        out[c] = np.asarray(col, dtype=np.float64 if c not in ("episode_index", "frame_index") else np.int64)
    order = np.lexsort((out["frame_index"], out["episode_index"]))
    return info, {k: v[order] for k, v in out.items()}


def _limits_for(names: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Joint limit and max speed per dim (NaN for grippers), when the names are the contract's."""
    if list(names) != list(contract.STATE_NAMES):
        return None
    lim = np.full(len(names), np.nan)
    vel = np.full(len(names), np.nan)
    for arm in contract.ARMS:
        sl = contract.arm_slice(arm)
        lim[sl.start:sl.start + 7] = contract.JOINT_LIMITS_RAD
        vel[sl.start:sl.start + 7] = contract.JOINT_MAX_SPEED_RAD_S
    return lim, vel


def audit_episode(ep: int, fr: dict[str, np.ndarray], info: dict, side: dict, max_age_ms: float) -> dict:
    fps = info["fps"]
    n = len(fr["frame_index"])
    out: dict = {"episode_index": ep, "frames": n, "duration_s": n / fps}
    feats = info["features"]
    if contract.CAPTURE_TIME_KEY in fr:
        names = feats[contract.CAPTURE_TIME_KEY].get("names") or [str(i) for i in range(fr[contract.CAPTURE_TIME_KEY].shape[1])]
        nominal = fr["timestamp"]
        streams = {}
        for j, name in enumerate(names):
            cap = fr[contract.CAPTURE_TIME_KEY][:, j]
            err = nominal - cap
            streams[name] = {**age_summary(err), "stale_ticks": int(np.sum(err * 1e3 > max_age_ms + 1e-6)),
                             "repeated": int(np.sum(np.diff(cap) == 0)), "errors_ms": (err * 1e3).tolist()}
        out["streams"] = streams
        out["stale_ticks"] = int(np.sum(np.any([(nominal - fr[contract.CAPTURE_TIME_KEY][:, j]) * 1e3 >
                                                 max_age_ms + 1e-6 for j in range(len(names))], axis=0)))
    rec = side.get(ep, {})
    out["dropped_frames"] = rec.get("dropped_frames")
    out["flagged"] = rec.get("flagged")
    state_names = feats.get(contract.STATE_KEY, {}).get("names") or []
    lims = _limits_for(state_names)
    if lims is not None and contract.STATE_KEY in fr:
        lim, vmax = lims
        joints = ~np.isnan(lim)
        for key, label in ((contract.STATE_KEY, "state"), (contract.ACTION_KEY, "action")):
            if key in fr:
                over = np.abs(fr[key][:, joints]) > lim[joints]
                out[f"{label}_limit_outliers"] = int(over.any(axis=1).sum())
        q = fr[contract.STATE_KEY]
        speed = np.abs(np.diff(q, axis=0)) * fps
        out["velocity_outliers"] = int((speed[:, joints] > vmax[joints]).any(axis=1).sum()) if n > 1 else 0
        grip = {}
        for arm in contract.ARMS:
            g = q[:, contract.arm_slice(arm).stop - 1]
            closed = g < GRIPPER_CLOSED_BELOW
            grip[arm] = {"min": float(g.min()), "max": float(g.max()), "closed_share": float(closed.mean()),
                         "closes": int(np.sum(~closed[:-1] & closed[1:]))}
        out["gripper"] = grip
    return out


def episode_video_segments(root: Path, info: dict) -> dict[int, dict]:
    """meta/episodes rows (video chunk/file/span per camera) keyed by episode index."""
    import pyarrow.parquet as pq

    rows: dict[int, dict] = {}
    for f in sorted((Path(root) / "meta" / "episodes").rglob("*.parquet")):
        try:
            t = pq.read_table(f)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{f} cannot be read ({e})") from e
        cols = [c for c in t.column_names if c.startswith("videos/") or c in ("episode_index", "length")]
        for r in t.select(cols).to_pylist():
            rows[int(r["episode_index"])] = r
    return rows


def audit_videos(root: Path, info: dict, ep: int, rows: int, meta_row: dict | None, decode: bool = True) -> dict:
    """Per camera: frames in the episode's span vs its rows, first/last frame decodable, codec, pixel format."""
    keys = [k for k, ft in info["features"].items() if ft["dtype"] == "video"]
    out = {}
    for key in keys:
        cam = key.rsplit(".", 1)[-1]
        if meta_row is None or f"videos/{key}/chunk_index" not in meta_row:
            out[cam] = {"frames": 0, "expected": rows, "ok": False, "problems": ["no video metadata for the episode"]}
            continue
        (chunk, file, t0, t1), = verify.episode_segments(meta_row, [key]).values()
        path = verify.video_path(root, info["video_path"], key, chunk, file)
        res = verify.check_segment(path, t0, t1, info["fps"], rows, decode=decode).to_dict()
        if Path(res["path"]).is_relative_to(root):
            res["path"] = str(Path(res["path"]).relative_to(root))
        out[cam] = res
    return out


def audit(root: Path, check_videos: bool = True) -> dict:
    root = Path(root)
    info, fr = load_frames(root)
    side = durable.read_sidecar(root)
    default_age = 1000.0 / info["fps"]
    segments = episode_video_segments(root, info) if check_videos else {}
    episodes = []
    for ep in np.unique(fr["episode_index"]):
        sel = fr["episode_index"] == ep
        max_age = side.get(int(ep), {}).get("max_age_ms", default_age)
        e = audit_episode(int(ep), {k: v[sel] for k, v in fr.items()}, info, side, max_age)
        if check_videos and info.get("video_path"):
            e["videos"] = audit_videos(root, info, int(ep), int(sel.sum()), segments.get(int(ep)))
            e["video_problems"] = {c: v["problems"] for c, v in e["videos"].items() if not v["ok"]}
        episodes.append(e)
    return {"dataset": str(root), "fps": info["fps"], "robot_type": info.get("robot_type"),
            "total_episodes": info["total_episodes"], "total_frames": info["total_frames"], "episodes": episodes,
            "_frames": fr, "_info": info}


def _fmt(x, spec=".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _video_cell(e: dict) -> str:
    if "videos" not in e:
        return "-"
    bad = e["video_problems"]
    if not bad:
        return "ok"
    return "BAD " + ",".join(f"{cam}:{v['frames']}/{v['expected']}" for cam, v in e["videos"].items() if not v["ok"])


def table(report: dict) -> str:
    eps = report["episodes"]
    streams = list(eps[0].get("streams", {})) if eps else []
    head = ["ep", "frames", "sec"] + [f"{s} p50/p95/max ms" for s in streams] + \
        ["stale", "repeat", "dropped", "lim", "vel", "grip L/R closes", "video", "flag"]
    rows = []
    for e in eps:
        st = e.get("streams", {})
        g = e.get("gripper")
        rows.append([str(e["episode_index"]), str(e["frames"]), _fmt(e["duration_s"])] +
                    [f"{_fmt(st[s]['p50_ms'])}/{_fmt(st[s]['p95_ms'])}/{_fmt(st[s]['max_ms'])}" for s in streams] +
                    [_fmt(e.get("stale_ticks"), "d"),
                     _fmt(sum(v["repeated"] for v in st.values()) if st else None, "d"),
                     _fmt(e.get("dropped_frames"), "d"),
                     _fmt((e.get("state_limit_outliers") or 0) + (e.get("action_limit_outliers") or 0)
                          if "state_limit_outliers" in e else None, "d"),
                     _fmt(e.get("velocity_outliers"), "d"),
                     f"{g['left']['closes']}/{g['right']['closes']}" if g else "-",
                     _video_cell(e),
                     {True: "FLAGGED", False: "", None: "?"}[e.get("flagged")]])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def plot(report: dict, out_dir: Path, max_episode_plots: int = 10) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fr, info = report["_frames"], report["_info"]
    names = info["features"].get(contract.STATE_KEY, {}).get("names") or []
    written = []
    for e in report["episodes"][:max_episode_plots]:
        ep = e["episode_index"]
        sel = fr["episode_index"] == ep
        if contract.STATE_KEY not in fr:
            break
        q, t = fr[contract.STATE_KEY][sel], fr["timestamp"][sel]
        groups = [(arm, contract.arm_slice(arm)) for arm in contract.ARMS] if names == contract.STATE_NAMES \
            else [("state", slice(0, q.shape[1]))]
        fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3.2 * len(groups)), sharex=True, squeeze=False)
        for ax, (label, sl) in zip(axes[:, 0], groups):
            for i in range(sl.start, sl.stop):
                ax.plot(t, q[:, i], label=names[i] if names else str(i), lw=1)
                if contract.ACTION_KEY in fr:
                    ax.plot(t, fr[contract.ACTION_KEY][sel][:, i], lw=0.6, ls="--", color=ax.lines[-1].get_color())
            ax.set_ylabel(f"{label} [rad | 0..1]")
            ax.legend(fontsize=6, ncol=4, loc="upper right")
        axes[-1, 0].set_xlabel("time [s] (solid: state, dashed: action)")
        fig.suptitle(f"episode {ep}: joint trajectories")
        fig.tight_layout()
        path = out_dir / f"joints_episode_{ep:03d}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    eps = [e for e in report["episodes"] if "streams" in e]
    if eps:
        streams = list(eps[0]["streams"])
        fig, axes = plt.subplots(1, len(streams), figsize=(3.5 * len(streams), 3), squeeze=False)
        for ax, s in zip(axes[0], streams):
            err = np.concatenate([e["streams"][s]["errors_ms"] for e in eps])
            ax.hist(err, bins=40, color="tab:blue")
            ax.axvline(1000.0 / report["fps"], color="tab:red", ls="--", lw=1, label="one period")
            ax.set_title(s, fontsize=9)
            ax.set_xlabel("tick - capture [ms]")
        axes[0, 0].set_ylabel("ticks")
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "sync_error_hist.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def public(report: dict) -> dict:
    """The report without per-tick arrays: what audit.json holds."""
    eps = []
    for e in report["episodes"]:
        e = dict(e)
        if "streams" in e:
            e["streams"] = {k: {kk: vv for kk, vv in v.items() if kk != "errors_ms"} for k, v in e["streams"].items()}
        eps.append(e)
    return {**{k: v for k, v in report.items() if not k.startswith("_")}, "episodes": eps}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ate_policy inspect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="LeRobot dataset folder")
    p.add_argument("--plots", type=Path, default=None, help="where PNGs + audit.json go (default <DATASET>_inspect)")
    p.add_argument("--max-episode-plots", type=int, default=10, help="joint-trajectory plots for the first N episodes")
    p.add_argument("--no-plots", action="store_true", help="only the table and audit.json")
    p.add_argument("--no-video-check", action="store_true",
                   help="skip the video check (frames per episode and camera, first/last frame decodable)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when an episode is flagged, has limit/velocity outliers, dropped frames or a video "
                        "that does not hold its frames")
    args = p.parse_args(argv)
    root = args.dataset
    report = audit(root, check_videos=not args.no_video_check)
    out_dir = args.plots or root.parent / f"{root.name}_inspect"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "audit.json").write_text(json.dumps(public(report), indent=1))
    print(f"{root}: {report['total_episodes']} episodes, {report['total_frames']} frames at {report['fps']} Hz "
          f"({report['robot_type']})")
    print(table(report))
    written = [] if args.no_plots else plot(report, out_dir, args.max_episode_plots)
    print(f"audit.json{' and ' + str(len(written)) + ' plots' if written else ''} in {out_dir}")
    for e in report["episodes"]:
        for cam, problems in (e.get("video_problems") or {}).items():
            print(f"episode {e['episode_index']} {cam}: video {'; '.join(problems)}", file=sys.stderr)
    if args.strict:
        bad = [e["episode_index"] for e in report["episodes"]
               if e.get("flagged") or e.get("dropped_frames") or e.get("velocity_outliers")
               or e.get("state_limit_outliers") or e.get("action_limit_outliers") or e.get("video_problems")]
        if bad:
            print(f"strict: episodes {bad} need a look", file=sys.stderr)
            return 1
    return 0

