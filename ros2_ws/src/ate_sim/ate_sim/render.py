"""Headless OpenGL for MuJoCo: EGL on a GPU machine, OSMesa on CPU, chosen before ``mujoco`` is imported.

MuJoCo's Python bindings read ``MUJOCO_GL`` once, when ``mujoco`` is first imported, so the choice has to be
made by the first ``ate_sim`` import. An explicit ``MUJOCO_GL`` always wins.
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import sys

_CHOSEN: str | None = None
_REASON = ""


def _has_gpu() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*") or glob.glob("/dev/dri/renderD*"))


def configure_gl() -> str | None:
    """Set ``MUJOCO_GL`` (if unset) to a backend that can work here; returns it, or None when none can."""
    global _CHOSEN, _REASON
    if os.environ.get("MUJOCO_GL"):
        _CHOSEN = os.environ["MUJOCO_GL"]
        _REASON = "set by the environment"
        return _CHOSEN
    late = "mujoco" in sys.modules
    if late and "OpenGL" in sys.modules:
        # Too late to choose: PyOpenGL already bound its platform (a window system) for this process.
        _REASON = "mujoco and PyOpenGL were imported before ate_sim with MUJOCO_GL unset"
        return None
    egl = ctypes.util.find_library("EGL")
    osmesa = ctypes.util.find_library("OSMesa")
    if _has_gpu() and egl:
        _CHOSEN, _REASON = "egl", "GPU device and libEGL found"
    elif osmesa:
        _CHOSEN, _REASON = "osmesa", "no GPU device (or no libEGL): CPU rendering through libOSMesa"
    else:
        _REASON = "neither a GPU with libEGL nor libOSMesa was found"
        return None
    os.environ["MUJOCO_GL"] = _CHOSEN
    if _CHOSEN == "osmesa":
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    elif _CHOSEN == "egl":
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    if late:
        # mujoco was imported first (e.g. by a test's importorskip) and chose the windowed default; its
        # renderer looks the context class up at construction, so re-reading the choice is enough.
        import importlib

        from mujoco.rendering.classic import gl_context

        importlib.reload(gl_context)
    return _CHOSEN


def gl_backend() -> str | None:
    return _CHOSEN


def render_error(exc: BaseException) -> RuntimeError:
    """A clear error for a renderer that cannot start, naming what was tried and how to fix it."""
    return RuntimeError(
        f"MuJoCo cannot render offscreen (MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r}; {_REASON}): {exc}. "
        "On a CPU machine install libosmesa6 (scripts/setup.sh does) and use MUJOCO_GL=osmesa; on a GPU machine "
        "install libegl1 and use MUJOCO_GL=egl; set MUJOCO_GL before anything imports mujoco. Physics-only use "
        "(no cameras) works without any of this.")
