"""``ate_policy eval --viz``: each episode becomes a Rerun recording next to the report, read back here with
Rerun's own reader, and the logger never delays the loop that feeds it.

The policy in the eval test is a small deterministic function (the runtime, the sim cell and the drivers'
safety layer are the real ones): it records what it was given and what it returned, so the recording can be
checked against the very frames the runtime saw and the very chunks it planned with."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rerun")
pytest.importorskip("mujoco")

from ate_description import contract  # noqa: E402
from ate_policy.evaluation import evaluate  # noqa: E402
from ate_policy.runtime import load_task  # noqa: E402
from ate_policy.viz import CellLogger, VizConfig  # noqa: E402
from ate_policy.viz.rrd import decode_image, entity_paths, read_rrd, tensor  # noqa: E402

HW = (24, 32)
CHUNK = 10
DELAY = 3


class RecordingPolicy:
    """select_chunk: targets creeping 1 mrad per step from the observed state; remembers every call."""

    image_hw = HW

    def __init__(self):
        self.calls: list[tuple[dict, np.ndarray, np.ndarray]] = []   # (images, stamps, chunk)

    def __call__(self, obs):
        steps = np.arange(CHUNK, dtype=float)[:, None] * 1e-3
        chunk = np.asarray(obs.state, dtype=float)[None, :] + steps
        chunk[:, [7, 15]] = 0.8
        self.calls.append(({k: v.copy() for k, v in obs.images.items()}, dict(obs.stamps_s), chunk))
        return chunk


def test_eval_viz_writes_one_recording_per_episode_matching_the_episode(tmp_path):
    task = load_task("cook_bun", {"runtime": {"warmup_runs": 0, "lockstep_delay_ticks": DELAY,
                                              "queue_threshold_ticks": 4, "blending": {"strategy": "latest"}}})
    policy = RecordingPolicy()
    out = tmp_path / "eval"
    s = evaluate(task, episodes=1, seed=2, output=out, time_limit_s=1.0, policy=policy, progress=False,
                 viz="save")
    ep = s["per_episode"][0]
    assert ep["viz"] == {"rrd": "episode_000.rrd", "dropped": 0}
    assert json.loads((out / "eval.json").read_text())["per_episode"][0]["viz"]["rrd"] == "episode_000.rrd"
    traj = np.load(out / "episode_000.npz")
    n = len(traj["t_s"])
    assert n == ep["ticks"] == 20
    sent = np.flatnonzero(np.all(np.isfinite(traj["action"]), axis=1))

    rrd = out / "episode_000.rrd"
    rows = read_rrd(rrd)
    # cameras and measured joints every tick, targets only on the ticks a target was sent
    for cam in contract.CAMERA_NAMES:
        assert sorted(rows[f"/cameras/{cam}"]["EncodedImage:blob"]) == list(range(n))
    for arm in contract.ARMS:
        sl = contract.arm_slice(arm)
        q = rows[f"/arms/{arm}/q"]["Scalars:scalars"]
        assert sorted(q) == list(range(n))
        np.testing.assert_allclose([q[k] for k in range(n)], traj["q"][:, sl.start:sl.start + 7], atol=1e-6)
        target = rows[f"/arms/{arm}/target"]["Scalars:scalars"]
        assert sorted(target) == list(sent)
        assert sorted(rows[f"/arms/{arm}/wrench/force"]["Scalars:scalars"]) == list(range(n))
        # the robot model follows the measured joints
        assert sorted(rows[f"/cell/joints/{arm}_joint1"]["Transform3D:quaternion"]) == list(range(n))
    # the URDF's geometry is in the recording (static)
    assert any(p.startswith("/cell/") and "visual_geometries" in p for p in entity_paths(rrd))

    # one chunk per request, arriving DELAY ticks after the observation it was computed from
    call_ticks = [int(np.flatnonzero(np.isclose(traj["t_s"], stamps["cam_high"]))[0])
                  for _, stamps, _ in policy.calls]
    merged = [k + DELAY for k in call_ticks if k + DELAY < n]
    assert merged and sorted(rows["/policy/chunk"]["Tensor:data"]) == merged
    assert sorted(rows["/events/chunk"]["TextLog:text"]) == merged
    # the hold while warming up, and its end when the first chunk's targets flow
    assert rows["/events/hold"]["TextLog:text"] == {0: ["hold: warming_up (waiting for the first chunk)"],
                                                    DELAY: [f"resumed after warming_up"]}

    # a frame read back equals the frame the runtime gave the policy; a chunk equals what it planned with
    images, _, chunk = policy.calls[1]
    k0 = call_ticks[1]
    for cam in contract.CAMERA_NAMES:
        np.testing.assert_array_equal(decode_image(rows[f"/cameras/{cam}"]["EncodedImage:blob"][k0]), images[cam])
    # strategy latest: at tick k0 + DELAY the plan is the chunk with its first DELAY actions overtaken
    np.testing.assert_allclose(tensor(rows["/policy/chunk"]["Tensor:data"][k0 + DELAY]), chunk[DELAY:])


def test_a_slow_sink_drops_counted_entries_and_never_blocks_the_caller(tmp_path, monkeypatch):
    gate = threading.Event()
    real = CellLogger._do_tick

    def stalled(self, *a):
        gate.wait(10)
        return real(self, *a)

    monkeypatch.setattr(CellLogger, "_do_tick", stalled)
    lg = CellLogger("drops", rrd_path=tmp_path / "d.rrd", config=VizConfig(queue_size=4, urdf=False))
    img = np.zeros((48, 64, 3), np.uint8)
    t0 = time.perf_counter()
    accepted = [lg.log_tick(k, 0.05 * k, state=np.zeros(16), images={"cam_high": img}) for k in range(50)]
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5                       # 50 calls against a stalled worker: nothing waited
    n_ok = sum(accepted)
    assert 4 <= n_ok <= 5                      # the queue's 4, plus the one the worker may hold already
    assert lg.stats()["dropped"] == 50 - n_ok
    gate.set()
    st = lg.close()
    assert st["logged"]["tick"] == n_ok and st["dropped"] == 50 - n_ok
    rows = read_rrd(tmp_path / "d.rrd")
    assert len(rows["/cameras/cam_high"]["EncodedImage:blob"]) == n_ok
