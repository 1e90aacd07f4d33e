"""shard: this rank's part of a batch or a data set."""
from __future__ import annotations

import numpy as np

from .world import current


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of rank's part of n items: consecutive parts whose sizes differ by at most
    one, the larger ones first (as numpy.array_split)."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard(data, rank: int | None = None, size: int | None = None):
    """This rank's consecutive part of `data` along its first axis.

    data: an array (or anything with len() and slicing: a list of examples), or a tuple or dict
      of them, or a list of arrays, all of one length (e.g. (X, y, sequence_length)), sharded
      alike; the same structure comes back.
    rank, size: default to this process's (init()). Parts differ in size by at most one; a rank
    may get an empty part when there are fewer items than ranks (DistributedOptimizer weighs
    each rank by its count, so the gradient is still the whole batch's)."""
    if rank is None or size is None:
        comm = current()
        rank = comm.rank if rank is None else rank
        size = comm.size if size is None else size
    for what, x in (("rank", rank), ("size", size)):
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise TypeError(f"{what} must be an int, got {x!r}")
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"need 0 <= rank < size, got rank {rank}, size {size}")
    structured = isinstance(data, (tuple, dict)) or (
        isinstance(data, list) and data and all(isinstance(x, np.ndarray) for x in data))
    if not structured:
        leaves = [data]
    else:
        leaves = list(data.values()) if isinstance(data, dict) else list(data)
    lengths = {_length(x) for x in leaves}
    if len(lengths) > 1:
        raise ValueError(f"shard: the parts of data have different lengths {sorted(lengths)}")
    if not lengths:
        raise ValueError("shard: nothing to shard (empty structure)")
    start, stop = shard_bounds(lengths.pop(), int(rank), int(size))
    if not structured:
        return data[start:stop]
    if isinstance(data, dict):
        return {k: v[start:stop] for k, v in data.items()}
    parts = [x[start:stop] for x in data]
    if hasattr(data, "_fields"):   # a namedtuple
        return type(data)(*parts)
    return type(data)(parts)


def _length(x) -> int:
    if isinstance(x, np.ndarray) and x.ndim == 0:
        raise ValueError("shard: a scalar has no first axis to split")
    try:
        return len(x)
    except TypeError:
        raise TypeError(f"shard: cannot split a {type(x).__name__} (no len())") from None
