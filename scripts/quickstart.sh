#!/usr/bin/env bash
# Sets up (idempotent) and runs the main job on its embedded defaults (see README "Quick start").
# Extra arguments go to `ate_policy quickstart` (e.g. --output runs/qs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/ate_policy" quickstart "$@"
