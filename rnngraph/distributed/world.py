"""init / rank / size: which communicator this process (or thread) trains with.

`init()` picks MPI when an MPI launcher (mpiexec, mpirun, srun with PMI) started the process
and one process otherwise, so the same script runs as `python train.py` and as
`mpiexec -n 4 python train.py`, on one machine or several (a hostfile). The choice is
rnngraph's own state: `init` changes nothing else in the process (importing mpi4py initialises
MPI, which is what the user asked for by launching with mpiexec).
"""
from __future__ import annotations

import sys
import threading

from ..errors import DistributedError
from .comm import Communicator, LocalCommunicator, check_timeout
from .mpi import MpiCommunicator, launched_size

DEFAULT_TIMEOUT = 300.0   # seconds a rank waits for the others in one collective

_process: Communicator | None = None   # set by init()
_thread = threading.local()             # .comm: a thread-bound communicator (ThreadCommunicator)


def init(comm=None, timeout: float | None = DEFAULT_TIMEOUT) -> Communicator:
    """Start data-parallel training in this process and return its communicator.

    comm: None (MPI's COMM_WORLD when an MPI launcher started this process, else one process
      without MPI), an mpi4py communicator, or a Communicator (a ThreadCommunicator binds to
      the calling thread).
    timeout: seconds one MPI collective waits for the other ranks before it raises a
      DistributedError (a rank died or runs other code); None waits forever. The first
      training step waits while every rank compiles, so leave room for that. (A Communicator
      passed in keeps its own timeout.)

    Started as several processes without mpi4py installed: DistributedError. Calling init
    again replaces the communicator."""
    global _process
    timeout = check_timeout(timeout)
    if comm is None:
        size = launched_size()
        if size is None and "mpi4py.MPI" not in sys.modules:
            comm = LocalCommunicator()
        elif size == 1 and "mpi4py.MPI" not in sys.modules and not _has_mpi4py():
            comm = LocalCommunicator()   # `mpiexec -n 1` without mpi4py: one process is fine
        else:
            comm = MpiCommunicator(None, timeout)
    elif not isinstance(comm, Communicator):
        if not all(hasattr(comm, a) for a in ("Get_rank", "Get_size", "Iallreduce")):
            raise TypeError(f"comm must be None, an mpi4py communicator or a rnngraph "
                            f"Communicator, got {type(comm).__name__}")
        comm = MpiCommunicator(comm, timeout)
    if comm.thread_bound:
        _thread.comm = comm
    else:
        _process = comm
    return comm


def _has_mpi4py() -> bool:
    import importlib.util   # only here: a probe for an optional package
    return importlib.util.find_spec("mpi4py") is not None


def current() -> Communicator:
    """This thread's communicator (from init); DistributedError before init."""
    comm = getattr(_thread, "comm", None) or _process
    if comm is None:
        raise DistributedError("rnngraph.distributed: call init() first (once per process, "
                               "before building or running a distributed graph)")
    return comm


def is_initialized() -> bool:
    return (getattr(_thread, "comm", None) or _process) is not None


def rank() -> int:
    """This process's rank, 0 .. size()-1 (0 alone writes checkpoints and logs)."""
    return current().rank


def size() -> int:
    """How many processes train together."""
    return current().size


def is_root() -> bool:
    """rank() == 0: the rank that writes checkpoints and logs."""
    return current().rank == 0


def barrier() -> None:
    """Wait until every rank has called barrier() (or the timeout: DistributedError)."""
    current().barrier()
