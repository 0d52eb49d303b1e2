"""``viz:=true`` in the policy and teleop nodes: a viewer process (``viz_mode``: native | web) and a
``CellLogger`` streaming to it, fed once per control tick with what the node already has. Pure Python (no
rclpy): the nodes call ``tick(...)`` from their tick callback and ``close()`` when they end.

``viz_mode``: ``native`` opens a Rerun Viewer window (needs a display), ``web`` serves the web viewer on
localhost (its URL is logged), ``off`` logs nothing. ``rrd`` (optional) also saves the recording to a file.
"""

from __future__ import annotations

import logging

import numpy as np

from ate_description import contract
from ate_description.errors import UserError
from ate_policy.viz.cell_logger import CellLogger, VizConfig
from ate_policy.viz.runtime_viz import RuntimeViz

log = logging.getLogger(__name__)

LIVE_MODES = ("native", "web", "off")


class _Live:
    def __init__(self, name: str, mode: str, rrd: str = "", config: VizConfig | None = None, web_port: int = 0,
                 grpc_port: int = 0):
        from ate_policy.viz.viewer import start_viewer

        if mode not in LIVE_MODES:
            raise UserError(f"viz_mode:={mode}: expected one of {', '.join(LIVE_MODES)}")
        self.viewer = None if mode == "off" else start_viewer(mode, grpc_port=grpc_port, web_port=web_port)
        if self.viewer is None and not rrd:
            raise UserError("viz_mode:=off with no viz_rrd file: nothing to log to")
        self.logger = CellLogger(name, rrd_path=rrd or None,
                                 viewer_url=self.viewer.grpc_url if self.viewer else None,
                                 config=config or VizConfig())
        self.k = -1
        self.t_s = 0.0

    @property
    def web_url(self) -> str | None:
        return self.viewer.web_url if self.viewer else None

    def event(self, kind: str, text: str, level: str | None = None) -> None:
        """An event at the latest tick (e-stop, service calls)."""
        self.logger.log_event(max(self.k, 0), self.t_s, kind, text, level)

    def stats(self) -> dict:
        return self.logger.stats()

    def close(self) -> dict:
        st = self.logger.close()
        if self.viewer is not None and self.viewer.mode == "web":
            self.viewer.close()   # a native window stays open for a look at what was logged
        return st


def _wrench(wrenches: dict | None) -> np.ndarray | None:
    if not wrenches or any(wrenches.get(a) is None for a in contract.ARMS):
        return None
    return np.concatenate([np.asarray(wrenches[a], dtype=float).reshape(6) for a in contract.ARMS])


class PolicyViz(_Live):
    """The policy node's view: ``tick(result, obs, wrenches)`` after each ``PolicyRuntime.tick``."""

    def __init__(self, runtime, mode: str, rrd: str = "", name: str = "policy", **kw):
        super().__init__(name, mode, rrd, **kw)
        self.runtime_viz = RuntimeViz(self.logger, runtime)

    def tick(self, res, obs, wrenches: dict | None = None) -> None:
        if res.tick >= 0:
            self.k, self.t_s = res.tick, res.now_s
        self.runtime_viz.on_tick(res, obs, _wrench(wrenches))


class TeleopViz(_Live):
    """The teleop node's view: measured joints, the operators' targets, cameras, wrenches, operator states and
    the recording status (``DualTeleopSession.status()``), the session's event lines."""

    def __init__(self, mode: str, rrd: str = "", name: str = "teleop", **kw):
        super().__init__(name, mode, rrd, **kw)
        self._states: dict[str, str] = {}
        self._recording: bool | None = None

    def tick(self, now_s: float, joints: dict, grippers: dict, wrenches: dict | None, images: dict,
             joint_targets: dict, gripper_targets: dict, status: dict, events=()) -> None:
        self.k += 1
        k, lg = self.k, self.logger
        self.t_s = now_s
        state = np.full(contract.STATE_DIM, np.nan)
        target = np.full(contract.ACTION_DIM, np.nan)
        for arm in contract.ARMS:
            sl = contract.arm_slice(arm)
            if joints.get(arm) is not None:
                state[sl.start:sl.stop - 1] = joints[arm]
            if grippers.get(arm) is not None:
                state[sl.stop - 1] = grippers[arm]
            if joint_targets.get(arm) is not None:
                target[sl.start:sl.stop - 1] = joint_targets[arm]
            if gripper_targets.get(arm) is not None:
                target[sl.stop - 1] = gripper_targets[arm]
        lg.log_tick(k, now_s, state=state, target=target if np.isfinite(target).any() else None,
                    wrench=_wrench(wrenches), images=images)
        for arm, st in (status.get("state") or {}).items():
            if self._states.get(arm) != st:
                why = (status.get("hold_reason") or {}).get(arm) or ""
                lg.log_event(k, now_s, "operator", f"{arm}: {st}" + (f" ({why})" if why else ""))
                self._states[arm] = st
        rec = bool(status.get("recording"))
        lg.log_status(k, now_s, rec)
        if rec != self._recording:
            if self._recording is not None or rec:
                lg.log_event(k, now_s, "recording", f"recording {'started' if rec else 'stopped'} (episode "
                                                    f"{status.get('episodes', '?')})")
            self._recording = rec
        for line in events:
            lg.log_event(k, now_s, "estop" if "e-stop" in line else "info", str(line))
