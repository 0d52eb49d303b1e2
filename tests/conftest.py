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
import re  # noqa: E402

import pytest  # noqa: E402


def pytest_report_header(config):
    """The descriptors the run starts with: the in-process RealMan SDK loses every reply on a socket numbered
    >= 1024, so a suite that inherits (or leaks) about a thousand fails its driver tests (docs/drivers.md)."""
    if os.path.isdir("/proc/self/fd"):
        return f"open file descriptors at start: {len(os.listdir('/proc/self/fd'))}"
    return None


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


# --- CI: a skip for a missing required dependency is a failure ---------------------------------------------------------
# Outside CI a test whose library is missing skips (a robot PC without the sim, a laptop without ROS). In CI (CI=true,
# which .ci/run sets) scripts/setup.sh has installed every extra, so such a skip means a broken install and fails the
# run: only the optional dependencies named here may skip there.
OPTIONAL_DEPENDENCIES = {
    "wandb": "Weights & Biases logging (the [wandb] extra): optional, no test needs it",
}
_MISSING_DEPENDENCY = (re.compile(r"could not import '([\w.]+)'"),  # pytest.importorskip
                       re.compile(r"^([\w.-]+) is not installed"))  # pytest.skip("<tool> is not installed ...")


def _required_but_missing(report) -> str | None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return None
    longrepr = report.longrepr
    reason = str(longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr)
    for pattern in _MISSING_DEPENDENCY:
        m = pattern.search(reason.removeprefix("Skipped: "))
        if m and m.group(1).split(".")[0] not in OPTIONAL_DEPENDENCIES:
            return reason
    return None


def _fail_in_ci(report) -> None:
    reason = _required_but_missing(report)
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = (f"a required dependency is missing in CI ({reason}); only "
                           f"{', '.join(OPTIONAL_DEPENDENCIES)} may skip (tests/conftest.py OPTIONAL_DEPENDENCIES)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a module-level importorskip skips the whole module at collection
    _fail_in_ci(outcome.get_result())
