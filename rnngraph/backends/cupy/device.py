"""CuPy device: the same xp kernels as on the CPU, run by CuPy.

Transfers run on a separate CUDA stream ordered against the compute stream with events, so an
offloaded residual's copy to the host overlaps the next forward steps and a prefetch overlaps
the backward steps before it. Host buffers come from CuPy's pinned-memory pool (page-locked
memory is what makes a cudaMemcpyAsync really asynchronous). CuPy stays optional: nothing here
is imported unless a GPU device is asked for.
"""
from __future__ import annotations

import numpy as np

from ...memory.costs import GPU_PROFILE
from ...runtime.devices import Device


def _probe():
    try:
        import cupy   # optional: CuPy loads only when a GPU is asked for
    except Exception as exc:  # not installed, or its CUDA libraries are broken
        return False, f"CuPy cannot be imported ({type(exc).__name__}: {exc})"
    try:
        ok = bool(cupy.cuda.is_available())
    except Exception as exc:
        return False, f"cupy.cuda.is_available() failed ({type(exc).__name__}: {exc})"
    return ok, "" if ok else "cupy.cuda.is_available() is False (no CUDA device found)"


def gpu_available() -> bool:
    return _probe()[0]


def gpu_unavailable_reason() -> str:
    return _probe()[1]


class _Ticket:
    """A queued copy: its completion event, and the arrays that must live until it is done."""
    __slots__ = ("event", "keep")

    def __init__(self, event, keep):
        self.event = event
        self.keep = keep


class CupyDevice(Device):
    name = "gpu"
    profile = GPU_PROFILE

    def __init__(self, device_id: int | None = None, pool_limit: int = 1 << 30):
        import cupy   # optional: CuPy loads only when a GPU is asked for
        self.xp = cupy
        self.array_type = cupy.ndarray
        if device_id is not None:
            cupy.cuda.Device(device_id).use()
        self._transfer = cupy.cuda.Stream(non_blocking=True)
        self._runtime = cupy.cuda.runtime
        super().__init__(pool_limit=pool_limit)

    # --- arrays ---------------------------------------------------------------------------------
    def asarray(self, x):
        return self.xp.asarray(x)

    def to_host(self, x) -> np.ndarray:
        if hasattr(x, "materialize"):
            x = x.materialize()
        return self.xp.asnumpy(x) if isinstance(x, self.xp.ndarray) else np.asarray(x)

    def _host_alloc(self, nbytes: int) -> np.ndarray:
        mem = self.xp.cuda.alloc_pinned_memory(max(nbytes, 1))  # from the pinned-memory pool
        return np.frombuffer(mem, np.uint8, max(nbytes, 1))

    # --- transfers on the side stream -----------------------------------------------------------
    def _after_compute(self):
        """Make the transfer stream wait for everything queued so far on the compute stream."""
        ev = self.xp.cuda.Event(disable_timing=True)
        ev.record(self.xp.cuda.get_current_stream())
        self._transfer.wait_event(ev)

    def _done(self, keep) -> _Ticket:
        ev = self.xp.cuda.Event(disable_timing=True)
        ev.record(self._transfer)
        return _Ticket(ev, keep)

    def copy_to_host(self, src, dst: np.ndarray):
        src = self.xp.ascontiguousarray(src)
        self._after_compute()
        self._runtime.memcpyAsync(dst.ctypes.data, src.data.ptr, dst.nbytes,
                                  self._runtime.memcpyDeviceToHost, self._transfer.ptr)
        self.bytes_to_host += dst.nbytes
        return self._done((src, dst))

    def copy_to_device(self, src: np.ndarray, dst):
        self._after_compute()  # the buffer's previous readers are done before we overwrite it
        self._runtime.memcpyAsync(dst.data.ptr, src.ctypes.data, dst.nbytes,
                                  self._runtime.memcpyHostToDevice, self._transfer.ptr)
        self.bytes_to_device += dst.nbytes
        return self._done((src, dst))

    def wait(self, ticket) -> None:
        """The compute stream waits (on the GPU, not the host) until the copy is done."""
        if ticket is not None:
            self.xp.cuda.get_current_stream().wait_event(ticket.event)

    def wait_host(self, ticket) -> None:
        """The host waits until the copy is done (before reusing or dropping its buffers)."""
        if ticket is not None:
            ticket.event.synchronize()

    def synchronize(self) -> None:
        self._transfer.synchronize()
        self.xp.cuda.get_current_stream().synchronize()

    def describe(self) -> str:
        dev = self.xp.cuda.Device()
        return f"gpu (CUDA device {dev.id})"
