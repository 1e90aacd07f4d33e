"""CuPy device: the same xp kernels as on the CPU, run by CuPy.

Transfers run on a separate CUDA stream ordered against the compute stream with events lent
by two pools, each event reused only once its wait is queued (transfers.py), so an offloaded
residual's copy to the host overlaps the next forward steps and a prefetch overlaps the
backward steps before it, and no copy makes the host wait.
Host rows of offloaded stacks live in pinned chunks (page-locked memory is what makes a
cudaMemcpyAsync really asynchronous), handed out as rows are reached and never more than the
run's host_budget. CuPy stays optional: nothing here imports it unless a GPU device is made;
`CupyDevice(xp=module)` runs the same class on another module offering CuPy's API (the tests'
fake device, which records every stream and event operation).

Byte accounting counts what CuPy's pool hands out: every buffer rounded up to the pool's 512
bytes, buffers on the device's reuse list (they stay allocated), and the cuBLAS workspace,
which cuBLAS keeps outside the pool (the planner's GPU profile models the same, see
memory/costs.py).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from ...errors import InvalidArgumentError, OutOfMemoryError
from ...memory.accounting import ByteMeter, fmt_bytes
from ...memory.costs import GPU_PROFILE
from ...runtime.devices import Device
from .transfers import (EVENT_LIMIT, EventRing, Mark, PinnedStack, Ticket,
                        cublas_workspace_bytes, pool_bytes)

ALLOCATION_UNIT = 512          # CuPy's memory pool rounds every allocation up to this
CHUNK_BYTES = 4 << 20          # pinned chunk of an offloaded stack (rows per chunk: this / row)
RING_SIZE = 32                 # events made at first per pool (compute marks, copy completions)


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


class PoolMeter(ByteMeter):
    """A ByteMeter charging each base buffer what CuPy's pool takes for it (a multiple of
    `granularity` bytes)."""

    def __init__(self, array_type, granularity: int = ALLOCATION_UNIT):
        super().__init__(array_type)
        self.granularity = granularity

    def hold(self, nbytes: int, what) -> None:
        """Count `nbytes` held outside any array for as long as the meter lives (or until
        `reset`): memory a library keeps, such as cuBLAS's workspace."""
        if nbytes:
            self._charge(int(nbytes), what)

    def _add_ref(self, b, what) -> None:
        e = self.refs.get(id(b))
        if e is None:
            nbytes = pool_bytes(b.nbytes, self.granularity)
            self._charge(nbytes, what)
            self.refs[id(b)] = [1, b, nbytes]
        else:
            e[0] += 1


class CupyDevice(Device):
    """A CUDA device through CuPy.

    Args:
      device_id: the CUDA device to use (None: CuPy's current one).
      pool_limit: bytes of freed buffers kept for reuse (device reuse list, pinned chunks).
      xp: the array module (default: `cupy`, imported now). Anything offering the part of
        CuPy's API used here (ndarray, asnumpy, ascontiguousarray, cuda.Stream, cuda.Event,
        cuda.get_current_stream, cuda.runtime.memcpyAsync / memcpy2DAsync,
        cuda.alloc_pinned_memory, cuda.Device) can stand in for it.
      ring_size: events made at first in each of the two pools that order copies; a pool
        grows to the number of copies and marks in flight at once (see transfers.py).
      max_events: events in one pool at most (past it, an event still held is lent again:
        still correct, but a copy may then wait for unrelated work).
      chunk_bytes: bytes of one pinned chunk of an offloaded stack.
      workspace_bytes: device bytes cuBLAS keeps outside CuPy's pool (None: cuBLAS's default
        for this device, or what CUBLAS_WORKSPACE_CONFIG says).
    """
    name = "gpu"
    profile = GPU_PROFILE

    def __init__(self, device_id: int | None = None, pool_limit: int = 1 << 30, *, xp=None,
                 ring_size: int = RING_SIZE, chunk_bytes: int = CHUNK_BYTES,
                 workspace_bytes: int | None = None, max_events: int = EVENT_LIMIT):
        for arg, value, least in (("ring_size", ring_size, 1), ("chunk_bytes", chunk_bytes, 1),
                                  ("max_events", max_events, 1),
                                  ("workspace_bytes", workspace_bytes, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, (int, np.integer)) or value < least):
                raise ValueError(f"CupyDevice({arg}=...) must be an int of at least {least}, "
                                 f"got {value!r}")
        if xp is None:
            import cupy as xp   # optional: CuPy loads only when a GPU is asked for
        self.xp = xp
        self.array_type = xp.ndarray
        cuda = xp.cuda
        if device_id is not None:
            cuda.Device(device_id).use()
        self._cuda = cuda
        self._runtime = cuda.runtime
        self._transfer = cuda.Stream(non_blocking=True)
        self._marks = EventRing(cuda, ring_size, max_events)    # recorded on the compute stream
        self._copies = EventRing(cuda, ring_size, max_events)   # recorded on the transfer stream
        self.chunk_bytes = int(chunk_bytes)
        if workspace_bytes is None:
            workspace_bytes = cublas_workspace_bytes(cuda.Device().compute_capability,
                                                     os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        self.workspace_bytes = int(workspace_bytes)
        self.profile = dataclasses.replace(GPU_PROFILE, workspace_bytes=self.workspace_bytes)
        self.pinned_peak = 0       # pinned bytes held (in use + kept for reuse), at most
        super().__init__(pool_limit=pool_limit)

    def _make_meter(self) -> ByteMeter:
        meter = PoolMeter(self.array_type, self.profile.alloc_granularity)
        meter.hold(self.workspace_bytes, "the cuBLAS workspace")
        return meter

    # --- arrays ---------------------------------------------------------------------------------
    def asarray(self, x):
        return self.xp.asarray(x)

    def to_host(self, x) -> np.ndarray:
        if hasattr(x, "fetched"):      # in host memory already (runtime/transfer.HostValue)
            return x.fetched()
        if hasattr(x, "materialize"):
            x = x.materialize()
        return self.xp.asnumpy(x) if isinstance(x, self.xp.ndarray) else np.asarray(x)

    # --- the reuse list stays allocated: count it ---------------------------------------------
    def empty(self, shape, dtype, what=None, reuse: bool = False, count: bool = True):
        pooled = self._pooled
        arr = super().empty(shape, dtype, what, reuse, count)
        if reuse and self._pooled < pooled:      # taken off the reuse list, counted there
            self.meter.release(self.meter.base_of(arr))
        return arr

    def free(self, a, reuse: bool = False) -> None:
        pooled = self._pooled
        super().free(a, reuse)
        if reuse and self._pooled > pooled:      # kept on the reuse list: still allocated
            self.meter.allocate(self.meter.base_of(a), "the device's reuse list")

    def reset_accounting(self) -> None:
        super().reset_accounting()
        self.meter.hold(self.workspace_bytes, "the cuBLAS workspace")
        for bucket in self._pool.values():
            for flat in bucket:
                self.meter.allocate(flat, "the device's reuse list")

    # --- pinned host memory ---------------------------------------------------------------------
    def _host_alloc(self, nbytes: int) -> np.ndarray:
        mem = self._cuda.alloc_pinned_memory(max(nbytes, 1))  # from the pinned-memory pool
        return np.frombuffer(mem, np.uint8, max(nbytes, 1))

    def host_stack(self, shape, dtype, host_budget: int | None = None):
        return PinnedStack(self, shape, dtype, self.chunk_bytes, host_budget)

    def host_free(self, a) -> None:
        if isinstance(a, PinnedStack):
            if self._host_pooled + a.pinned_bytes() > self.pool_limit:
                self._transfer.synchronize()   # chunks going back to CuPy's pinned pool: no
            a.free()                           # queued copy may still use them
        else:
            super().host_free(a)

    def pinned_chunk(self, shape, dtype, host_budget: int | None = None) -> np.ndarray:
        """A pinned host buffer for a chunk of an offloaded stack. Pinned bytes held (in use,
        and kept for reuse) never exceed `host_budget`: chunks kept for reuse are dropped
        first, then OutOfMemoryError names the budget."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if host_budget is not None and not self._host_pool.get(nbytes):
            if self.host_current + self._host_pooled + nbytes > host_budget:
                self._transfer.synchronize()      # (rare: copies of earlier runs may still
                self._host_pool.clear()           # use them) CuPy's pinned pool takes them
                self._host_pooled = 0
            if self.host_current + nbytes > host_budget:
                raise OutOfMemoryError(
                    f"host_budget={host_budget} bytes ({fmt_bytes(host_budget)}) is used up: "
                    f"{self.host_current} bytes of pinned host memory hold offloaded rows (and "
                    "loop outputs written to the host), and "
                    f"the next chunk of an offloaded stack needs {nbytes} bytes more. Raise "
                    "Session(host_budget=...), or give the Session a memory_budget= so that "
                    "the planner recomputes instead of offloading.")
        arr = self.host_empty(shape, dtype)
        self.pinned_peak = max(self.pinned_peak, self.host_current + self._host_pooled)
        return arr

    # --- transfers on the side stream -----------------------------------------------------------
    def mark(self):
        """A point of the compute stream now (after the kernels queued so far), for
        `copy_to_device(after=)`: a Mark holding an event until a copy has waited on it."""
        return Mark(self._marks.record(self._cuda.get_current_stream()), self._marks)

    def _done(self, keep, scratch=None) -> Ticket:
        return Ticket(self._copies.record(self._transfer), keep, scratch, self._copies)

    def copy_to_host(self, src, dst: np.ndarray):
        """Queue dst[...] = src on the transfer stream, after the kernels that wrote src.
        A row strided only between its rows (a column block) goes as one 2D copy; other
        strided rows through a contiguous device copy, counted and freed by `wait`."""
        _check_copy("copy_to_host", src, dst)
        if not dst.flags.c_contiguous:
            raise InvalidArgumentError("copy_to_host: the host destination must be contiguous")
        rt = self._runtime
        scratch = None
        if not src.flags.c_contiguous and not _pitched(src):
            scratch = self.empty(src.shape, src.dtype, "a contiguous copy of an offloaded row")
            scratch[...] = src
            src = scratch
        here = self.mark()
        self._transfer.wait_event(here.event)
        here.release()
        if src.flags.c_contiguous:
            rt.memcpyAsync(dst.ctypes.data, src.data.ptr, dst.nbytes, rt.memcpyDeviceToHost,
                           self._transfer.ptr)
        else:
            width = src.shape[1] * src.itemsize
            rt.memcpy2DAsync(dst.ctypes.data, width, src.data.ptr, src.strides[0], width,
                             src.shape[0], rt.memcpyDeviceToHost, self._transfer.ptr)
        self.bytes_to_host += dst.nbytes
        return self._done((src, dst), scratch)

    def copy_to_device(self, src: np.ndarray, dst, after=None):
        """Queue dst[...] = src on the transfer stream, after `after` (a Mark from `mark()`
        taken after dst's last reader; its event is given back once the wait is queued) or,
        without one, after every kernel queued so far."""
        _check_copy("copy_to_device", src, dst)
        if not (src.flags.c_contiguous and dst.flags.c_contiguous):
            raise InvalidArgumentError("copy_to_device: source and destination must be "
                                       "contiguous")
        rt = self._runtime
        after = after if after is not None else self.mark()
        self._transfer.wait_event(after.event)
        after.release()
        rt.memcpyAsync(dst.data.ptr, src.ctypes.data, dst.nbytes, rt.memcpyHostToDevice,
                       self._transfer.ptr)
        self.bytes_to_device += dst.nbytes
        return self._done((src, dst))

    def copies_mark(self) -> Ticket:
        """A ticket of the copies queued so far on the transfer stream, for `wait_host`: its
        event is its own until the ticket is dropped."""
        return self._done(None)

    def wait(self, ticket) -> None:
        """The compute stream waits (on the GPU, not the host) until the copy is done; from
        then on the ticket's arrays may be dropped or reused."""
        if ticket is not None:
            self._cuda.get_current_stream().wait_event(ticket.event)
            ticket.release()                # (the wait is queued: the event may be reused)
            if ticket.scratch is not None:
                self.free(ticket.scratch)
                ticket.scratch = None
            ticket.keep = None

    def wait_host(self, ticket) -> None:
        """The host waits until the copy is done (the loops never call this)."""
        if ticket is not None:
            ticket.event.synchronize()

    def synchronize(self) -> None:
        self._transfer.synchronize()
        self._cuda.get_current_stream().synchronize()

    def describe(self) -> str:
        return f"gpu (CUDA device {self._cuda.Device().id})"


def _check_copy(what: str, src, dst) -> None:
    """A raw copy moves bytes: refuse (before anything is queued) a source and destination
    whose shapes or dtypes differ, which would copy too few or too many bytes or reinterpret
    them."""
    if tuple(src.shape) != tuple(dst.shape) or np.dtype(src.dtype) != np.dtype(dst.dtype):
        raise InvalidArgumentError(
            f"{what}: the source is {np.dtype(src.dtype).name}{list(src.shape)} and the "
            f"destination {np.dtype(dst.dtype).name}{list(dst.shape)}; a copy needs the same "
            "shape and dtype")


def _pitched(a) -> bool:
    """A 2D array whose rows are contiguous and evenly spaced (one cudaMemcpy2D)."""
    return (a.ndim == 2 and a.shape[0] > 0 and a.strides[1] == a.itemsize and
            a.strides[0] >= a.shape[1] * a.itemsize)
