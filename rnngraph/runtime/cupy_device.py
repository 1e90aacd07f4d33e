"""CuPy device: the same xp kernels as on the CPU, run by CuPy."""
from __future__ import annotations

import numpy as np

from .devices import Device


def gpu_available() -> bool:
    try:
        import cupy
        return bool(cupy.cuda.is_available())
    except Exception:  # cupy missing or its CUDA libraries broken: no GPU for us
        return False


class CupyDevice(Device):
    name = "gpu"

    def __init__(self):
        import cupy
        self.xp = cupy

    def asarray(self, x):
        return self.xp.asarray(x)

    def to_host(self, x) -> np.ndarray:
        return self.xp.asnumpy(x)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()
