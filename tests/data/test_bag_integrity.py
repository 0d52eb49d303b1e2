"""Damaged and malformed bags: checksums verified, losses counted, one clear line, never partial output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ate_data_testkit import H, TASK, W, chunk_offsets, rechunk_mcap_with_crcs, write_bag

from ate_description import contract
from ate_policy import cli
from ate_policy.data import convert

NO_CHECKSUMS = "no checksums: integrity not verifiable"  # the warning the issue asks for, word for word


def run_cli(tmp_path, bag, capsys, *extra) -> tuple[int, str, Path, str]:
    out = tmp_path / "ds"
    rc = cli.main(["convert", str(bag), "--output", str(out), "--task", TASK, *extra,
                   "--config", str(small_config(tmp_path))])
    cap = capsys.readouterr()
    return rc, cap.err, out, cap.out


def small_config(tmp_path, **over) -> Path:
    import yaml

    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump({"task": TASK, "image_height": H, "image_width": W, **over}))
    return path


def assert_one_clear_line(rc, err, out, *needles):
    assert rc == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def flip_bytes_inside_chunk(bag, chunk_no: int) -> None:
    f = next(Path(bag).glob("*.mcap"))
    start, length = chunk_offsets(bag)[chunk_no]
    data = bytearray(f.read_bytes())
    mid = start + length // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    f.write_bytes(bytes(data))


def test_a_chunk_whose_crc_fails_is_a_clear_error_or_skipped_and_counted(tmp_path, capsys):
    bag = tmp_path / "bag"
    write_bag(bag, "mcap", seconds=2.0, seed=7)
    per_chunk = rechunk_mcap_with_crcs(bag)
    assert len(per_chunk) >= 5
    clean = tmp_path / "clean"
    shutil.copytree(bag, clean)
    damaged = len(per_chunk) // 2
    flip_bytes_inside_chunk(bag, damaged)

    rc, err, out, _ = run_cli(tmp_path, bag, capsys)
    assert_one_clear_line(rc, err, out, f"chunk {damaged + 1}", "CRC", "--skip-corrupt")

    assert cli.main(["convert", str(bag), "--output", str(out), "--task", TASK, "--skip-corrupt",
                     "--config", str(small_config(tmp_path))]) == 0
    record = json.loads((out / convert.CONVERSION_RECORD).read_text())
    integ = record["integrity"][str(bag)]
    assert integ["checksums"] == "verified" and integ["chunks"] == len(per_chunk)
    assert len(integ["corrupt_chunks"]) == 1
    assert integ["lost_messages"] == per_chunk[damaged]          # counted independently from the clean file
    assert any("left out" in w for w in record["warnings"])
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/ate_dual_bags", root=out)
    assert len(ds) > 20 and ds[len(ds) - 1][contract.STATE_KEY].shape == (16,)
    # the undamaged copy of the same bag converts with every checksum verified and nothing lost
    ok = convert.convert_bags([clean], tmp_path / "clean_ds", small_config(tmp_path))
    integ = json.loads((ok / convert.CONVERSION_RECORD).read_text())["integrity"][str(clean)]
    assert integ["checksums"] == "verified" and integ["lost_messages"] == {} and integ["warnings"] == []


def test_a_bag_without_checksums_converts_with_the_warning_recorded(tmp_path, capsys):
    bag = tmp_path / "bag"
    write_bag(bag, "mcap", seconds=1.0)          # rosbags' MCAP writer stores CRC 0 ("none")
    rc, err, out, printed = run_cli(tmp_path, bag, capsys)
    assert rc == 0 and f"warning: {bag}: {NO_CHECKSUMS}" in printed
    record = json.loads((out / convert.CONVERSION_RECORD).read_text())
    assert record["integrity"][str(bag)]["checksums"] == "none"
    assert f"{bag}: {NO_CHECKSUMS}" in record["warnings"]


def _damage_sqlite(bag: Path) -> None:
    db = next(bag.glob("*.db3"))
    data = bytearray(db.read_bytes())
    page = 4096
    # zero a page in the middle of the file (a btree page of the messages table)
    mid = (len(data) // page // 2) * page
    data[mid:mid + page] = bytes(page)
    db.write_bytes(bytes(data))


def _wrong_type(tmp_path, bag):
    write_bag(bag, "mcap", seconds=0.5)
    return {"topics": {"joint_states": {"left": "/left/wrench", "right": "/right/joint_states"}}}


def _bad_image(tmp_path, bag):
    """A camera message whose data is shorter than height x step says."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    src = tmp_path / "src"
    write_bag(src, "mcap", seconds=0.5)
    from rosbags.highlevel import AnyReader

    ts = get_typestore(Stores.ROS2_KILTED)
    with AnyReader([src], default_typestore=ts) as r, Writer(bag, version=9) as w:
        conns = {c.topic: w.add_connection(c.topic, c.msgtype, typestore=ts) for c in r.connections}
        for c, t, raw in r.messages():
            if c.topic == "/cameras/cam_high/image_raw":
                msg = r.deserialize(raw, c.msgtype)
                msg.data = msg.data[: len(msg.data) // 2]
                raw = ts.serialize_cdr(msg, c.msgtype)
            w.write(conns[c.topic], t, raw)
    return {}


def _bad_metadata(tmp_path, bag):
    write_bag(bag, "mcap", seconds=0.5)
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, mapping]\n")
    return {}


def _nan_state(tmp_path, bag):
    import ate_data_testkit as kit

    real = kit.state_at
    kit.state_at = lambda t: np.full(16, np.nan, np.float32)
    try:
        write_bag(bag, "sqlite3", seconds=0.5)
    finally:
        kit.state_at = real
    return {}


def _damaged_sqlite(tmp_path, bag):
    write_bag(bag, "sqlite3", seconds=1.0)
    _damage_sqlite(bag)
    return {}


@pytest.mark.parametrize("make, needles", [
    (_wrong_type, ["/left/wrench", "geometry_msgs/msg/WrenchStamped", "joint_states:left"]),
    (_bad_image, ["/cameras/cam_high/image_raw", "malformed"]),
    (_bad_metadata, ["metadata.yaml"]),
    (_nan_state, ["non-finite"]),
    (_damaged_sqlite, ["bag ", "corrupt"]),
], ids=["wrong_message_type", "short_image_data", "broken_metadata", "nan_joint_values", "damaged_sqlite"])
def test_every_malformed_bag_is_one_clear_line_and_no_output(tmp_path, capsys, make, needles):
    bag = tmp_path / "bag"
    over = make(tmp_path, bag)
    out = tmp_path / "ds"
    rc = cli.main(["convert", str(bag), "--output", str(out), "--task", TASK,
                   "--config", str(small_config(tmp_path, **over))])
    assert_one_clear_line(rc, capsys.readouterr().err, out, *needles)
