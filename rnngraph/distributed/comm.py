"""What the distributed layer asks of a communicator, and the one-process communicator.

A communicator is `size` processes (or threads) numbered 0 .. size-1 that make the same
collective calls in the same order. rnngraph needs four collectives, all on NumPy arrays in
host memory: a summing allreduce in place, an allgather of a few bytes (the graph
fingerprints), a broadcast in place and a barrier. Each waits at most `timeout` seconds for the
other ranks (None: forever) and raises a DistributedError naming the collective when they do
not come, so a dead rank stops the others with an error instead of a hang.
"""
from __future__ import annotations

import numpy as np


class Communicator:
    """The collectives the distributed layer uses. Subclasses: LocalCommunicator (one process),
    MpiCommunicator (mpi4py), ThreadCommunicator (ranks as threads of one process, for tests)."""

    rank: int = 0
    size: int = 1
    timeout: float | None = None
    thread_bound = False   # True: init() binds it to the calling thread only (one rank per thread)

    def __init__(self):
        self.verified: set[str] = set()   # graph fingerprints all ranks agreed on
        # the allreduce node's calls, the bytes it sent and the seconds it waited in the
        # collective (waiting for slower ranks included): what a step spends communicating
        self.stats = {"allreduce_calls": 0, "allreduce_bytes": 0, "allreduce_seconds": 0.0}

    def allreduce_sum(self, buffer: np.ndarray) -> None:
        """Replace `buffer` (contiguous, the same size and dtype on every rank) by its sum over
        the ranks, the same on every rank."""
        raise NotImplementedError

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's `data` (the same length on every rank), in rank order."""
        raise NotImplementedError

    def broadcast(self, buffer: np.ndarray, root: int = 0) -> None:
        """Overwrite `buffer` with rank `root`'s."""
        raise NotImplementedError

    def barrier(self) -> None:
        """Return when every rank has called it."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{type(self).__name__}(rank {self.rank} of {self.size})"

    def __repr__(self) -> str:
        return self.describe()


class LocalCommunicator(Communicator):
    """One process, no MPI: every collective is the identity."""

    def allreduce_sum(self, buffer):
        pass

    def allgather_bytes(self, data):
        return [bytes(data)]

    def broadcast(self, buffer, root=0):
        if root != 0:
            raise ValueError(f"root must be 0 with one process, got {root}")

    def barrier(self):
        pass


def check_timeout(timeout) -> float | None:
    """`timeout` as seconds > 0, or None (wait forever); ValueError otherwise."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
    return float(timeout)
