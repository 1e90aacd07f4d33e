"""Devices: where arrays live, how bytes are counted and how they move to and from the host.

The executor only talks to this interface:
  xp                        the array module kernels run with (numpy, cupy)
  asarray / to_host         put a host array on the device / bring one back (synchronously)
  empty / free              allocate a device buffer (counted; `reuse=True` buffers go back to a
                            same-size free list when freed) / give it back
  retain / release / disown byte accounting of arrays landing in and leaving executor slots
                            (see memory/accounting.py); current_bytes, peak_bytes
  host_empty / host_free    host buffers for offloaded tensors (pinned memory on a GPU)
  hold_host / drop_held     count a host array a run makes outside that pool (a loop output
                            written to the host) until it is dropped or the run ends
  copy_to_host / copy_to_device
                            copies that may run asynchronously; they return a ticket for `wait`
  mark                      a marker of the kernels queued so far (None where kernels run at
                            once); copy_to_device(after=marker) orders a copy into a recycled
                            buffer after that buffer's last reader only
  host_stack                host storage for an offloaded stack (pinned chunks on a GPU)
  synchronize               wait for every queued kernel and copy
Byte counting of slots is switched on per compiled Program (see Program.tracked), so it costs
nothing when nobody asked for it.
"""
from __future__ import annotations

import weakref

import numpy as np

from ..kernels import feature
from ..memory.accounting import ByteMeter
from ..memory.costs import CPU_PROFILE, DeviceProfile


class Device:
    name = "device"
    xp = np
    array_type = np.ndarray
    profile: DeviceProfile = CPU_PROFILE
    always_track = False           # count bytes on every run (a capacity to enforce)
    budget_tracks = True           # a run under a memory budget counts bytes (the device's
    # allocator is what the plan must hold to)
    host_is_device = False         # host and device arrays share one memory: a row offloaded
    # to the host can be read where it lies, no copy back (untracked runs)
    capacity: int | None = None

    def __init__(self, pool_limit: int = 1 << 30):
        self.meter = self._make_meter()
        self.bytes_to_host = 0
        self.bytes_to_device = 0
        self.pool_limit = pool_limit
        self._pool: dict = {}          # (device?, nbytes) -> [flat buffers]
        self._pooled = 0
        self._host_pool: dict = {}
        self._host_pooled = 0
        self.host_current = 0
        self.host_peak = 0
        self._held: dict = {}   # id(flat host buffer) -> (finalizer, bytes): hold_host's
        self._host_used: dict = {}   # id(flat host buffer) -> bytes: host_empty's, in use

    def _make_meter(self) -> ByteMeter:
        return ByteMeter(self.array_type)

    # --- arrays ---------------------------------------------------------------------------------
    def asarray(self, x):
        """Put a host array on this device."""
        return self.xp.asarray(x)

    def to_host(self, x) -> np.ndarray:
        if hasattr(x, "fetched"):      # a value in host memory already (transfer.HostValue)
            return x.fetched()
        if hasattr(x, "materialize"):  # a saved-tensor handle fetched directly
            x = x.materialize()
        return np.asarray(x)

    def empty(self, shape, dtype, what=None, reuse: bool = False, count: bool = True):
        """An uninitialised device buffer; counted (`count`), it floats until it lands in a
        slot. `reuse=True` buffers are internal to the executor: when freed they are kept for
        the next request of the same byte size (never give such a buffer to user code)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        flat = None
        if reuse:
            bucket = self._pool.get(nbytes)
            if bucket:
                flat = bucket.pop()
                self._pooled -= nbytes
        if flat is None:
            flat = self.xp.empty(max(nbytes, 1), np.uint8) if reuse else None
        arr = flat[:nbytes].view(dtype).reshape(shape) if flat is not None else \
            self.xp.empty(shape, dtype)
        if count:
            self.meter.allocate(arr, what)
        return arr

    def free(self, a, reuse: bool = False) -> None:
        """Forget a buffer from `empty` (its bytes are no longer in use)."""
        self.meter.free(a)
        if reuse:
            flat = self.meter.base_of(a)
            if self._pooled + flat.nbytes <= self.pool_limit:
                self._pool.setdefault(a.nbytes, []).append(flat)
                self._pooled += flat.nbytes

    # --- accounting -----------------------------------------------------------------------------
    def retain(self, a, what=None) -> None:
        self.meter.retain(a, what)

    def release(self, a) -> None:
        self.meter.release(a)

    def disown(self, a) -> None:
        self.meter.disown(a)

    @property
    def current_bytes(self) -> int:
        return self.meter.current

    @property
    def peak_bytes(self) -> int:
        return self.meter.peak

    def reset_peak(self) -> None:
        self.meter.reset_peak()
        self.host_peak = self.host_current

    def reset_accounting(self) -> None:
        """Forget every counted buffer (a failed run may have left some behind): device
        buffers, host buffers (a failed run's offloaded stacks: given back later, they are
        pooled, not counted off again) and held host arrays."""
        self.meter.reset()
        self.host_current -= sum(self._host_used.values())
        self._host_used.clear()
        self.drop_held()

    def counters(self) -> dict:
        return {"peak_bytes": self.peak_bytes, "current_bytes": self.current_bytes,
                "bytes_to_host": self.bytes_to_host, "bytes_to_device": self.bytes_to_device,
                "host_bytes": self.host_current, "host_peak_bytes": self.host_peak}

    # --- host memory ----------------------------------------------------------------------------
    def _host_alloc(self, nbytes: int) -> np.ndarray:
        return np.empty(max(nbytes, 1), np.uint8)

    def host_empty(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self._room_on_host(nbytes, "an offloaded tensor")
        bucket = self._host_pool.get(nbytes)
        if bucket:
            flat = bucket.pop()
            self._host_pooled -= flat.nbytes
        else:
            flat = self._host_alloc(nbytes)
        self._host_used[id(_root(flat))] = nbytes   # (host_free finds it by its root)
        self.host_current += nbytes
        self.host_peak = max(self.host_peak, self.host_current)
        return flat[:nbytes].view(dtype).reshape(shape)

    def host_output(self, shape, dtype) -> np.ndarray:
        """A host array for a loop output written row by row (runtime/host_outputs.py) that
        the caller receives as the fetched value, or a later loop reads: outside the host pool,
        freed when the last holder drops it; pinned on a GPU. Counted in the host bytes in use
        only where the caller holds it with `hold_host` (the run's until its readers are done:
        the plan counts those in its host bytes; a fetched one is the caller's memory)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return self._host_alloc(nbytes)[:nbytes].view(dtype).reshape(shape)

    def hold_host(self, a: np.ndarray, what: str) -> np.ndarray:
        """Count host array `a` (its whole buffer, once however many views) in the host bytes in
        use until it is garbage or `drop_held` runs: a loop output the run writes to host memory,
        or a copy a row reordering makes of one (runtime/host_outputs.py), which a later loop
        reads. `what` names it in a SimulatedDevice's error when its host capacity is
        exceeded."""
        flat = _root(a)
        key = id(flat)
        if key not in self._held:
            self._room_on_host(flat.nbytes, what)
            self._held[key] = (weakref.finalize(flat, self._unhold, key), flat.nbytes)
            self.host_current += flat.nbytes
            self.host_peak = max(self.host_peak, self.host_current)
        return a

    def _room_on_host(self, nbytes: int, what: str) -> None:
        """Raise OutOfMemoryError where `nbytes` more host bytes do not fit (no limit here)."""

    def _unhold(self, key: int) -> None:
        fin, nbytes = self._held.pop(key, (None, 0))
        self.host_current -= nbytes

    def drop_held(self) -> None:
        """Stop counting every array `hold_host` counts (at the end of a run: what is still
        alive is the caller's, a fetched result)."""
        for key in list(self._held):
            fin, nbytes = self._held.pop(key, (None, 0))   # (another thread's run may have
            if fin is not None:                              # dropped it meanwhile)
                fin.detach()
                self.host_current -= nbytes

    def host_free(self, a: np.ndarray) -> None:
        """Give back a buffer from `host_empty` (kept for reuse, up to `pool_limit` bytes)."""
        flat = _root(a)
        self.host_current -= self._host_used.pop(id(flat), 0)   # (0: forgotten by a reset)
        if self._host_pooled + flat.nbytes <= self.pool_limit:
            self._host_pool.setdefault(a.nbytes, []).append(flat)
            self._host_pooled += flat.nbytes

    # --- transfers ------------------------------------------------------------------------------
    def copy_to_host(self, src, dst: np.ndarray):
        """dst[...] = src (device -> host). Returns a ticket for `wait` (None: already done)."""
        np.copyto(dst, src)
        self.bytes_to_host += dst.nbytes
        return None

    def copy_to_device(self, src: np.ndarray, dst, after=None):
        """dst[...] = src (host -> device). Returns a ticket for `wait` (None: already done).
        `after`: a marker from `mark()` taken after dst's last reader; the copy waits for the
        kernels queued up to it only (None: for every kernel queued so far)."""
        np.copyto(dst, src)
        self.bytes_to_device += dst.nbytes
        return None

    def mark(self):
        """A marker of the kernels queued so far, for copy_to_device(after=...); None where
        kernels run before this returns (the CPU)."""
        return None

    def host_stack(self, shape, dtype, host_budget: int | None = None):
        """Host storage for an offloaded stack of shape[0] rows: indexed by row (`stack[t]`, a
        host array that copies read and write), given back with `host_free`. Here one host
        buffer; a GPU device hands out pinned chunks as rows are reached, never more pinned
        bytes than `host_budget` (None: unchecked)."""
        return self.host_empty(shape, dtype)

    def wait(self, ticket) -> None:
        """Make the compute stream wait for a copy (no-op when copies are synchronous)."""

    def copies_mark(self):
        """A ticket of the copies queued so far, for `wait_host` only, holding its own event
        until dropped (a copy's ticket gives its event back at `wait`, to be recorded again
        by the next copy). None where copies are synchronous."""
        return None

    def wait_host(self, ticket) -> None:
        """Block the host until a copy is done (before its buffers are reused or dropped)."""

    def synchronize(self) -> None:
        pass

    def describe(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class CPUDevice(Device):
    """NumPy. 'Host' and 'device' are both RAM; an offloaded row is still written into its
    host stack (and counted in bytes_to_host).

    A budgeted run is not byte-counted unless asked (`report=True`): there is no capacity to
    hold to, the plan is checked against the budget before the run, and counting every
    allocation costs the kernels their fast paths. Such a run reads offloaded rows and fed rows
    left on the host in place (a copy back would move bytes within the same RAM; so its
    bytes_to_device leaves them out, where a counted run counts its copies)."""
    name = "cpu"
    xp = np
    budget_tracks = False
    host_is_device = True


def _root(a: np.ndarray) -> np.ndarray:
    """The array at the bottom of `a`'s chain of views (the buffer the views share)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def get_device(spec) -> Device:
    """'cpu', 'gpu', 'auto', 'simulated' (unlimited; pass a SimulatedDevice for a capacity),
    or a Device instance."""
    if isinstance(spec, Device):
        return spec
    if spec in (None, "cpu"):
        return CPUDevice()
    if spec == "simulated":
        from .simulated import SimulatedDevice   # cycle: runtime/simulated.py imports this module
        return SimulatedDevice()
    if spec in ("gpu", "auto"):
        gpu = feature("device:gpu")   # (backends/cupy offers it; CuPy loads only here)
        reason = "the CuPy backend (rnngraph/backends/cupy) is not installed" if gpu is None \
            else gpu.unavailable_reason()
        if gpu is not None and reason is None:
            return gpu.make()
        if spec == "auto":
            return CPUDevice()
        raise RuntimeError(f"device='gpu' needs CuPy and a CUDA device, but {reason}. Use "
                           "device='cpu', or device='auto' to take the GPU only when there is one.")
    raise ValueError(f"unknown device {spec!r}: use 'cpu', 'gpu', 'auto', 'simulated' or a Device")
