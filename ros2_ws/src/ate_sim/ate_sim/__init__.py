"""The simulated cell: a MuJoCo twin of the dual RM75-6s + OmniPicker + three cameras, behind the driver interfaces.

Importing ``ate_sim`` picks the headless OpenGL backend (EGL on a GPU, OSMesa on CPU) before ``mujoco`` loads.
"""

from ate_sim.render import configure_gl

configure_gl()
