"""Fixtures of the sim tests: a lockstep cell (physics only unless a test renders)."""

import pytest

pytest.importorskip("mujoco")


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
