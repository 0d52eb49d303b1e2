"""Reading rosbag2 bags (MCAP, sqlite3) with their integrity checked: what the converter reads messages through.

``rosbags`` (pure Python, no ROS install) reads the bag's metadata, connections and message definitions and
deserialises messages. The bytes underneath are checked first:

* **MCAP**: messages are read with the ``mcap`` library chunk by chunk, and every chunk that carries a CRC is
  verified. A chunk whose CRC fails is a clear error, or, with ``skip_corrupt``, skipped with its messages
  counted as lost (from the message index that follows the chunk). Chunks written without a CRC (``rosbags``'
  MCAP writer stores CRC 0, "none") cannot be verified by anyone: the bag converts with the warning
  ``NO_CHECKSUMS`` that the converter records in ``meta/ate_conversion.json``.
* **sqlite3**: SQLite's own ``PRAGMA integrity_check`` on every database file before reading.

Message order: per file in storage order (MCAP chunks as written). Callers that need time order sort by time;
two passes over one bag see the messages of a topic in the same order, so a message's ordinal identifies it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import yaml

from ate_description.errors import UserError

NO_CHECKSUMS = "no checksums: integrity not verifiable"


def bag_error(bag: Path, e: BaseException) -> UserError:
    return UserError(f"bag {bag} cannot be read: it is truncated or corrupt ({type(e).__name__}: {e}). "
                     "Re-copy it, or re-index an interrupted recording with `ros2 bag reindex`")


@dataclass
class Integrity:
    """What could be checked about one bag's bytes (goes to meta/ate_conversion.json)."""

    storage: str
    checksums: str = "n/a"                 # verified | none | partial (MCAP); sqlite_integrity_check (sqlite3)
    chunks: int = 0
    chunks_with_crc: int = 0
    corrupt_chunks: list[dict] = field(default_factory=list)
    lost_messages: dict[str, int] = field(default_factory=dict)   # topic -> messages in skipped chunks
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(vars(self))


def _metadata(bag: Path) -> dict:
    try:
        meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return {"storage": str(meta["storage_identifier"]),
                "files": [bag / Path(p).name for p in meta["relative_file_paths"]]}
    except Exception as e:  # noqa: BLE001  (any malformed metadata is the same answer for the user)
        raise UserError(f"bag {bag}: metadata.yaml is not a valid rosbag2 description ({type(e).__name__}: {e})") \
            from e


class BagSource:
    """An open bag: ``connections`` (rosbags), ``messages(conns)``, ``deserialize``; see the module doc."""

    def __init__(self, bag: Path, skip_corrupt: bool = False):
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        self.bag, self.skip_corrupt = Path(bag), skip_corrupt
        if not self.bag.exists():
            raise UserError(f"bag {bag} does not exist")
        if not (self.bag / "metadata.yaml").exists():
            raise UserError(f"{bag} is not a rosbag2 folder (no metadata.yaml)")
        meta = _metadata(self.bag)
        self.storage, self.files = meta["storage"], meta["files"]
        if self.storage not in ("mcap", "sqlite3"):
            raise UserError(f"bag {bag}: storage {self.storage!r} is not supported (mcap, sqlite3)")
        missing = [str(f) for f in self.files if not f.exists()]
        if missing:
            raise UserError(f"bag {bag}: files listed in metadata.yaml are missing: {missing}")
        self.integrity = Integrity(self.storage)
        if self.storage == "sqlite3":
            self._sqlite_check()
        try:
            self.reader = AnyReader([self.bag], default_typestore=get_typestore(Stores.ROS2_KILTED))
            self.reader.open()
        except Exception as e:  # noqa: BLE001  (rosbags raises several types for broken files)
            raise bag_error(self.bag, e) from e
        self.connections = list(self.reader.connections)
        self.start_s = self.reader.start_time * 1e-9

    def close(self) -> None:
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def deserialize(self, raw: bytes, msgtype: str):
        return self.reader.deserialize(raw, msgtype)

    # ---- sqlite3 ---------------------------------------------------------------------------------------------
    def _sqlite_check(self) -> None:
        for db in self.files:
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                try:
                    rows = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
                finally:
                    con.close()
            except sqlite3.DatabaseError as e:
                raise bag_error(self.bag, e) from e
            if rows != ["ok"]:
                raise UserError(f"bag {self.bag}: {db.name} fails SQLite's integrity check "
                                f"({'; '.join(rows[:3])}): the file is corrupt. Re-copy it; a damaged database "
                                "cannot be converted safely")
        self.integrity.checksums = "sqlite_integrity_check"

    # ---- messages --------------------------------------------------------------------------------------------
    def messages(self, connections) -> Iterator[tuple[object, int, bytes]]:
        """(connection, log time ns, raw CDR) of the given connections."""
        if self.storage == "sqlite3":
            try:
                yield from self.reader.messages(connections=connections)
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001
                raise bag_error(self.bag, e) from e
            return
        by_topic = {c.topic: c for c in connections}
        self.integrity = Integrity(self.storage)   # counted afresh by each pass
        for path in self.files:
            yield from self._mcap_messages(path, by_topic)
        integ = self.integrity
        if integ.chunks and integ.chunks_with_crc == 0:
            integ.checksums = "none"
            integ.warnings.append(NO_CHECKSUMS)
        elif integ.chunks_with_crc < integ.chunks:
            integ.checksums = "partial"
            integ.warnings.append(f"{integ.chunks - integ.chunks_with_crc} of {integ.chunks} chunks carry no "
                                  "checksum: their integrity is not verifiable")
        else:
            integ.checksums = "verified"

    def _mcap_messages(self, path: Path, by_topic: dict) -> Iterator[tuple[object, int, bytes]]:
        from mcap.records import Channel, Chunk, Message, MessageIndex
        from mcap.stream_reader import CRCValidationError, StreamReader, breakup_chunk

        channels: dict[int, str] = {}
        skipped_chunk = False  # the message indexes right after a skipped chunk count what it held
        integ = self.integrity
        try:
            with open(path, "rb") as f:
                for rec in StreamReader(f, emit_chunks=True, validate_crcs=False).records:
                    if isinstance(rec, Channel):
                        channels[rec.id] = rec.topic
                    elif isinstance(rec, Message):
                        conn = by_topic.get(channels.get(rec.channel_id))
                        if conn is not None:
                            yield conn, rec.log_time, rec.data
                    elif isinstance(rec, Chunk):
                        integ.chunks += 1
                        integ.chunks_with_crc += bool(rec.uncompressed_crc)
                        skipped_chunk = False
                        try:
                            inner = breakup_chunk(rec, validate_crc=True)
                        except CRCValidationError as e:
                            skipped_chunk = self._corrupt(path, rec, f"fails its CRC check ({e})")
                            continue
                        except Exception as e:  # noqa: BLE001  (undecodable data: damaged, CRC or not)
                            why = f"cannot be decoded ({type(e).__name__}: {e})"
                            skipped_chunk = self._corrupt(path, rec, why)
                            continue
                        for r in inner:
                            if isinstance(r, Channel):
                                channels[r.id] = r.topic
                            elif isinstance(r, Message):
                                conn = by_topic.get(channels.get(r.channel_id))
                                if conn is not None:
                                    yield conn, r.log_time, r.data
                    elif isinstance(rec, MessageIndex) and skipped_chunk:
                        topic = channels.get(rec.channel_id, f"channel {rec.channel_id}")
                        integ.lost_messages[topic] = integ.lost_messages.get(topic, 0) + len(rec.records)
                        integ.corrupt_chunks[-1]["messages"] += len(rec.records)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001  (broken record framing, truncation: nothing to skip to)
            raise bag_error(self.bag, e) from e

    def _corrupt(self, path: Path, chunk, why: str) -> bool:
        n = self.integrity.chunks
        where = (f"chunk {n} of {path.name} (messages logged {chunk.message_start_time * 1e-9:.3f}-"
                 f"{chunk.message_end_time * 1e-9:.3f} s)")
        if not self.skip_corrupt:
            raise UserError(f"bag {self.bag}: {where} {why}: the file is damaged. Re-copy it, or convert with "
                            "--skip-corrupt to leave that chunk's messages out (counted in "
                            "meta/ate_conversion.json)")
        self.integrity.corrupt_chunks.append({"file": path.name, "chunk": n, "reason": why, "messages": 0,
                                              "log_time_s": [chunk.message_start_time * 1e-9,
                                                             chunk.message_end_time * 1e-9]})
        return True
