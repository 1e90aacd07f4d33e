"""Large arrays of earlier runs, handed out again once nobody holds them (untracked NumPy runs).

A fresh large NumPy array costs a page fault per page on first touch (NumPy asks the kernel for
transparent huge pages, which are zeroed on fault); with two BLAS threads writing a fresh
[T*B, 4H] product, measured at batch 16, T 1000, hidden 128: 12-44 ms against 12 ms into a
reused buffer. Loop stacks and large products therefore keep their buffer from one run to the
next and refill it, if the refcount says the previous run's result has been dropped.
"""
from __future__ import annotations

import sys
import threading

import numpy as np

# reuse relies on sys.getrefcount counting every holder; CPython 3.14 may borrow references
# from frames (and free-threaded builds defer counts), so newer interpreters allocate afresh
REFCOUNTS_EXACT = sys.version_info < (3, 14) and getattr(sys, "_is_gil_enabled", lambda: True)()

POOL_MIN_BYTES = 1 << 20   # smaller arrays come from malloc's heap without page faults


class BufferPool:
    """Arrays by key (a slot, a shape, a dtype), reused once nobody else references them.

    One array per key is kept, so an idle session holds at most one run's buffers. A view of a
    pooled array references it, so a caller holding any part of a result keeps it from reuse.
    Only NumPy's arrays are kept: another array module (CuPy) has a memory pool of its own,
    where a kept buffer would hold device memory between runs that other programs could use
    (and that a tracked run, which takes no buffer from here, would hold beside its own)."""

    def __init__(self, xp, keep: int = 1):
        self.xp, self.keep = xp, keep if xp is np else 0
        self.free: dict = {}
        self._lock = threading.Lock()   # two threads running one Program must not share a buffer

    def get(self, slot, shape, dtype, zero_from=None):
        """An array of `shape` for user `slot`, whose rows from `zero_from` on are zero (None:
        contents undefined)."""
        key = (slot, tuple(shape), np.dtype(dtype))   # (str(dtype) is slow Python code)
        with self._lock:
            arrays = self.free.setdefault(key, [])
            for arr in arrays if REFCOUNTS_EXACT else ():
                # references: the list, `arr`, getrefcount's argument; more: someone holds it
                if sys.getrefcount(arr) <= 3:
                    break   # our local `arr` now keeps other threads off it
            else:
                arr = self.xp.zeros(shape, dtype) if zero_from is not None else \
                    self.xp.empty(shape, dtype)
                if len(arrays) < self.keep:
                    arrays.append(arr)
                return arr
        if zero_from is not None:
            arr[zero_from:] = 0
        return arr


def output_pool(program):
    """A pool for a kernel's large outputs, or None where each run must allocate: tracked
    programs count every allocation, and CuPy keeps a memory pool of its own."""
    if program.tracked or program.ctx.xp is not np or not REFCOUNTS_EXACT:
        return None
    return BufferPool(np)


def pooled(pool, program, nbytes: int) -> bool:
    """Does an output of `nbytes` come from `pool`? Only large ones, and only while no memory
    plan is in force (a plan's budget counts what each run allocates)."""
    return pool is not None and nbytes >= POOL_MIN_BYTES and program.ctx.plan is None


def pooled_empty(pool, program, shape, dtype, slot=0):
    """An uninitialised array: from `pool` (as user `slot`) where `pooled` says so, else fresh."""
    nbytes = np.dtype(dtype).itemsize
    for d in shape:
        nbytes *= d
    if not pooled(pool, program, nbytes):
        return np.empty(shape, dtype)
    return pool.get(slot, shape, dtype)


def pooled_copy(pool, slot, x):
    """x as one C-contiguous array in `pool`'s buffer for user `slot` (refilled each call)."""
    out = pool.get(slot, x.shape, x.dtype)
    out[...] = x
    return out


def pooled_alloc(program):
    """`alloc(shape, dtype, slot)` for a kernel's large outputs and scratch arrays (pooled where
    `pooled` says so), or None where every run allocates afresh."""
    pool = output_pool(program)
    if pool is None:
        return None
    return lambda shape, dtype, slot=0: pooled_empty(pool, program, shape, dtype, slot)
