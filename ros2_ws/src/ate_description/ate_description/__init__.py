"""The bottom layer of the stack: the robot description and the facts every other package shares.

* ``contract``: the data contract and the robot's fixed facts (joint names and limits, the DH table, cameras, rates);
* ``kinematics``: FK, Jacobian, IK and pose-vector conventions of the RM75-6s, derived from the DH table;
* ``urdf``: the cell's URDF (both arms on their calibrated bases, grippers, flange and camera frames);
* ``calibration``: the calibration YAML's schema and loader (placements, wrist rotations, cameras, grippers);
* ``limits``: the safety limits (drivers.yaml's ``safety`` section) every commanding module reads;
* ``config``: the one config system (typed dataclasses from YAML through draccus) and where config files live;
* ``errors``: ``UserError``, the one-line error every command line reports without a traceback.

Dependency-light: numpy, PyYAML and draccus; Pinocchio only when a Pinocchio model is asked for. Nothing here
imports another package of the project (docs/architecture.md shows the layers).
"""

__version__ = "0.1.0"
