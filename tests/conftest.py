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
