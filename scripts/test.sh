#!/usr/bin/env bash
# Runs the whole test suite. Installs what it needs on first run.
# Extra arguments are passed to pytest, e.g. `bash scripts/test.sh -k lstm`.
set -euo pipefail
# shellcheck source=scripts/_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh" dev
cd "$REPO_ROOT"

# Optional: PyTorch (CPU build) for numerical cross-checks.
TORCH_VERSION="2.13.0"
if ! "$VENV_BIN/python" -c "import sys
from importlib.metadata import version
sys.exit(version('torch').split('+')[0] != '$TORCH_VERSION')" >/dev/null 2>&1; then
    if ! "$VENV_BIN/python" -m pip install -q "torch==$TORCH_VERSION"; then
        echo "note: could not install torch==$TORCH_VERSION; torch cross-checks will be skipped" >&2
    fi
fi

rc=0
"$VENV_BIN/python" -m pytest -q "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "ERROR: pytest collected no tests (exit code 5); failing on purpose - an empty test run must not pass." >&2
    exit 1
fi
exit "$rc"
