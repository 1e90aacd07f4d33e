#!/usr/bin/env bash
# Runs the whole test suite: two jobs, one after the other; fails if either fails.
#
#   dev    in .venv:        the `dev` extra (numba, scikit-learn, import-linter, ...) and
#                           torch==2.13.0 for the cross-checks; checks the layering contracts
#                           with lint-imports first
#   numpy  in .venv-numpy:  NumPy and the required dependencies only, plus the `test` extra
#                           (pytest, hypothesis; scikit-learn and tqdm for the demo's tests):
#                           no numba, no torch, as `pip install rnngraph` computes
#
# Installs what it needs on first run (scripts/_env.sh). Extra arguments go to pytest in every
# job, e.g. `bash scripts/test.sh -k lstm`. `--job dev` or `--job numpy` (or the environment
# variable RNNGRAPH_TEST_JOB) runs one job only; `--job all` is the default.
#
# LINT_IMPORTS_STRICT=1 (the default) fails the dev job on a broken contract; 0 only prints it;
# the contracts hold since the redesign (backends/, kernels.py, autodiff/).
set -euo pipefail
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LINT_IMPORTS_STRICT="${LINT_IMPORTS_STRICT:-1}"
TORCH_VERSION="2.13.0"

job="${RNNGRAPH_TEST_JOB:-all}"
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --job) [ $# -ge 2 ] || { echo "usage: --job dev|numpy|all" >&2; exit 2; }
               job="$2"; shift 2 ;;
        --job=*) job="${1#--job=}"; shift ;;
        *) pytest_args+=("$1"); shift ;;
    esac
done

_header() {
    printf '\n%s\n== %s\n%s\n' "$(printf '=%.0s' {1..78})" "$1" "$(printf '=%.0s' {1..78})"
}

# pytest in the current virtualenv; exit code 5 (no test collected) fails on purpose.
_pytest() {
    local rc=0
    python -m pytest -q ${pytest_args[@]+"${pytest_args[@]}"} || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "ERROR: pytest collected no tests (exit code 5); failing on purpose - an empty test run must not pass." >&2
        return 1
    fi
    return "$rc"
}

_job_dev() {
    # shellcheck source=scripts/_env.sh
    RNNGRAPH_VENV=.venv source "$SCRIPTS/_env.sh" dev
    cd "$REPO_ROOT"

    # Optional: PyTorch (CPU build) for numerical cross-checks.
    if ! python -c "import sys
from importlib.metadata import version
sys.exit(version('torch').split('+')[0] != '$TORCH_VERSION')" >/dev/null 2>&1; then
        if ! python -m pip install -q "torch==$TORCH_VERSION"; then
            echo "note: could not install torch==$TORCH_VERSION; torch cross-checks will be skipped" >&2
        fi
    fi

    # The layering contracts ([tool.importlinter] in pyproject.toml).
    local lint_rc=0
    echo "== lint-imports (LINT_IMPORTS_STRICT=$LINT_IMPORTS_STRICT)"
    lint-imports --no-logo --no-cache || lint_rc=$?
    if [ "$lint_rc" -ne 0 ]; then
        if [ "$LINT_IMPORTS_STRICT" = "1" ]; then
            echo "ERROR: lint-imports: the import contracts are broken (LINT_IMPORTS_STRICT=1); running the tests, then failing." >&2
        else
            echo "note: lint-imports: the import contracts are broken; not failing while LINT_IMPORTS_STRICT=0." >&2
        fi
    fi

    local rc=0
    _pytest || rc=$?
    if [ "$rc" -eq 0 ] && [ "$lint_rc" -ne 0 ] && [ "$LINT_IMPORTS_STRICT" = "1" ]; then
        rc=1
    fi
    return "$rc"
}

_job_numpy() {
    # shellcheck source=scripts/_env.sh
    RNNGRAPH_VENV=.venv-numpy source "$SCRIPTS/_env.sh" test
    cd "$REPO_ROOT"
    # The job's point is the absence of the optional packages: refuse to run with them.
    local extra
    extra="$(python -c "import importlib.util
print(' '.join(m for m in ('numba', 'llvmlite', 'torch', 'cupy') if importlib.util.find_spec(m)))")"
    if [ -n "$extra" ]; then
        echo "ERROR: the numpy-only virtualenv $VENV has $extra installed; delete it to rebuild it." >&2
        return 1
    fi
    _pytest
}

case "$job" in
    dev)   _header "rnngraph tests, job dev: .venv, extras dev (numba, import-linter) + torch==$TORCH_VERSION"
           _job_dev ;;
    numpy) _header "rnngraph tests, job numpy: .venv-numpy, NumPy and the required dependencies only (no numba, no torch)"
           _job_numpy ;;
    all)
        results=()
        failed=0
        for j in dev numpy; do
            start=$SECONDS
            rc=0
            bash "$SCRIPTS/test.sh" --job "$j" ${pytest_args[@]+"${pytest_args[@]}"} || rc=$?
            if [ "$rc" -eq 0 ]; then
                results+=("$j: passed ($((SECONDS - start)) s)")
            else
                results+=("$j: FAILED, exit code $rc ($((SECONDS - start)) s)")
                failed=1
            fi
        done
        _header "rnngraph tests: ${results[0]}; ${results[1]}"
        exit "$failed" ;;
    *) echo "unknown job '$job': use --job dev, numpy or all" >&2; exit 2 ;;
esac
