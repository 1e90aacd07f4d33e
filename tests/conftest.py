import os

import pytest

# Loops compile whole only where a test asks (Session(compile_loops=True): test_loop_jit.py).
# Elsewhere each new loop body would take seconds to compile on a fresh machine (CI); the
# compiled loops give the Python driver's bits, which test_loop_jit.py checks.
os.environ.setdefault("RNNGRAPH_COMPILE_LOOPS", "0")


def _cuda_available() -> bool:
    try:
        import cupy
    except Exception:  # cupy absent or broken (no CUDA runtime)
        return False
    try:
        return bool(cupy.cuda.is_available())
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA device (cupy.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
