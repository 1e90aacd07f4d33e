"""Ranks as threads of one process: the same collectives as MPI, for tests and for trying the
data-parallel code without launching processes.

    comms = ThreadCommunicator.create(2)
    # in thread r: rnngraph.distributed.init(comms[r]); build the graph; train

Each thread binds its communicator with `init` (a ThreadCommunicator is bound to the calling
thread only), builds its own graph and Session, and makes the same calls as an MPI rank would.
Sums are taken in rank order, so every rank gets the same bits. A thread that fails should call
`abort()` so the others stop at their next collective instead of waiting for the timeout.
"""
from __future__ import annotations

import threading

import numpy as np

from ..errors import DistributedError
from .comm import Communicator, check_timeout


class _Hub:
    def __init__(self, size: int, timeout):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=timeout)
        self.slots: list = [None] * size


class ThreadCommunicator(Communicator):
    thread_bound = True

    def __init__(self, hub: _Hub, rank: int, timeout):
        super().__init__()
        self._hub, self.rank, self.size, self.timeout = hub, rank, hub.size, timeout

    @classmethod
    def create(cls, size: int, timeout: float | None = 60.0) -> list["ThreadCommunicator"]:
        """`size` communicators, one per rank, to hand to `size` threads."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an int >= 1, got {size!r}")
        timeout = check_timeout(timeout)
        hub = _Hub(size, timeout)
        return [cls(hub, r, timeout) for r in range(size)]

    def _sync(self, what: str) -> None:
        try:
            self._hub.barrier.wait()
        except threading.BrokenBarrierError:
            raise DistributedError(
                f"{what}: rank {self.rank} of {self.size}: the other ranks did not answer"
                + (f" within {self.timeout:g} s" if self.timeout is not None else "")
                + ", or one of them failed (abort)") from None

    def _exchange(self, value, what: str) -> list:
        hub = self._hub
        hub.slots[self.rank] = value
        self._sync(what)
        values = list(hub.slots)
        try:   # nobody overwrites a slot before every rank has read them all
            hub.barrier.wait()
        except threading.BrokenBarrierError:
            pass   # a rank that failed after reading (abort) ends the next collective instead
        return values

    def allreduce_sum(self, buffer):
        parts = self._exchange(np.array(buffer, copy=True), "allreduce")
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        buffer[...] = total

    def allgather_bytes(self, data):
        return self._exchange(bytes(data), "allgather")

    def broadcast(self, buffer, root=0):
        if not 0 <= root < self.size:
            raise ValueError(f"root must be a rank in 0..{self.size - 1}, got {root}")
        parts = self._exchange(np.array(buffer, copy=True) if self.rank == root else None,
                               "broadcast")
        buffer[...] = parts[root]

    def barrier(self):
        self._sync("barrier")

    def abort(self) -> None:
        """Make every rank's current or next collective fail at once (a DistributedError)."""
        self._hub.barrier.abort()

    def describe(self):
        return f"thread rank {self.rank} of {self.size}"
