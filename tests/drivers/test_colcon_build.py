"""``colcon build`` of ros2_ws works with colcon from the registry and no ROS install (docs/architecture.md (environment facts))."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ate_bringup import graph

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_colcon_build_installs_the_graphs_executables_launch_files_and_config(tmp_path):
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    if colcon is None:
        pytest.skip("colcon is not installed (dev extra)")
    r = subprocess.run([colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths",
                        str(REPO / "ros2_ws" / "src"), "--build-base", str(tmp_path / "build"),
                        "--install-base", str(tmp_path / "install"), "--event-handlers", "console_direct-"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    inst = tmp_path / "install"
    for name, build in graph.GRAPHS.items():
        for robot in graph.ROBOT_MODES:
            for spec in build({"robot": robot}):
                exe = inst / spec.package / "lib" / spec.package / spec.executable
                assert exe.is_file() and os.access(exe, os.X_OK), exe
        share = inst / "ate_bringup" / "share" / "ate_bringup"
        assert (share / "launch" / f"{name}.launch.py").is_file()
    assert (share / "config" / "drivers.yaml").is_file() and (share / "config" / "tasks" / "cook_bun.yaml").is_file()
    # Without a ROS underlay, AMENT_PREFIX_PATH must name the install prefixes; then the graph finds the
    # installed config through the ament index, as `ros2 launch` on the robot PC does.
    prefixes = os.pathsep.join(str(p) for p in sorted(inst.iterdir()) if (p / "share").is_dir())
    env = {**os.environ, "AMENT_PREFIX_PATH": prefixes}
    out = subprocess.run([sys.executable, "-c", "from ate_bringup import graph; print(graph.config_dir())"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert Path(out.stdout.strip()) == share / "config", out.stderr
    emu = subprocess.run([str(inst / "ate_drivers" / "lib" / "ate_drivers" / "realman_emulator"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert emu.returncode == 0 and "RealMan controller emulator" in emu.stdout
