"""``ate_policy viz DATASET --episode N``: one recorded episode as a Rerun recording with the audit's flags on its
timeline (read back with Rerun's own reader)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("rerun")

from ate_description import contract  # noqa: E402
from ate_policy.cli import main  # noqa: E402
from ate_policy.viz.rrd import decode_image, read_rrd  # noqa: E402


def test_an_episode_with_its_audit_flags_in_rerun(demo_data, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "ds"
    shutil.copytree(demo_data["adaptation"], root)
    ep = 1
    # Make frame 5 of the episode a stale cam_high frame (captured 300 ms before its tick) and note the episode in
    # the recorder's sidecar: both must show up at their places.
    data = sorted((root / "data").rglob("*.parquet"))
    t = pq.read_table(data[0])
    cols = t.to_pydict()
    rows = [i for i, e in enumerate(cols["episode_index"]) if e == ep]
    names = json.loads((root / "meta" / "info.json").read_text())["features"][contract.CAPTURE_TIME_KEY]["names"]
    cam = names.index("cam_high")
    cols[contract.CAPTURE_TIME_KEY][rows[5]][cam] = cols["timestamp"][rows[5]] - 0.3
    pq.write_table(pa.Table.from_pydict(cols, schema=t.schema), data[0])
    side = root / "meta" / "ate_episodes.jsonl"
    recs = [json.loads(x) for x in side.read_text().splitlines()] if side.exists() else []
    recs = [r for r in recs if r["episode_index"] != ep] + [{"episode_index": ep, "dropped_frames": 2,
                                                             "flagged": "operator bumped the table"}]
    side.write_text("".join(json.dumps(r) + "\n" for r in recs))

    out = tmp_path / "ep1.rrd"
    assert main(["viz", str(root), "--episode", str(ep), "--save", str(out)]) == 0
    ds = LeRobotDataset("local/demo_dual", root=root, episodes=[ep])
    n = len(ds)
    assert f"episode {ep}: {n} frames" in capsys.readouterr().out

    got = read_rrd(out)
    for c in contract.CAMERA_NAMES:
        assert sorted(got[f"/cameras/{c}"]["EncodedImage:blob"]) == list(range(n))
    state = np.asarray(ds.hf_dataset.with_format("numpy")[contract.STATE_KEY])
    action = np.asarray(ds.hf_dataset.with_format("numpy")[contract.ACTION_KEY])
    for arm in contract.ARMS:
        sl = contract.arm_slice(arm)
        q = got[f"/arms/{arm}/q"]["Scalars:scalars"]
        np.testing.assert_allclose([q[i] for i in range(n)], state[:, sl.start:sl.start + 7], atol=1e-6)
        a = got[f"/arms/{arm}/target"]["Scalars:scalars"]
        np.testing.assert_allclose([a[i] for i in range(n)], action[:, sl.start:sl.start + 7], atol=1e-6)
    # a frame read back is the dataset's decoded frame
    frame = (np.moveaxis(ds[7][contract.IMAGE_KEYS[1]].numpy(), 0, -1) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(decode_image(got["/cameras/cam_left_wrist"]["EncodedImage:blob"][7]), frame)
    # the audit: the stale frame at its tick, the sidecar's note in the summary at tick 0, sync error per tick
    audit = got["/events/audit"]["TextLog:text"]
    assert any(x.startswith("stale cam_high: 300 ms old") for x in audit[5]), audit.get(5)
    assert not any(x.startswith("stale cam_high") for k, v in audit.items() if k != 5 for x in v)
    assert "dropped frames 2" in audit[0][0] and "operator bumped the table" in audit[0][0]
    sync = got["/audit/sync_error_ms/cam_high"]["Scalars:scalars"]
    assert sorted(sync) == list(range(n)) and sync[5] == [pytest.approx(300.0, abs=1.0)]


def test_a_missing_episode_is_a_one_line_error(demo_data, capsys):
    assert main(["viz", str(demo_data["adaptation"]), "--episode", "99", "--save", "/tmp/never.rrd"]) == 2
    err = capsys.readouterr().err
    assert "has no episode 99" in err and "Traceback" not in err
