#!/usr/bin/env bash
# Builds, trains and renders the demo model. Installs what it needs on first run.
set -euo pipefail
# shellcheck source=scripts/_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh" demo
cd "$REPO_ROOT"
exec "$VENV_BIN/rnngraph" demo "$@"
