"""A known-good policy closes the loop: sim demonstrations recorded in parallel and resumed, then replayed through
``ate_policy eval`` (the deployment runtime, its inference delay and chunk merging, the drivers' safety layer and the
cell supervisor) on the seed each was recorded with: the replay succeeds with no refusal. Then a policy learned from
such demonstrations (the shipped lift_lid one) does the task on scenes it never saw.

The tests are slow (sim demonstrations: ~20-60 s each on 2 CPU cores, more under load)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("lerobot")

from ate_description import contract  # noqa: E402

HW = (48, 64)


def _table(root):
    import glob

    import pyarrow.parquet as pq

    rows = {}
    for f in sorted(glob.glob(str(root / "data" / "*" / "*.parquet"))):
        t = pq.read_table(f).to_pydict()
        for i in range(len(t["index"])):
            rows[(t["episode_index"][i], t["frame_index"][i])] = (np.asarray(t[contract.STATE_KEY][i]),
                                                                 np.asarray(t[contract.ACTION_KEY][i]))
    return rows


def _sidecar(root):
    recs = [json.loads(x) for x in (root / "meta" / "ate_episodes.jsonl").read_text().splitlines() if x.strip()]
    return sorted((r["episode_index"], r["seed"], r["frames"]) for r in recs)


def test_an_object_below_the_table_top_ends_the_episode_and_each_failure_has_a_reason(task_cell):
    from ate_policy.sim_eval import default_time_limit_s, outcome
    from ate_sim import scenes

    scene = task_cell.scene
    task_cell.step(0.1)
    assert scene.unrecoverable(task_cell) == ""
    scenes._set_free(task_cell, "lid", (0.9, 0.0, -0.2))   # beyond the table's front edge, below its top
    task_cell.step(0.05)
    assert scene.unrecoverable(task_cell) == "lid dropped off the table"
    assert outcome(True, None, "") == {"outcome": "success", "failure": None}
    assert outcome(False, {"reason": "refusal on arm/left"}, "") == {"outcome": "held",
                                                                      "failure": "safety hold: refusal on arm/left"}
    assert outcome(False, None, "bun dropped off the table")["outcome"] == "dropped"
    assert outcome(False, None, "")["outcome"] == "timeout"
    # the default limit: twice the demonstrator's duration (cook_bun 23.3 s), not the task YAML's 120 s
    assert default_time_limit_s(scene) == pytest.approx(46.6)


@pytest.fixture(scope="module")
def parallel_demos(tmp_path_factory):
    from ate_policy.data.sim_demos import record_sim_demos

    out = tmp_path_factory.mktemp("parallel")
    return record_sim_demos("pick_bun", out, episodes=2, image_hw=HW, seed=0, workers=2)


@pytest.mark.slow
def test_parallel_workers_write_the_episodes_one_worker_writes_and_a_rerun_adds_only_missing_ones(
        parallel_demos, tmp_path, monkeypatch):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from ate_policy.data.sim_demos import record_sim_demos

    one = record_sim_demos("pick_bun", tmp_path, episodes=1, image_hw=HW, seed=0)
    resumed = record_sim_demos("pick_bun", tmp_path, episodes=2, image_hw=HW, seed=0)   # resume: adds one
    assert one["attempts"] == 1 and resumed["resumed_with"] == 1 and resumed["attempts"] == 1
    assert record_sim_demos("pick_bun", tmp_path, episodes=2, image_hw=HW, seed=0)["attempts"] == 0
    par, seq = parallel_demos["root"], resumed["root"]
    assert _sidecar(par) == _sidecar(seq) and [s for _, s, _ in _sidecar(par)] == [0, 1]
    a, b = _table(par), _table(seq)
    assert a.keys() == b.keys()
    for key in a:   # the same physics, the same recorded numbers
        np.testing.assert_array_equal(a[key][0], b[key][0])
        np.testing.assert_array_equal(a[key][1], b[key][1])
    # the merged dataset loads with LeRobot, videos included, to the last frame of the last episode
    ds = LeRobotDataset("local/sim_pick_bun", root=par)
    assert ds.meta.total_episodes == 2 and ds.meta.total_frames == len(a)
    last = ds[len(ds) - 1]
    assert last["episode_index"] == 1 and tuple(last["observation.images.cam_high"].shape) == (3, *HW)
    # the second episode's observations move (the recorder's clock continues across episodes)
    states = np.stack([s for (e, _), (s, _) in sorted(a.items()) if e == 1])
    assert np.ptp(states[:, :7], axis=0).max() > 0.3

    # Merging a merged dataset again (a parallel resume, `ate_policy dataset merge`): LeRobot's aggregation copies
    # each source's metadata file index instead of naming the file each episode's row lands in; the sequential
    # dataset keeps its two episodes in two metadata files, so its merge named a file the result does not have,
    # and the next merge failed with FileNotFoundError.
    import shutil

    from ate_policy.data.curate import episode_meta_index_errors, merge
    from ate_policy.data.sim_demos import merge_datasets

    merged = tmp_path / "merged" / "sim_pick_bun"
    shutil.copytree(seq, tmp_path / "copy")
    merge_datasets([tmp_path / "copy"], [par], merged)     # 2 + 2 episodes, as a parallel resume merges
    assert episode_meta_index_errors(merged) == []
    again = merge([merged, par], tmp_path / "again")       # 4 + 2
    assert [s for _, s, _ in _sidecar(again)] == [0, 1, 0, 1, 0, 1]
    ds = LeRobotDataset("local/again", root=again)
    assert ds.meta.total_episodes == 6 and ds[len(ds) - 1]["episode_index"] == 5
    # a dataset merged before the fix (the broken index written back) still merges, and is left as it was
    broken = tmp_path / "broken"
    shutil.copytree(merged, broken)
    import pyarrow as pa
    import pyarrow.parquet as pq

    for f in (broken / "meta" / "episodes").glob("*/*.parquet"):
        t = pq.read_table(f)
        col = t.schema.get_field_index("meta/episodes/file_index")
        t = t.set_column(col, t.schema.field(col), pa.array(range(len(t)), t.schema.field(col).type))
        pq.write_table(t, f)
    before = episode_meta_index_errors(broken)
    assert before, "the test must start from a broken index"
    assert LeRobotDataset("local/again2", root=merge([broken, par], tmp_path / "again2")).meta.total_episodes == 6
    assert episode_meta_index_errors(broken) == before
    # a merge that fails late (the disk fills while the sidecar is written) leaves the dataset as it was and no
    # scratch folders behind
    import ate_policy.recording.durable as durable

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    before_files = sorted(p.relative_to(merged) for p in merged.rglob("*"))
    monkeypatch.setattr(durable, "append_sidecar", disk_full)
    with pytest.raises(OSError, match="No space"):
        merge_datasets([merged], [par], merged)
    assert sorted(p.relative_to(merged) for p in merged.rglob("*")) == before_files
    assert sorted(p.name for p in merged.parent.iterdir()) == ["sim_pick_bun"]


@pytest.mark.slow
def test_a_demonstration_replayed_through_eval_on_its_seed_succeeds_with_no_refusal(parallel_demos, tmp_path):
    from ate_policy.evaluation import evaluate
    from ate_policy.runtime import load_task
    from ate_policy.runtime.replay import ReplayPolicy
    from ate_sim.scenes import make_scene

    policy = ReplayPolicy.from_dataset(parallel_demos["root"], mode="matched")
    s = evaluate(load_task("pick_bun"), episodes=1, seed=1, output=tmp_path / "replay", image_hw=HW,
                 policy=policy, progress=False, videos=1)
    ep = s["per_episode"][0]
    assert ep["success"] and ep["outcome"] == "success" and ep["failure"] is None
    assert ep["safety_refusals"] == {} and ep["held"] is None and ep["missed_ticks"] == 0
    assert policy.selected == [{"seed": 1, "episode_index": 1, "recorded_seed": 1}]
    # it passed every stage of the task, which the report lists
    names = [n for n, _ in make_scene("pick_bun").stages()]
    assert ep["stages"] == names and s["stages_reached"] == dict.fromkeys(names, 1)
    assert "Stages reached" in (tmp_path / "replay" / "report.md").read_text()
    # the gripper was first commanded closed with the TCP over the lid (its first grasp), as demonstrated
    fc = ep["first_close"]["left"]
    assert fc["object"] == "lid" and np.hypot(*np.subtract(fc["tcp_m"][:2], fc["object_m"][:2])) < 0.01
    # it ended on success, well inside the default limit (2x the demonstrator's duration)
    assert ep["episode_time_s"] < s["time_limit_s"] / 1.5
    assert (tmp_path / "replay" / "episode_000.mp4").stat().st_size > 1000
    assert "episode_000.mp4" in (tmp_path / "replay" / "report.md").read_text()


@pytest.mark.slow
def test_the_shipped_sim_trained_policy_does_the_task_on_unseen_scenes_and_the_same_network_untrained_does_not(
        tmp_path):
    """A policy learned by this stack closes the loop: the shipped tiny PI0 (trained on 50 lift_lid demonstrations,
    seeds 0-49, by benchmarks/sim_success.py) sets the lid aside on at least 2 of the unseen scenes 1000-1002
    through ``ate_policy eval`` (the runtime, the drivers' safety layer, the cell supervisor), without a refusal;
    the same network with freshly initialised weights (same config, same normalisation) on none. Training one
    within the test is out of its time budget on this CPU (docs/sim_success.md)."""
    import shutil

    import torch
    from lerobot.policies.pi0.configuration_pi0 import PI0Config

    from ate_policy.evaluation import evaluate
    from ate_policy.policies.pi0_ate import PI0ATEPolicy
    from ate_policy.policies.tiny import tiny_pi0_patches
    from ate_policy.quickstart import SIM_POLICY
    from ate_policy.runtime import load_task

    device = {"device": "cpu", "dtype": "float32", "compile": False}

    def evaluated(ckpt, episodes):
        task = load_task("lift_lid", {"checkpoint": str(ckpt), "device": device})
        return evaluate(task, episodes=episodes, seed=1000, output=tmp_path / ckpt.name, progress=False, videos=0)

    s = evaluated(SIM_POLICY, 3)
    assert s["successes"] >= 2, [(e["seed"], e["outcome"], e["failure"]) for e in s["per_episode"]]
    assert s["safety_refusals"] == {} and s["missed_ticks"] == 0 and s["held_episodes"] == 0
    untrained = tmp_path / "untrained"
    shutil.copytree(SIM_POLICY, untrained)
    with tiny_pi0_patches():
        torch.manual_seed(0)
        PI0ATEPolicy(PI0Config.from_pretrained(SIM_POLICY)).save_pretrained(untrained)
    assert evaluated(untrained, 1)["successes"] == 0


SHIPPED = {
    # the wide tiny PI0 trained here on 50 pick_bun demonstrations (17/20 on the unseen scenes 1000-1019): the whole
    # task, lid aside, bun onto the plate, lid back
    "pick_bun": "sim_pick_bun_pi0",
    # the cook_bun policy trained here (11/20 on 1000-1019; it did all three of 1000-1002 there): the whole deploy
    # task, bun handed over onto the plate, lid off the steamer, bun into it, lid back
    "cook_bun": "sim_cook_bun_pi0",
}


@pytest.mark.slow
@pytest.mark.parametrize("task_name", sorted(SHIPPED))
def test_a_shipped_policy_does_its_whole_task_on_unseen_scenes(task_name, tmp_path):
    """Each shipped sim policy (docs/sim_success.md) does its whole task on at least 2 of the unseen scenes
    1000-1002 through ``ate_policy eval``, without a refusal or a hold: the shipped folder loads with its own
    tokenizer and network shape from wherever it lies."""
    from pathlib import Path

    import ate_policy
    from ate_policy.evaluation import evaluate
    from ate_policy.runtime import load_task

    ckpt = Path(ate_policy.__file__).parent / "checkpoints" / SHIPPED[task_name]
    task = load_task(task_name, {"checkpoint": str(ckpt),
                                 "device": {"device": "cpu", "dtype": "float32", "compile": False}})
    s = evaluate(task, episodes=3, seed=1000, output=tmp_path, progress=False, videos=0)
    assert s["successes"] >= 2, [(e["seed"], e["outcome"], e["failure"], e["stages"]) for e in s["per_episode"]]
    assert s["safety_refusals"] == {} and s["held_episodes"] == 0


FINE_TUNE_STEPS = 400


@pytest.mark.slow
def test_a_policy_fine_tuned_inside_the_test_on_five_demonstrations_does_the_new_task_on_their_seeds(tmp_path):
    """Learning, inside the test: the shipped lift_lid policy sets the lid down at lift_lid's aside place, so on
    lid_aside_far (that place moved 8.6 cm) it succeeds on none of the seeds; ``ate_policy train`` fine-tunes it
    for FINE_TUNE_STEPS steps on 5 scripted lid_aside_far demonstrations (seeds 0-4), and through ``ate_policy
    eval`` the result puts the lid at the new place in at least 3 of those 5 scenes, with no refusal. ~4 min on 2
    CPU cores (training a policy from fresh weights to that point takes ~12 min here: docs/sim_success.md)."""
    import subprocess
    import sys

    from ate_policy.data.sim_demos import record_sim_demos
    from ate_policy.evaluation import evaluate
    from ate_policy.quickstart import SIM_POLICY
    from ate_policy.runtime import load_task

    device = {"device": "cpu", "dtype": "float32", "compile": False}

    def evaluated(ckpt, episodes, name):
        task = load_task("lid_aside_far", {"checkpoint": str(ckpt), "device": device})
        return evaluate(task, episodes=episodes, seed=0, output=tmp_path / name, progress=False, videos=0)

    before = evaluated(SIM_POLICY, 2, "before")
    assert before["successes"] == 0, [(e["seed"], e["outcome"]) for e in before["per_episode"]]
    demos = record_sim_demos("lid_aside_far", tmp_path / "demos", 5, HW, seed=0, workers=2)
    assert [e["seed"] for e in demos["episodes"]] == [0, 1, 2, 3, 4]
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "ate_policy.cli", "train", "--config", "train_sim_lift_lid_pi0",
                    f"--dataset.root={demos['root']}", "--dataset.repo_id=local/sim_lid_aside_far",
                    f"--output_dir={run}", f"--policy.pretrained_path={SIM_POLICY}", f"--steps={FINE_TUNE_STEPS}",
                    f"--save_every={FINE_TUNE_STEPS}", "--policy_optim.lr=5e-4"], check=True)
    after = evaluated(run / "policy" / "checkpoints" / "last" / "pretrained_model", 5, "after")
    assert after["successes"] >= 3, [(e["seed"], e["outcome"], e["failure"]) for e in after["per_episode"]]
    assert after["safety_refusals"] == {} and after["held_episodes"] == 0


def _sim_success_module():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "sim_success", Path(__file__).resolve().parents[2] / "benchmarks" / "sim_success.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_evaluation_scenes_that_the_demonstrations_used_are_refused():
    """A run once evaluated on its own demonstrations' seeds (the defaults were 1000 for demos, 0 for eval, and a
    resumed dataset keeps its seeds 0..): the defaults are now apart, and an overlap stops before evaluating."""
    mod = _sim_success_module()
    mod.check_unseen(list(range(40)), 1000, 20)
    mod.check_unseen([0, 1, 3], 2, 1)
    with pytest.raises(SystemExit, match=r"include seeds the demonstrations were recorded with \(\[0, 1, 2, 3, 4\] "):
        mod.check_unseen(list(range(40)), 0, 20)
    with pytest.raises(SystemExit, match=r"\(\[39\]\)"):
        mod.check_unseen(list(range(40)), 39, 20)


def test_a_continued_run_records_the_training_its_weights_had_been_through(tmp_path):
    """sim_success.py --init-from: the entry names the checkpoint with its run's steps up to it and their summed
    step times, and, when that run itself started from a checkpoint, that one in turn (a chain of continued runs)."""
    import yaml

    mod = _sim_success_module()

    def run(name, steps, step_s, init=None):   # a training run's layout as ate_policy train writes it
        d = tmp_path / name
        ckpt = d / "policy" / "checkpoints" / f"{steps // 2:08d}" / "pretrained_model"
        ckpt.mkdir(parents=True)
        (d / "policy" / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": s, "loss": 0.1, "step_time_s": step_s}) + "\n" for s in range(1, steps + 1)))
        config = {"policy": {"type": "pi0", "pretrained_path": init}}
        (ckpt / "ate_train_config.yaml").write_text(yaml.safe_dump(config))
        return ckpt

    first = run("first", 10, 0.5)
    second = run("second", 8, 0.25, init=str(first))
    got = mod.init_provenance(str(second))
    assert got == {"checkpoint": str(second), "steps": 4, "train_step_time_total_s": 1.0,
                   "init_from": {"checkpoint": str(first), "steps": 5, "train_step_time_total_s": 2.5}}
    assert mod.init_provenance(None) is None
    # a shipped policy (sim_success.py --ship) as the start: what its provenance.json says made it
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "provenance.json").write_text(json.dumps({
        "recipe": "r", "train_steps": 4, "lr": 3e-4, "train_step_time_total_s": 1.0, "success_rate": 0.75,
        "demo_seeds": [0, 1], "init_from": got}))
    (shipped / "ate_train_config.yaml").write_text(yaml.safe_dump({"policy": {"pretrained_path": "/elsewhere"}}))
    assert mod.init_provenance(str(shipped)) == {
        "checkpoint": str(shipped), "recipe": "r", "steps": 4, "lr": 3e-4, "train_step_time_total_s": 1.0,
        "success_rate": 0.75, "init_from": got}
