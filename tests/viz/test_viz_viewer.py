"""The viewer processes: the web viewer answers on localhost with Rerun's page and takes a logger's data; the
native one without a display is a one-line error naming the web mode."""

from __future__ import annotations

import socket
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("rerun")

from ate_description.errors import UserError  # noqa: E402
from ate_policy.viz import CellLogger, VizConfig  # noqa: E402
from ate_policy.viz.viewer import start_viewer  # noqa: E402


def test_the_web_viewer_serves_its_page_on_localhost_and_takes_a_logger():
    viewer = start_viewer("web")
    try:
        assert viewer.web_url.startswith(f"http://127.0.0.1:{viewer.web_port}/?url=rerun%2Bhttp")
        with urllib.request.urlopen(viewer.web_url, timeout=10) as r:
            page = r.read().decode(errors="replace")
            assert r.status == 200 and "<html" in page.lower() and "rerun" in page.lower()
        lg = CellLogger("viewer test", viewer_url=viewer.grpc_url, config=VizConfig(urdf=False))
        for k in range(5):
            lg.log_tick(k, 0.05 * k, state=np.zeros(16), images={"cam_high": np.zeros((8, 8, 3), np.uint8)})
        st = lg.close()
        assert st["logged"]["tick"] == 5 and st["dropped"] == 0 and st["errors"] == 0
        assert viewer.proc.poll() is None          # still serving
    finally:
        viewer.close()
    assert viewer.proc is None
    # nothing left serving: the viewer and any child of it ended with close()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and _open(viewer.web_port):
        time.sleep(0.1)
    assert not _open(viewer.web_port) and not _open(viewer.grpc_port)


def _open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_native_viewer_without_a_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UserError, match="needs a display.*viz_mode:=web"):
        start_viewer("native")
    with pytest.raises(UserError, match="expected one of native, web"):
        start_viewer("browser")
