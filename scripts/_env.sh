# shellcheck shell=bash
# Sourced helper: prepares the project's virtualenv and system tools.
#
#   source scripts/_env.sh [EXTRAS]     e.g. `source scripts/_env.sh dev`
#
# Creates .venv in the repo root (if missing), installs the project editable
# with the given extras (skipped when a stamp newer than pyproject.toml exists),
# and installs Debian's graphviz when `dot` is not on PATH.
# Afterwards REPO_ROOT, VENV and VENV_BIN are set, and $VENV_BIN is first on PATH.

_rg_extras="${1:-}"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
VENV_BIN="$VENV/bin"
export REPO_ROOT VENV VENV_BIN

_rg_sudo() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- system packages -------------------------------------------------------
if ! command -v dot >/dev/null 2>&1; then
    echo "[env] graphviz 'dot' not found; installing Debian package graphviz" >&2
    export DEBIAN_FRONTEND=noninteractive
    _rg_sudo apt-get update -qq
    _rg_sudo apt-get install -y -qq graphviz >/dev/null
fi

# --- virtualenv ------------------------------------------------------------
if [ ! -x "$VENV_BIN/python" ]; then
    echo "[env] creating virtualenv in .venv" >&2
    python3 -m venv "$VENV"
fi

_rg_stamp="$VENV/.rnngraph-installed${_rg_extras:+-$_rg_extras}"
if [ ! -f "$_rg_stamp" ] || [ "$REPO_ROOT/pyproject.toml" -nt "$_rg_stamp" ]; then
    echo "[env] installing rnngraph (editable${_rg_extras:+, extras: $_rg_extras})" >&2
    "$VENV_BIN/python" -m pip install -q --upgrade pip
    if [ -n "$_rg_extras" ]; then
        (cd "$REPO_ROOT" && "$VENV_BIN/python" -m pip install -q -e ".[$_rg_extras]")
    else
        (cd "$REPO_ROOT" && "$VENV_BIN/python" -m pip install -q -e .)
    fi
    touch "$_rg_stamp"
fi

export PATH="$VENV_BIN:$PATH"
unset _rg_extras _rg_stamp
unset -f _rg_sudo
