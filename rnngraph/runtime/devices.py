"""Devices: where arrays live and how bytes are counted. The executor only talks to this API."""
from __future__ import annotations

import numpy as np


class Device:
    """An array module `xp` plus transfers and byte accounting (see memory issue for more)."""
    name = "device"
    xp = np

    def asarray(self, x):
        """Put a host array on this device."""
        return self.xp.asarray(x)

    def to_host(self, x) -> np.ndarray:
        return np.asarray(x)

    def synchronize(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class CPUDevice(Device):
    name = "cpu"
    xp = np


def get_device(spec) -> Device:
    """'cpu', 'gpu', 'auto', or a Device instance."""
    if isinstance(spec, Device):
        return spec
    if spec in (None, "cpu"):
        return CPUDevice()
    if spec in ("gpu", "auto"):
        from .cupy_device import CupyDevice, gpu_available
        if gpu_available():
            return CupyDevice()
        if spec == "auto":
            return CPUDevice()
        raise RuntimeError("device='gpu' needs CuPy and a CUDA device; cupy.cuda.is_available() "
                           "is False here (use device='cpu' or 'auto')")
    raise ValueError(f"unknown device {spec!r}: use 'cpu', 'gpu', 'auto' or a Device")
