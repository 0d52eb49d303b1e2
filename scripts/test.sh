#!/usr/bin/env bash
# Sets up (idempotent) and runs the whole test suite. Extra arguments go to pytest (e.g. -k vae, -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
