"""Backends by name: ``make_arm("sim", arm="left")`` instead of if/else chains in the driver nodes.

A backend module registers its factories with the decorators (``@register_arm("realman")``); a driver node
asks for a backend by the name its config holds. Backends living in other packages (the simulated cell in
``ate_sim``) are imported lazily on first use through ``PLUGIN_MODULES``, so a robot PC without MuJoCo never
imports it and a sim run needs no extra import in the node.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

KINDS = ("arm", "gripper", "camera")

_FACTORIES: dict[str, dict[str, Callable[..., Any]]] = {k: {} for k in KINDS}

# name -> module that registers backends of that name when imported
PLUGIN_MODULES: dict[str, str] = {"sim": "ate_sim.backends"}


def _register(kind: str, name: str):
    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        known = _FACTORIES[kind].get(name)
        if known is not None and known is not factory:
            raise ValueError(f"{kind} backend {name!r} is already registered by {known!r}")
        _FACTORIES[kind][name] = factory
        return factory
    return deco


def register_arm(name: str):
    return _register("arm", name)


def register_gripper(name: str):
    return _register("gripper", name)


def register_camera(name: str):
    return _register("camera", name)


def available(kind: str) -> list[str]:
    """Names registered so far for ``kind`` (plugins not imported yet are not listed)."""
    return sorted(_FACTORIES[kind])


def make(kind: str, name: str, /, **kwargs) -> Any:
    """Build the ``kind`` backend registered as ``name`` with the factory's keyword arguments.

    ``name`` is positional-only so that factories can take a ``name`` keyword of their own (camera names)."""
    if kind not in KINDS:
        raise ValueError(f"unknown backend kind {kind!r}; expected one of {KINDS}")
    if name not in _FACTORIES[kind] and name in PLUGIN_MODULES:
        try:
            importlib.import_module(PLUGIN_MODULES[name])
        except ImportError as e:
            raise ValueError(f"{kind} backend {name!r} needs {PLUGIN_MODULES[name]}, which cannot be "
                             f"imported here: {e}") from e
    try:
        factory = _FACTORIES[kind][name]
    except KeyError:
        raise ValueError(f"unknown {kind} backend {name!r}; registered: {available(kind)}") from None
    return factory(**kwargs)


def make_arm(name: str, /, **kwargs) -> Any:
    return make("arm", name, **kwargs)


def make_gripper(name: str, /, **kwargs) -> Any:
    return make("gripper", name, **kwargs)


def make_camera(name: str, /, **kwargs) -> Any:
    return make("camera", name, **kwargs)
