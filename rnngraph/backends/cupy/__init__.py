"""The CuPy backend: a GPU device, and fused elementwise groups as one CUDA kernel each.

Importing this package never imports CuPy: the device probes for it when a GPU is asked for.
`kernel_sources(fetches, feed_dict)` returns the CUDA kernels a graph would run, without a GPU.
"""
from __future__ import annotations

from ... import kernels
from ...ops.fused import Fused
from . import device as _device
from . import random as _random  # noqa: F401  (registers the random ops' kernel)
from .fused import cupy_kernel
from .sources import kernel_sources

__all__ = ["kernel_sources"]


class _Gpu:
    """What runtime.devices.get_device asks of the GPU backend."""

    @staticmethod
    def unavailable_reason():
        ok, reason = _device._probe()
        return None if ok else reason

    @staticmethod
    def make():
        return _device.CupyDevice()


kernels.provide("device:gpu", _Gpu)
kernels.register(Fused, "cupy")(lambda op, node, program: cupy_kernel(op, node, program.ctx.xp))
