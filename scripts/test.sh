#!/usr/bin/env bash
# Sets up (idempotent) and runs the whole test suite. Extra arguments go to pytest (e.g. -k vae, -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# pytest starts with stdin/stdout/stderr only, not the descriptors its caller left open (a CI harness can leave
# hundreds): the RealMan SDK the driver tests load in-process cannot watch a socket numbered >= 1024
# (docs/drivers.md). Popen closes them in the child; the wrapper leaves Ctrl-C to pytest and returns its status.
exec "$ROOT/.venv/bin/python" -c 'import signal, subprocess, sys
p = subprocess.Popen(sys.argv[1:], close_fds=True)
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.exit(p.wait())' "$ROOT/.venv/bin/python" -m pytest "$@"
