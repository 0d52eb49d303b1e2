"""Importing this module registers every backend of this package with ``ate_drivers.registry``.

``realman`` / ``omnipicker`` / ``lerobot`` (robot:=real), ``realman_emulated`` / ``omnipicker_emulated`` /
``playback`` (robot:=emulated); ``sim`` comes from ``ate_sim`` through the registry's lazy plugin import.
"""

from ate_drivers import emulated  # noqa: F401  (registers realman_emulated, omnipicker_emulated)
from ate_drivers.arm import realman  # noqa: F401
from ate_drivers.camera import cameras  # noqa: F401
from ate_drivers.gripper import omnipicker  # noqa: F401
