"""The MPI communicator (mpi4py), and how a process knows that mpiexec started it.

Collectives are MPI's non-blocking ones (Iallreduce, Iallgather, Ibcast), completed by polling
the request: the wait polls at once for a second (as MPI's blocking calls do, but yielding the
core between polls), then in 1 ms steps, and gives up after the communicator's timeout with a
DistributedError. MPI itself would block forever on a collective that a dead rank never joins
(when the launcher does not kill the job first).
"""
from __future__ import annotations

import os
import time

import numpy as np

from ..errors import DistributedError
from .comm import Communicator

# environment variables set by the launchers of MPICH / Intel MPI (hydra, PMI), Open MPI, PMIx
# and MVAPICH: their presence means "started by mpiexec", and their value is the world size
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("PMIX_RANK",)


def launched_size() -> int | None:
    """The number of processes an MPI launcher started, from the environment it set (read
    only), or None when no launcher seems to have started this process. 0: launched, size
    unknown (PMIx)."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    if any(name in os.environ for name in _RANK_VARIABLES):
        return 0
    return None


def import_mpi(size_hint: int | None = None):
    """mpi4py's MPI module, or a DistributedError saying how to install it."""
    try:
        from mpi4py import MPI   # optional: the `mpi` extra; importing it initialises MPI
    except ImportError as exc:
        procs = f"{size_hint} processes" if size_hint else "several processes"
        raise DistributedError(
            f"rnngraph.distributed: this program was started as {procs} (mpiexec), which needs "
            f"mpi4py and an MPI library: pip install 'rnngraph[mpi]' ({exc})") from None
    return MPI


class MpiCommunicator(Communicator):
    """An mpi4py communicator (default: COMM_WORLD) with timeouts on every collective."""

    def __init__(self, comm=None, timeout: float | None = 300.0):
        super().__init__()
        self.MPI = import_mpi(launched_size())
        self.comm = self.MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timeout = timeout

    def _wait(self, request, what: str) -> None:
        if self.timeout is None:
            request.Wait()
            return
        start = time.perf_counter()
        deadline = start + self.timeout
        while not request.Test():
            now = time.perf_counter()
            if now > deadline:
                raise DistributedError(
                    f"{what}: rank {self.rank} of {self.size} waited {self.timeout:g} s for the "
                    f"other ranks, which did not answer (a rank died, hangs, or runs other "
                    f"code); this process cannot continue the run") from None
            # for the first second poll again at once, only yielding the core to a process
            # that waits for it (MPICH progresses a collective only while a rank polls it:
            # sleeping even 50 us between polls made a 100 KB allreduce 5x slower), then in
            # 1 ms steps (a rank still compiling)
            if now - start < 1.0:
                os.sched_yield()
            else:
                time.sleep(1e-3)

    def allreduce_sum(self, buffer):
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM),
                   "allreduce")

    def allgather_bytes(self, data):
        send = np.frombuffer(bytes(data), dtype=np.uint8)
        recv = np.empty((self.size, send.size), dtype=np.uint8)
        self._wait(self.comm.Iallgather(send, recv), "allgather")
        return [row.tobytes() for row in recv]

    def broadcast(self, buffer, root=0):
        if not 0 <= root < self.size:
            raise ValueError(f"root must be a rank in 0..{self.size - 1}, got {root}")
        self._wait(self.comm.Ibcast(buffer, root=root), "broadcast")

    def barrier(self):
        self._wait(self.comm.Ibarrier(), "barrier")

    def describe(self):
        return f"MPI rank {self.rank} of {self.size}"
