"""Fixtures of the sim tests: a lockstep cell (physics only unless a test renders)."""

import importlib.util

import pytest

# Without MuJoCo (the `sim` extra) there is no cell to test; find_spec does not import it, so ate_sim still
# gets to choose the GL backend before mujoco loads.
if importlib.util.find_spec("mujoco") is None or importlib.util.find_spec("ate_sim") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def cell():
    from ate_sim.cell import SimCell

    c = SimCell(task=None, seed=0, clock="lockstep")
    yield c
    c.close()


@pytest.fixture
def task_cell():
    from ate_sim.cell import SimCell

    c = SimCell(task="cook_bun", seed=0, clock="lockstep")
    yield c
    c.close()
