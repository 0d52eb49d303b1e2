"""Where the cell's Rerun logs are shown: a native Rerun Viewer window or a web viewer served on localhost.

Both run as their own process (the ``rerun`` executable that rerun-sdk installs), never in the control process:
the viewer's rendering and buffering cost nothing in the 20 Hz loop, and a closed window does not stop the node.

* ``native``: ``rerun --port G``: a Viewer window (needs a display) that also listens for loggers on gRPC port G;
* ``web``: ``rerun --serve-web --bind 127.0.0.1 --port G --web-viewer-port W``: a gRPC server that buffers the
  data (``server_memory_limit``) and a web viewer at ``http://127.0.0.1:W`` (open it on this machine, or through an
  SSH tunnel of ports W and G from a laptop).

The logger connects to ``Viewer.grpc_url``; the web page connects to the same gRPC server by itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from ate_description.errors import UserError

log = logging.getLogger(__name__)

VIEWER_MODES = ("native", "web")
VIEWER_NICE = 10   # the viewer process's scheduling priority below the nodes' (Linux nice increment)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rerun_executable() -> str:
    """The ``rerun`` binary of the installed rerun-sdk. Not the ``rerun`` console script: that is a Python wrapper
    which runs the binary as its child, so ending the wrapper would leave the viewer running."""
    import importlib.util

    spec = importlib.util.find_spec("rerun_cli")
    if spec is not None and spec.origin:
        exe = Path(spec.origin).with_name("rerun")
        if exe.exists():
            return str(exe)
    found = shutil.which("rerun")
    if not found:
        raise UserError("the `rerun` executable of rerun-sdk is not installed (pip install -e '.[viz]')")
    return found


def _wait_port(port: int, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"the Rerun {what} exited at start (code {proc.returncode}); see its log above")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise UserError(f"the Rerun {what} did not open port {port} within {timeout_s:g} s")


@dataclass
class Viewer:
    """A running viewer process; ``grpc_url`` is where loggers send, ``web_url`` the page (web mode)."""

    mode: str
    grpc_port: int
    web_port: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    log_path: Path | None = None

    @property
    def grpc_url(self) -> str:
        return f"rerun+http://127.0.0.1:{self.grpc_port}/proxy"

    @property
    def web_url(self) -> str | None:
        if self.web_port is None:
            return None
        return f"http://127.0.0.1:{self.web_port}/?url={quote(self.grpc_url, safe='')}"

    def close(self, timeout_s: float = 5.0) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        # The viewer leads its own process group (start_new_session): end the group, children included.
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout_s)


def start_viewer(mode: str, grpc_port: int = 0, web_port: int = 0, memory_limit: str = "25%",
                 timeout_s: float = 20.0) -> Viewer:
    """Start the viewer process of ``mode`` (``native`` | ``web``); port 0 = a free one."""
    if mode not in VIEWER_MODES:
        raise UserError(f"viz mode {mode!r}: expected one of {', '.join(VIEWER_MODES)}")
    if mode == "native" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("the native Rerun Viewer needs a display (no DISPLAY here): use viz_mode:=web "
                        "(`--viz web`) and open the printed URL, or save recordings only")
    grpc_port = grpc_port or free_port()
    exe = rerun_executable()
    if mode == "native":
        cmd = [exe, "--port", str(grpc_port), "--memory-limit", memory_limit, "--hide-welcome-screen"]
    else:
        web_port = web_port or free_port()
        cmd = [exe, "--serve-web", "--bind", "127.0.0.1", "--port", str(grpc_port),
               "--web-viewer-port", str(web_port), "--server-memory-limit", memory_limit]
    env = dict(os.environ, RERUN_ANALYTICS="false")
    # Its own process group: a Ctrl-C in the terminal reaches the node, which closes the viewer itself.
    # Its output goes to a file: a pipe nobody reads would block it once full.
    out = tempfile.NamedTemporaryFile(prefix=f"rerun_{mode}_", suffix=".log", delete=False)
    # Niced: on a machine with few cores the viewer's server must not take CPU time from the control loop.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, preexec_fn=lambda: os.nice(VIEWER_NICE))
    out.close()
    viewer = Viewer(mode, grpc_port, web_port if mode == "web" else None, proc, Path(out.name))
    try:
        _wait_port(grpc_port, proc, timeout_s, f"{mode} viewer")
        if mode == "web":
            _wait_port(web_port, proc, timeout_s, "web viewer")
    except UserError:
        viewer.close()
        log.error("rerun's output (%s): %s", viewer.log_path, viewer.log_path.read_text(errors="replace")[-400:])
        raise
    log.info("Rerun %s viewer started%s", mode, f": open {viewer.web_url}" if viewer.web_url else "")
    return viewer
