import importlib.util
import os

import pytest

# The suite runs with the defaults a user gets (no configuration is set here): a test that
# needs another one says so itself, e.g. Session(accelerate=False) where its point is the
# NumPy kernels.


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


@pytest.fixture(scope="session")
def bench():
    """benchmarks/rnn.py as a module (its table code and configuration specs are tested)."""
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "rnn.py")
    spec = importlib.util.spec_from_file_location("bench_rnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
