"""Crash-safe commits of LeRobot episodes: after ``save_episode`` returns, a ``kill -9`` loses nothing saved.

Why this exists: LeRobot 0.6.1's writer keeps parquet writers open across episodes (the file footer is written
only by ``finalize()``), buffers episode metadata (10 episodes by default), appends each new episode's video to
the previous episode's MP4 by rewriting it, and rewrites ``info.json`` / ``stats.json`` / ``tasks.parquet`` in
place. A process killed mid-recording therefore leaves parquet files without footers and half-written JSON: the
*finished* episodes become unreadable too.

What we do instead, through LeRobot's public API only:

1. every episode is saved and then the dataset is ``finalize()``-d and ``resume()``-d, so each episode lands in
   new data / episode-metadata / video files and no finished file is ever opened for writing again;
2. around the save, a commit journal: the small files LeRobot rewrites in place (``meta/info.json``,
   ``meta/stats.json``, ``meta/tasks.parquet`` and our ``meta/ate_episodes.jsonl``) are copied and the list of
   existing data/video/metadata files is recorded, before anything is touched. ``recover()`` (run when a
   dataset is opened for recording) rolls an interrupted commit back: restores those files and deletes files
   that were not there before. The journal directory appears and disappears by ``os.rename``, which is atomic.

A process crash cannot lose data that reached the kernel; surviving power loss would additionally need
``fsync`` of every file LeRobot writes, which LeRobot does not do.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

JOURNAL = Path("meta") / ".ate_commit"
JOURNAL_TMP = Path("meta") / ".ate_commit.tmp"
SIDECAR = Path("meta") / "ate_episodes.jsonl"
# Files LeRobot rewrites in place on every save (plus our sidecar): restored on rollback.
REWRITTEN = (Path("meta") / "info.json", Path("meta") / "stats.json", Path("meta") / "tasks.parquet", SIDECAR)
# Folders where a save only adds files (given one episode per file): extra files are deleted on rollback.
APPEND_ONLY = ("data", "videos", "meta/episodes")
# Staging LeRobot leaves behind for an unfinished episode (PNG frames, temporary MP4 folders).
STAGING = ("images",)


def _list_files(root: Path) -> list[str]:
    out = []
    for top in APPEND_ONLY:
        d = root / top
        if d.exists():
            out += [str(p.relative_to(root)) for p in d.rglob("*") if p.is_file()]
    return sorted(out)


def begin(root: Path) -> None:
    """Snapshot what a save may change; after this returns the save can be rolled back."""
    root = Path(root)
    tmp, final = root / JOURNAL_TMP, root / JOURNAL
    if final.exists():
        raise RuntimeError(f"{final} exists: an interrupted commit must be recovered first (recover())")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    present = []
    for rel in REWRITTEN:
        if (root / rel).exists():
            shutil.copy2(root / rel, tmp / rel.name)
            present.append(str(rel))
    (tmp / "state.json").write_text(json.dumps({"files": _list_files(root), "rewritten": present}))
    os.replace(tmp, final)  # atomic: the journal is either complete or absent


def end(root: Path) -> None:
    """The save is complete: drop the journal (rename first, so a crash mid-delete leaves no journal)."""
    root = Path(root)
    done = root / "meta" / ".ate_commit.done"
    shutil.rmtree(done, ignore_errors=True)
    os.replace(root / JOURNAL, done)
    shutil.rmtree(done, ignore_errors=True)


def recover(root: Path) -> dict:
    """Bring a dataset back to its last complete commit; returns what was done (for the log)."""
    root = Path(root)
    report = {"rolled_back": False, "removed_files": [], "removed_staging": []}
    shutil.rmtree(root / JOURNAL_TMP, ignore_errors=True)
    shutil.rmtree(root / "meta" / ".ate_commit.done", ignore_errors=True)
    journal = root / JOURNAL
    if journal.exists():
        state = json.loads((journal / "state.json").read_text())
        before = set(state["files"])
        for rel in _list_files(root):
            if rel not in before:
                (root / rel).unlink()
                report["removed_files"].append(rel)
        for rel in REWRITTEN:
            snap = journal / rel.name
            if str(rel) in state["rewritten"]:
                shutil.copy2(snap, root / rel.with_suffix(rel.suffix + ".restore"))
                os.replace(root / rel.with_suffix(rel.suffix + ".restore"), root / rel)
            elif (root / rel).exists():
                (root / rel).unlink()  # did not exist before the interrupted save
        shutil.rmtree(journal)
        report["rolled_back"] = True
    for name in STAGING:
        if (root / name).exists():
            shutil.rmtree(root / name)
            report["removed_staging"].append(name)
    # LeRobot encodes each video into tempfile.mkdtemp(dir=root) before moving it into videos/.
    for p in root.glob("tmp*"):
        if p.is_dir():
            shutil.rmtree(p)
            report["removed_staging"].append(p.name)
    return report


def append_sidecar(root: Path, record: dict) -> None:
    with open(Path(root) / SIDECAR, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_sidecar(root: Path) -> dict[int, dict]:
    """Per-episode recording/conversion records keyed by episode index (empty when there are none)."""
    path = Path(root) / SIDECAR
    out: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                out[int(rec["episode_index"])] = rec
    return out
