"""Seeing the cell: Rerun recordings of the policy, the teleop and evaluation episodes (docs/visualization.md).

``CellLogger`` (cell_logger.py) logs off the control path through a bounded queue; ``RuntimeViz``
(runtime_viz.py) turns the policy runtime's ticks into its entries; ``start_viewer`` (viewer.py) runs a native
or web viewer as its own process; ``read_rrd`` (rrd.py) reads a recording back with Rerun's own reader;
dataset.py is ``ate_policy viz DATASET --episode N``. rerun-sdk is imported only when a logger is made.
"""

from ate_policy.viz.cell_logger import CellLogger, VizConfig

__all__ = ["CellLogger", "VizConfig"]
