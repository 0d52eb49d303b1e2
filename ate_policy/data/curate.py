"""``ate_policy dataset delete|merge``: LeRobot's dataset editor on our datasets, our per-episode records kept.

The curation loop: ``ate_policy inspect DATASET`` finds the episodes to drop (flagged: stale streams, dropped or
repeated frames, a damaged video) -> ``ate_policy dataset delete DATASET --flagged`` (or ``--episodes 3 7``) ->
``ate_policy dataset merge DAY1 DAY2 ... --output ALL`` joins datasets recorded on different days.

Both run LeRobot's own editor (``lerobot.datasets.dataset_tools.delete_episodes`` / ``merge_datasets``, what
``lerobot-edit-dataset`` runs) and then carry our sidecar ``meta/ate_episodes.jsonl`` (sync statistics, drops,
repeats, flags; keyed by episode index) along: LeRobot renumbers episodes and knows nothing of the sidecar, so a
plain ``lerobot-edit-dataset`` leaves the result without it. Each record keeps where it came from (``origin``).
LeRobot refuses to merge datasets whose videos use different codecs (an ``h264`` day and an ``av1`` day), so a
source in another codec than the first is first re-encoded to the first's codec, in a temporary copy, with
LeRobot's ``reencode_dataset`` (``lerobot-edit-dataset --operation.type reencode_videos``); the sources themselves
are never modified. The result's videos are checked
(every episode's frames, first/last frame decodable) before the command reports success; an output that fails
the check is removed.

LeRobot's aggregation (behind ``merge_datasets`` and the parallel sim demonstrations' shard merge) copies each
source's ``meta/episodes/chunk_index`` / ``file_index`` into the merged episode table instead of naming the file
each row lands in; a merged dataset then fails its next merge (``FileNotFoundError`` on a
``meta/episodes/.../file-NNN.parquet`` that does not exist). ``fix_episode_meta_index`` rewrites those two columns
to where the rows are, on every merge's output; a source written before that is merged through a scratch copy of
its ``meta/`` (``with_fixed_meta_index``), so it is still never modified.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

from ate_description.errors import UserError
from ate_policy.recording import durable

log = logging.getLogger(__name__)

_META_INDEX = ("meta/episodes/chunk_index", "meta/episodes/file_index")
_EPISODES_FILE = re.compile(r"chunk-(\d+)/file-(\d+)\.parquet$")


def _episode_meta_files(root: Path) -> list[tuple[Path, int, int]]:
    out = []
    for f in sorted((Path(root) / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        m = _EPISODES_FILE.search(f.as_posix())
        if m:
            out.append((f, int(m.group(1)), int(m.group(2))))
    return out


def _misplaced(table, chunk: int, file: int) -> list[bool]:
    """Per row of an episodes table read from ``chunk-<chunk>/file-<file>.parquet``: does its index name another
    file? (No row does in a table without the index columns.)"""
    if not all(k in table.column_names for k in _META_INDEX):
        return [False] * len(table)
    pairs = zip(table.column(_META_INDEX[0]).to_pylist(), table.column(_META_INDEX[1]).to_pylist())
    return [pair != (chunk, file) for pair in pairs]


def episode_meta_index_errors(root: Path) -> list[int]:
    """Episodes whose ``meta/episodes/{chunk,file}_index`` does not name the file that holds their row."""
    import pyarrow.parquet as pq

    bad = []
    for f, chunk, file in _episode_meta_files(root):
        t = pq.read_table(f)
        bad += [e for e, wrong in zip(t.column("episode_index").to_pylist(), _misplaced(t, chunk, file)) if wrong]
    return sorted(bad)


def fix_episode_meta_index(root: Path) -> int:
    """Rewrite each episode's ``meta/episodes/{chunk,file}_index`` to the file its row is in (each file replaced
    atomically); returns how many episodes were wrong."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fixed = 0
    for f, chunk, file in _episode_meta_files(root):
        t = pq.read_table(f)
        wrong = sum(_misplaced(t, chunk, file))
        if not wrong:
            continue
        fixed += wrong
        for k, v in zip(_META_INDEX, (chunk, file)):
            col = t.schema.get_field_index(k)
            t = t.set_column(col, t.schema.field(col), pa.array([v] * len(t), t.schema.field(col).type))
        tmp = f.with_name(f.name + ".tmp")
        pq.write_table(t, tmp)
        os.replace(tmp, f)
    return fixed


def with_fixed_meta_index(root: Path, scratch: Path) -> Path:
    """``root`` itself when its episode table's file index is right, else ``scratch``: links to its data and
    videos with a copy of its ``meta/``, fixed (``root`` is never modified)."""
    root = Path(root)
    if not episode_meta_index_errors(root):
        return root
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for child in root.iterdir():
        if child.name != "meta":
            (scratch / child.name).symlink_to(child.resolve(), target_is_directory=child.is_dir())
    shutil.copytree(root / "meta", scratch / "meta")
    n = fix_episode_meta_index(scratch)
    log.info("%s: %d episode(s) of its metadata named the wrong file (an earlier LeRobot merge); merged through a "
             "fixed copy of its meta/ in %s", root, n, scratch)
    return scratch


def _open(root: Path, repo_id: str | None = None):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    info = root / "meta" / "info.json"
    if not info.exists():
        raise UserError(f"{root} is not a LeRobot dataset (no meta/info.json)")
    return LeRobotDataset(repo_id or f"local/{root.name}", root=root)


def _check_output(output: Path) -> None:
    if output.exists():
        raise UserError(f"{output} exists; choose a new --output (the sources are never modified)")


def _video_codecs(root: Path) -> set[str]:
    info = json.loads((Path(root) / "meta" / "info.json").read_text())
    return {str((ft.get("info") or {}).get("video.codec")) for ft in info["features"].values()
            if ft.get("dtype") == "video"}


def _write_sidecar(root: Path, records: list[dict]) -> None:
    path = Path(root) / durable.SIDECAR
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _verify_or_remove(output: Path) -> dict:
    """Video check of every episode of the edited dataset; on a problem the output is removed."""
    from ate_policy.data.inspect import audit

    try:
        rep = audit(output)
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)
        raise
    bad = {e["episode_index"]: e["video_problems"] for e in rep["episodes"] if e.get("video_problems")}
    if bad:
        shutil.rmtree(output, ignore_errors=True)
        raise UserError(f"the edited dataset's videos do not hold their episodes ({bad}); nothing was written")
    return rep


def _reencode(root: Path, codec: str):
    """Re-encode a dataset's videos in place (a copy) with ``codec`` through LeRobot's ``reencode_dataset``."""
    from lerobot.configs import RGBEncoderConfig
    from lerobot.datasets.dataset_tools import reencode_dataset

    # info.json names codecs as the stream reports them; the encoder of each (x264's fastest preset for h264)
    encoder = {"h264": ("h264", "ultrafast"), "hevc": ("hevc", "ultrafast"), "av1": ("libsvtav1", None)}.get(codec)
    if encoder is None:
        raise UserError(f"cannot re-encode to {codec!r} for the merge (h264, hevc or av1)")
    return reencode_dataset(_open(root), rgb_encoder=RGBEncoderConfig(vcodec=encoder[0], preset=encoder[1]))


def flagged_episodes(root: Path) -> list[int]:
    """Episodes our sidecar flags (stale streams, dropped/repeated frames, damaged video)."""
    return sorted(i for i, r in durable.read_sidecar(root).items() if r.get("flagged"))


def delete_episodes(root: Path, episodes: list[int], output: Path, repo_id: str | None = None) -> Path:
    """LeRobot's ``delete_episodes`` into ``output``; the sidecar follows the renumbered episodes."""
    from lerobot.datasets.dataset_tools import delete_episodes as lr_delete

    root, output = Path(root), Path(output)
    _check_output(output)
    ds = _open(root)
    n = ds.meta.total_episodes
    bad = sorted(set(episodes) - set(range(n)))
    if not episodes:
        raise UserError("no episodes to delete")
    if bad:
        raise UserError(f"episodes {bad} do not exist in {root} (it has 0..{n - 1})")
    if set(range(n)) <= set(episodes):
        raise UserError("cannot delete every episode")
    lr_delete(ds, sorted(set(episodes)), output_dir=output, repo_id=repo_id or f"local/{output.name}")
    side = durable.read_sidecar(root)
    kept = [i for i in range(n) if i not in set(episodes)]
    records = []
    for new, old in enumerate(kept):
        if old in side:
            records.append({**side[old], "episode_index": new,
                            "origin": side[old].get("origin") or {"dataset": str(root), "episode_index": old}})
    _write_sidecar(output, records)
    _verify_or_remove(output)
    return output


def merge(roots: list[Path], output: Path, repo_id: str | None = None) -> Path:
    """LeRobot's ``merge_datasets`` of ``roots`` (in order) into ``output``; sidecars concatenated, renumbered."""
    from lerobot.datasets.dataset_tools import merge_datasets

    roots, output = [Path(r) for r in roots], Path(output)
    if len(roots) < 2:
        raise UserError("merge needs at least two datasets")
    _check_output(output)
    # sources merged before (by LeRobot) go through a fixed copy of their meta/
    sources = [with_fixed_meta_index(r, output.with_name(f"{output.name}.meta_fixed_{i}"))
               for i, r in enumerate(roots)]
    temps = [s for s, r in zip(sources, roots) if s != r]
    try:
        datasets = [_open(s, f"local/{r.name}") for s, r in zip(sources, roots)]
        fps = {d.meta.fps for d in datasets}
        if len(fps) > 1:
            raise UserError(f"cannot merge datasets of different rates {sorted(fps)} Hz")
        target = _video_codecs(roots[0])
        for i, root in enumerate(sources):
            if _video_codecs(root) != target and len(target) == 1:
                copy = output.with_name(f"{output.name}.reencode_{i}")
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(root, copy)
                temps.append(copy)
                datasets[i] = _reencode(copy, next(iter(target)))
        merge_datasets(datasets, output_repo_id=repo_id or f"local/{output.name}", output_dir=output)
        fix_episode_meta_index(output)
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)
        raise
    finally:
        for t in temps:
            shutil.rmtree(t, ignore_errors=True)
    records, offset = [], 0
    for root, ds in zip(roots, datasets):
        side = durable.read_sidecar(root)
        for old in range(ds.meta.total_episodes):
            if old in side:
                records.append({**side[old], "episode_index": offset + old,
                                "origin": side[old].get("origin") or {"dataset": str(root), "episode_index": old}})
        offset += ds.meta.total_episodes
    _write_sidecar(output, records)
    _verify_or_remove(output)
    return output


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ate_policy dataset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="op", required=True)
    d = sub.add_parser("delete", help="copy a dataset without some episodes (LeRobot's delete_episodes)")
    d.add_argument("dataset", type=Path)
    d.add_argument("--episodes", type=int, nargs="*", default=[], help="episode indices to delete")
    d.add_argument("--flagged", action="store_true", help="also delete every episode our sidecar flags")
    d.add_argument("--output", type=Path, required=True)
    m = sub.add_parser("merge", help="join datasets (LeRobot's merge_datasets), e.g. recorded on different days")
    m.add_argument("datasets", type=Path, nargs="+")
    m.add_argument("--output", type=Path, required=True)
    args = p.parse_args(argv)
    if args.op == "delete":
        eps = sorted(set(args.episodes) | (set(flagged_episodes(args.dataset)) if args.flagged else set()))
        out = delete_episodes(args.dataset, eps, args.output)
        print(f"{out}: {args.dataset} without episodes {eps}; videos verified, sidecar renumbered")
    else:
        out = merge(args.datasets, args.output)
        print(f"{out}: {len(args.datasets)} datasets merged; videos verified, sidecars renumbered")
    print("audit it with: ate_policy inspect", out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
