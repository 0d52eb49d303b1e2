#!/usr/bin/env bash
# Sets up everything this project needs on a fresh machine, idempotently:
#   - the few apt packages (libusb for pyrealsense2, OSMesa for headless MuJoCo rendering, ffmpeg libs for video);
#   - a Python 3.12 virtual environment in .venv with the project and its extras installed (editable);
#   - the ROS 2 packages of ros2_ws/src installed into that venv (and built by colcon in CI).
# On a robot PC with ROS 2 sourced (ROS_DISTRO set) the venv sees the system rclpy and the ROS wheels are skipped.
#
# Environment knobs:
#   ATE_EXTRAS   comma-separated extras (default: train,robot,ros,sim,viz,dev; the `ros` extra is dropped when ROS_DISTRO is set)
#   ATE_VENV     venv path (default: .venv in the repository)
#   ATE_SKIP_APT=1  never call apt-get
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ATE_VENV:-$ROOT/.venv}"
EXTRAS="${ATE_EXTRAS:-train,robot,ros,sim,viz,dev}"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- apt packages -----------------------------------------------------------------------------------------------
APT_PKGS=(libusb-1.0-0 libosmesa6 libgl1 libegl1 ffmpeg)
missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] && [ "${ATE_SKIP_APT:-0}" != 1 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    log "installing apt packages: ${missing[*]}"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python 3.12 ------------------------------------------------------------------------------------------------
find_python() {
    if python3.12 --version >/dev/null 2>&1; then command -v python3.12; return; fi
    if command -v pyenv >/dev/null 2>&1; then
        local c
        c=$(ls -d "$(pyenv root)"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V | tail -n 1 || true)
        if [ -n "$c" ] && "$c" --version >/dev/null 2>&1; then echo "$c"; return; fi
    fi
    return 1
}
PY="$(find_python)" || { log "ERROR: Python 3.12 not found (tried python3.12 and pyenv's versions/3.12.*). Install Python 3.12."; exit 1; }

# --- venv -------------------------------------------------------------------------------------------------------
VENV_ARGS=()
if [ -n "${ROS_DISTRO:-}" ]; then
    log "ROS 2 $ROS_DISTRO is sourced: the venv uses the system rclpy, the ROS wheels are skipped"
    VENV_ARGS+=(--system-site-packages)
    EXTRAS="$(echo "$EXTRAS" | tr ',' '\n' | grep -vx ros | paste -sd, -)"
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $PY"
    "$PY" -m venv "${VENV_ARGS[@]}" "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
fi

ROS_PKGS=()
for d in "$ROOT"/ros2_ws/src/*/; do
    [ -f "$d/setup.py" ] && ROS_PKGS+=("$d")
done

# Re-install only when what we install from changed.
STAMP="$VENV/.ate-setup-stamp"
want="$( { echo "$EXTRAS"; cat "$ROOT/pyproject.toml"; for d in "${ROS_PKGS[@]}"; do cat "$d/setup.py"; done; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
    log "installing the project with extras [$EXTRAS] (first time: a few minutes)"
    args=(-e "$ROOT[$EXTRAS]")
    for d in "${ROS_PKGS[@]}"; do args+=(-e "$d"); done
    "$VENV/bin/python" -m pip install -q --progress-bar off "${args[@]}"
    echo "$want" > "$STAMP"
else
    log "venv up to date ($VENV)"
fi
log "ready: $VENV"
