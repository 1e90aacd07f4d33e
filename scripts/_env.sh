# shellcheck shell=bash
# Sourced helper: prepares one of the project's virtualenvs and the system tools.
#
#   source scripts/_env.sh [EXTRAS]                      e.g. `source scripts/_env.sh dev`
#   RNNGRAPH_VENV=.venv-numpy source scripts/_env.sh test
#
# RNNGRAPH_VENV names the virtualenv's folder: relative to the repo root, or absolute
# (default .venv). Creates it (if missing), installs the project editable with the given
# extras (skipped when a stamp newer than pyproject.toml exists), and installs Debian's
# graphviz when `dot` is not on PATH (and fonts-dejavu-core without DejaVu Sans; chromium
# with RNNGRAPH_BROWSER_TESTS=1, see below). Every virtualenv is made this same way; only the
# folder and the extras differ.
# Afterwards REPO_ROOT, VENV and VENV_BIN are set, and $VENV_BIN is first on PATH.

_rg_extras="${1:-}"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_rg_venv="${RNNGRAPH_VENV:-.venv}"
case "$_rg_venv" in
    /*) VENV="$_rg_venv" ;;
    *) VENV="$REPO_ROOT/$_rg_venv" ;;
esac
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
# The diagrams name DejaVu Sans: graphviz measures its text with it and SVG viewers draw it.
if [ -z "$(fc-list 'DejaVu Sans' family 2>/dev/null)" ]; then  # no pipe: safe under pipefail
    echo "[env] font DejaVu Sans not found; installing Debian package fonts-dejavu-core" >&2
    export DEBIAN_FRONTEND=noninteractive
    _rg_sudo apt-get update -qq
    _rg_sudo apt-get install -y -qq fonts-dejavu-core >/dev/null
fi
# Headless Chromium for the HTML view's browser test (tests/test_render_html.py skips without
# it): with RNNGRAPH_BROWSER_TESTS=1 (CI sets it), as it is ~110 MB to download and ~350 MB on
# disk. A failed install only makes that test skip.
if [ "${RNNGRAPH_BROWSER_TESTS:-0}" = "1" ] && ! command -v chromium >/dev/null 2>&1; then
    echo "[env] installing Debian package chromium (RNNGRAPH_BROWSER_TESTS=1)" >&2
    export DEBIAN_FRONTEND=noninteractive
    { _rg_sudo apt-get update -qq && _rg_sudo apt-get install -y -qq chromium >/dev/null; } ||
        echo "[env] note: could not install chromium; the HTML view's browser test will skip" >&2
fi

# --- virtualenv ------------------------------------------------------------
if [ ! -x "$VENV_BIN/python" ]; then
    echo "[env] creating virtualenv in $_rg_venv" >&2
    python3 -m venv "$VENV"
fi

_rg_stamp="$VENV/.rnngraph-installed${_rg_extras:+-$_rg_extras}"
if [ ! -f "$_rg_stamp" ] || [ "$REPO_ROOT/pyproject.toml" -nt "$_rg_stamp" ]; then
    echo "[env] installing rnngraph into $_rg_venv (editable${_rg_extras:+, extras: $_rg_extras})" >&2
    "$VENV_BIN/python" -m pip install -q --upgrade pip
    if [ -n "$_rg_extras" ]; then
        (cd "$REPO_ROOT" && "$VENV_BIN/python" -m pip install -q -e ".[$_rg_extras]")
    else
        (cd "$REPO_ROOT" && "$VENV_BIN/python" -m pip install -q -e .)
    fi
    touch "$_rg_stamp"
fi

export PATH="$VENV_BIN:$PATH"
unset _rg_extras _rg_stamp _rg_venv
unset -f _rg_sudo
