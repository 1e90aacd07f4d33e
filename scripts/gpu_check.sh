#!/usr/bin/env bash
# The GPU check: run this once on a machine with an NVIDIA GPU. It is meant to finish in under
# 8 minutes on one H100 (not yet measured on one).
#
#   1. installs what it needs into the current Python (cupy-cuda12x unless CuPy imports
#      already; torch is used only if it is there already, never installed); never in the
#      no-GPU mode (RNNGRAPH_GPU_CHECK_NO_GPU=1), which installs nothing
#   2. runs the gpu-marked tests (tests/test_cupy.py, tests/test_random_gpu.py, ...)
#   3. prints one table (benchmarks/gpu_check.py): CuPy vs NumPy outputs and gradients for
#      every cell with and without sequence_length, the planner under a tenth of the budget
#      (measured pool peak vs predicted, time vs unconstrained), and S1 LSTM forward+backward
#      against PyTorch's cuDNN LSTM when torch sees a GPU
#
# Without a GPU it says so, skips the tests, prints the table with every row skipped and
# exits 0. Environment: PYTHON (default: python3), GPU_CHECK_QUICK=1 for smaller shapes,
# RNNGRAPH_GPU_CHECK_NO_GPU=1 for the no-GPU mode on any machine (the test suite runs it).
# Exit status: 0 when the tests passed and every row met its target (or there is no GPU).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1

has_gpu() {
    [ -z "${RNNGRAPH_GPU_CHECK_NO_GPU:-}" ] || return 1    # (forces the no-GPU mode)
    "$PY" - <<'PY' >/dev/null 2>&1
import sys
import cupy
sys.exit(0 if cupy.cuda.is_available() else 1)
PY
}

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"   # this checkout, not an installed copy
PIP=("$PY" -m pip install -q --retries 1 --timeout 15)    # (a machine offline fails fast)
if [ -z "${RNNGRAPH_GPU_CHECK_NO_GPU:-}" ]; then          # the no-GPU mode installs nothing
    if ! "$PY" -c "import numpy, pytest, hypothesis" >/dev/null 2>&1; then
        "${PIP[@]}" numpy pytest hypothesis || echo "note: could not install numpy/pytest/hypothesis" >&2
    fi
    if command -v nvidia-smi >/dev/null 2>&1 && ! "$PY" -c "import cupy" >/dev/null 2>&1; then
        "${PIP[@]}" cupy-cuda12x || echo "note: could not install cupy-cuda12x" >&2
    fi
fi

rc=0
if has_gpu; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    echo "== gpu-marked tests"
    "$PY" -m pytest -q -m gpu tests || rc=1
else
    echo "== no GPU (CuPy missing or no CUDA device): the gpu-marked tests are skipped"
fi

echo "== the table"
args=()
[ "${GPU_CHECK_QUICK:-0}" = "1" ] && args+=(--quick)
"$PY" benchmarks/gpu_check.py ${args[@]+"${args[@]}"} || rc=1
exit "$rc"
