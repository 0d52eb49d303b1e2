"""Suite-wide settings: nothing downloads, third-party chatter is quiet, and demo datasets are made once."""

import os
import sys
from pathlib import Path

# Tests never reach a hub: every model is tiny and randomly initialised, every dataset is made here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("SVT_LOG", "1")
sys.path.insert(0, str(Path(__file__).parent))  # tests/ros_testkit.py, shared by the ROS integration tests

import random  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _quiet():
    from ate_policy.quiet import quiet_libraries

    quiet_libraries()


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """Small demo datasets (dual-arm 16-dim with 3 cameras + 7-dim pre-training), written once per session."""
    from ate_policy.data.demo import DemoSpec, write_demo_data

    spec = DemoSpec(episodes=4, frames=40, pretrain_episodes=8, pretrain_frames=60, image_hw=(24, 32), seed=0)
    return write_demo_data(tmp_path_factory.mktemp("demo_data"), spec)


@pytest.fixture(scope="module")
def ros_env():
    """A DDS domain of its own for one test module's ROS graph, discovery kept on this machine."""
    env = {"ROS_DOMAIN_ID": str(random.randint(1, 100)), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
