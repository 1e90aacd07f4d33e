"""Ordering and memory for copies between a CUDA device and the host, with no host waits.

Copies run on one side stream. They are ordered against the compute stream with events lent
by two pools (EventRing: one recorded on the compute stream for `mark()`, one on the transfer
stream for each copy's ticket). An event is lent to one holder at a time (a Ticket or a Mark)
and goes back to its pool once its wait has been queued (`CupyDevice.wait`, or the copy that
waited on a mark) or its holder is dropped; only then may it be recorded again. So a wait
always waits for the record its holder was given, never for a later copy or kernel (which would
be safe, a stream's `wait_event` waiting for a later point of the same stream, but would make
copies wait for compute they do not depend on and defeat the overlap). A pool makes events only
when all of its events are lent: as many as there are holders alive at once (rows in flight and
marked buffers: a few per offloaded stack, whatever the number of steps), up to `limit`
events; past that (more holders than the limit) it lends the oldest again, which is still safe.
A run at any number of steps therefore makes no events once the pools have grown to the
plan's rows in flight.

Nothing here blocks the host: a device row whose copy to the host is queued stays referenced by
its ticket until the compute stream has been told to wait for the copy (`CupyDevice.wait`);
from then on, whatever the compute stream does with the row's memory (CuPy's pool hands freed
blocks back to the stream that allocated them) is ordered after the copy.

Host rows of an offloaded stack live in pinned chunks (PinnedStack) that the device hands out
as the forward loop reaches them, never holding more pinned bytes than the run's host_budget.
"""
from __future__ import annotations

import numpy as np


EVENT_LIMIT = 4096       # events in one pool at most (past it, events are lent again)


class EventRing:
    """CUDA events recorded on one stream, each lent to one holder at a time (see the module
    docstring): `record` lends a free event (making one if none is free and the pool has fewer
    than `limit`), `release` takes it back."""

    def __init__(self, cuda, size: int, limit: int = EVENT_LIMIT):
        if int(size) < 1:
            raise ValueError(f"an event ring needs at least one event, got size={size!r}")
        self._cuda = cuda
        self.events = [cuda.Event(disable_timing=True) for _ in range(int(size))]
        self._free = list(reversed(self.events))
        self._lent: dict = {}      # id(event) -> holders
        self.limit = max(int(limit), len(self.events))
        self._next = 0             # (at the limit: the next event to lend again)
        self.relent = 0            # times an event was lent while still held (at the limit)

    def record(self, stream):
        """A free event (else a new one, else the oldest), recorded now on `stream`."""
        if self._free:
            ev = self._free.pop()
        elif len(self.events) < self.limit:
            ev = self._cuda.Event(disable_timing=True)
            self.events.append(ev)
        else:
            ev = self.events[self._next]
            self._next = (self._next + 1) % len(self.events)
            self.relent += 1
        self._lent[id(ev)] = self._lent.get(id(ev), 0) + 1
        ev.record(stream)
        return ev

    def release(self, ev) -> None:
        """The holder of `ev` has queued its wait (or is gone): `ev` may be recorded again."""
        n = self._lent.get(id(ev), 0) - 1
        if n > 0:
            self._lent[id(ev)] = n
        elif n == 0:
            del self._lent[id(ev)]
            self._free.append(ev)

    @property
    def lent(self) -> int:
        """Events lent now."""
        return len(self.events) - len(self._free)

    def __len__(self) -> int:
        return len(self.events)


class _Holder:
    """Holds an event lent by an EventRing; gives it back once (`release`, or when dropped)."""
    __slots__ = ()

    def release(self) -> None:
        ring, self._ring = self._ring, None
        if ring is not None:
            ring.release(self.event)

    def __del__(self):
        ring = getattr(self, "_ring", None)
        if ring is not None:
            self._ring = None
            ring.release(self.event)


class Mark(_Holder):
    """A point of the compute stream (CupyDevice.mark): the event recorded there. A copy that
    waits on it (`copy_to_device(after=)`) gives the event back."""
    __slots__ = ("event", "_ring")

    def __init__(self, event, ring):
        self.event, self._ring = event, ring


class Ticket(_Holder):
    """A queued copy: the event recorded after it on the transfer stream, the arrays that must
    stay alive until the compute stream is ordered after it, and a device scratch buffer (a
    contiguous copy of a strided row) to give back then."""
    __slots__ = ("event", "keep", "scratch", "_ring")

    def __init__(self, event, keep, scratch=None, ring=None):
        self.event = event
        self.keep = keep
        self.scratch = scratch
        self._ring = ring


class PinnedStack:
    """Host storage of one offloaded stack: its rows in pinned chunks of `per_chunk` rows.

    A chunk is taken from the device (`CupyDevice.pinned_chunk`, which checks `host_budget`)
    the first time one of its rows is indexed, so a stack that is never filled never pins its
    whole size, and one allocation is never larger than a chunk. `stack[t]` is row t, a NumPy
    view of pinned memory that copies read and write.
    """

    def __init__(self, dev, shape, dtype, chunk_bytes: int, host_budget: int | None):
        self.dev = dev
        self.n = int(shape[0])
        self.row_shape = tuple(int(d) for d in shape[1:])
        self.dtype = np.dtype(dtype)
        self.row_nbytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.per_chunk = max(1, int(chunk_bytes) // max(1, self.row_nbytes))
        self.chunks: list = [None] * (-(-self.n // self.per_chunk))
        self.host_budget = host_budget

    @property
    def shape(self):
        return (self.n,) + self.row_shape

    @property
    def nbytes(self) -> int:
        return self.n * self.row_nbytes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, t):
        t = int(t)
        if t < 0:
            t += self.n
        if not 0 <= t < self.n:
            raise IndexError(f"row {t} of an offloaded stack of {self.n} rows")
        c, i = divmod(t, self.per_chunk)
        chunk = self.chunks[c]
        if chunk is None:
            rows = min(self.per_chunk, self.n - c * self.per_chunk)
            chunk = self.chunks[c] = self.dev.pinned_chunk((rows,) + self.row_shape, self.dtype,
                                                           self.host_budget)
        return chunk[i, ...]   # (a view, also where rows are scalars)

    def pinned_bytes(self) -> int:
        return sum(c.nbytes for c in self.chunks if c is not None)

    def free(self) -> None:
        """Give every chunk back to the device (copies still queued on the transfer stream
        that read them are ordered before any later copy into them: same stream)."""
        chunks, self.chunks = self.chunks, []
        for c in chunks:
            if c is not None:
                self.dev.host_free(c)


def pool_bytes(nbytes: int, granularity: int) -> int:
    """The bytes an allocator handing out multiples of `granularity` takes for `nbytes`
    (CuPy's memory pool: 512; an empty array takes nothing)."""
    nbytes = int(nbytes)
    if nbytes <= 0 or granularity <= 1:
        return max(nbytes, 0)
    return -(-nbytes // granularity) * granularity


def cublas_workspace_bytes(compute_capability, config: str | None = None) -> int:
    """The device memory cuBLAS keeps outside CuPy's pool for its workspace: what
    CUBLAS_WORKSPACE_CONFIG (`:SIZE_KiB:COUNT` pairs) says, else cuBLAS's documented default
    (32 MiB on Hopper, compute capability 9.x; 4 MiB before). Read, never set."""
    if config:
        total = 0
        fields = [f for f in config.split(":") if f]
        for size, count in zip(fields[0::2], fields[1::2]):
            if size.isdigit() and count.isdigit():
                total += int(size) * 1024 * int(count)
        if total:
            return total
    try:
        major = int(str(compute_capability)[:-1] or 0)
    except ValueError:
        major = 0
    return (32 << 20) if major >= 9 else (4 << 20)
