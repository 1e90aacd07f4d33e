"""Ordering and memory for copies between a CUDA device and the host, with no host waits.

Copies run on one side stream. They are ordered against the compute stream with events taken
round-robin from two fixed rings (one recorded on the compute stream, one on the transfer
stream), so a run at any number of steps creates no events after the device is made.

Why reusing an event is safe: a stream's `wait_event` waits for the event's record as it was
when the wait was queued, and every record of a ring's event is on the same stream, later than
the one before. A wait queued after the event was recorded again therefore waits for a later
point of the same stream: longer, never too short. The ring's size only decides how rarely
that happens (a ticket waited on within `size` copies never waits longer than it must).

Nothing here blocks the host: a device row whose copy to the host is queued stays referenced by
its ticket until the compute stream has been told to wait for the copy (`CupyDevice.wait`);
from then on, whatever the compute stream does with the row's memory (CuPy's pool hands freed
blocks back to the stream that allocated them) is ordered after the copy.

Host rows of an offloaded stack live in pinned chunks (PinnedStack) that the device hands out
as the forward loop reaches them, never holding more pinned bytes than the run's host_budget.
"""
from __future__ import annotations

import numpy as np


class EventRing:
    """A fixed set of CUDA events, recorded in turn on the streams given to `record`."""

    def __init__(self, cuda, size: int):
        if int(size) < 1:
            raise ValueError(f"an event ring needs at least one event, got size={size!r}")
        self.events = [cuda.Event(disable_timing=True) for _ in range(int(size))]
        self._next = 0

    def record(self, stream):
        """The next event of the ring, recorded now on `stream`."""
        ev = self.events[self._next]
        self._next = (self._next + 1) % len(self.events)
        ev.record(stream)
        return ev

    def __len__(self) -> int:
        return len(self.events)


class Ticket:
    """A queued copy: the event recorded after it on the transfer stream, the arrays that must
    stay alive until the compute stream is ordered after it, and a device scratch buffer (a
    contiguous copy of a strided row) to give back then."""
    __slots__ = ("event", "keep", "scratch")

    def __init__(self, event, keep, scratch=None):
        self.event = event
        self.keep = keep
        self.scratch = scratch


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
        return chunk[i]

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
