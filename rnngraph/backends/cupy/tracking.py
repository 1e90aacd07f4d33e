"""A tracking allocator over CuPy's memory pool: the bytes the pool hands out, now and at most.

    with PoolTracker() as pool:        # installed with cupy.cuda.set_allocator, put back after
        sess.run(fetches, feed)
        cupy.cuda.Device().synchronize()
    pool.peak                          # bytes, each allocation as the pool rounds it

It counts what goes through CuPy's allocator only: memory a library keeps outside the pool
(cuBLAS's workspace) is not in it. Used by the GPU tests and benchmarks/gpu_check.py to measure
what the planner's GPU byte model predicts.
"""
from __future__ import annotations

import weakref


class PoolTracker:
    """Counts the bytes CuPy's default memory pool hands out while installed (`with`).

    Args:
      cupy: the CuPy module (default: imported now; CuPy is optional, so only when made).
    """

    def __init__(self, cupy=None):
        if cupy is None:
            import cupy   # optional: only a GPU run makes a tracker
        self.cp = cupy
        self.pool = cupy.get_default_memory_pool()
        self.current = self.peak = 0
        self._prev = None

    def malloc(self, size: int):
        mem = self.pool.malloc(size)
        n = mem.mem.size                  # what the pool took (its rounding included)
        self.current += n
        self.peak = max(self.peak, self.current)
        owned = self.cp.cuda.memory.UnownedMemory(mem.ptr, size, mem)
        weakref.finalize(owned, self._free, n)
        return self.cp.cuda.memory.MemoryPointer(owned, 0)

    def _free(self, n: int) -> None:
        self.current -= n

    def reset_peak(self) -> None:
        """Start a new peak from the bytes held now."""
        self.peak = self.current

    def __enter__(self) -> "PoolTracker":
        self._prev = self.cp.cuda.get_allocator()
        self.cp.cuda.set_allocator(self.malloc)
        return self

    def __exit__(self, *exc) -> bool:
        self.cp.cuda.set_allocator(self._prev)
        return False
