"""Headless GL choice: an explicit MUJOCO_GL wins, and a machine that cannot render gets an error naming the fix."""

import ctypes.util

import pytest

from ate_sim import render


def test_explicit_mujoco_gl_is_kept(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert render.configure_gl() == "osmesa"


def test_no_gl_library_means_no_backend(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert render.configure_gl() is None


def test_render_failure_names_the_fix(cell, monkeypatch):
    import mujoco

    def no_context(*a, **k):
        raise RuntimeError("cannot create an OpenGL context")

    monkeypatch.setattr(mujoco, "Renderer", no_context)
    with pytest.raises(RuntimeError, match="libosmesa6.*MUJOCO_GL=egl"):
        cell.render("cam_high", (32, 32))
    # Physics needs no GL at all.
    assert cell.step(0.1) > 0


def test_image_size_beyond_the_offscreen_buffer_is_refused(cell):
    with pytest.raises(ValueError, match="max_image_hw"):
        cell.render("cam_high", (2000, 2000))
