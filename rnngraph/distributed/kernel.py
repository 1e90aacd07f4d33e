"""The allreduce node's kernel (every backend): pack, sum over the ranks, unpack.

Each step packs count * gradient for every gradient, and the count itself last, into one flat
buffer of the widest gradient dtype (one message per step), sums it over the ranks in place,
and returns views of it divided by the total count. Arrays on a GPU go through host memory.
Before a fingerprint's first step the ranks compare fingerprints (an allgather of 16 bytes);
one process skips all of it.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import DistributedError
from ..kernels import ANY, register
from .op import AllReduceGradients, buffer_dtype
from .world import current


@register(AllReduceGradients, ANY)
def allreduce_kernel(op, node, program):
    grad_types = [v.type for v in node.inputs[1:]]
    dtype = buffer_dtype(grad_types)
    sizes = [int(np.prod(t.shape)) for t in grad_types]
    ends = np.cumsum(sizes).tolist()
    starts = [e - s for e, s in zip(ends, sizes)]
    shapes = [tuple(t.shape) for t in grad_types]
    out_dtypes = [t.dtype for t in grad_types]
    n = ends[-1]
    xp = program.ctx.xp
    on_host = xp is np

    def run(count, *grads):
        comm = current()
        if comm.size == 1:
            return (np.asarray(float(count), dtype=np.float64), *grads)
        if op.fingerprint not in comm.verified:
            check_same_graph(comm, op.fingerprint, node)
        c = float(count)
        if c == 0:   # an empty shard adds nothing (not 0 * a NaN from its loss's 0 / 0)
            buffer = np.zeros(n + 1, dtype=dtype)
        else:
            buffer = np.empty(n + 1, dtype=dtype)
            for g, a, b in zip(grads, starts, ends):
                g = g if on_host else xp.asnumpy(g)
                np.multiply(np.asarray(g).reshape(-1), c, out=buffer[a:b])
        buffer[n] = c
        start = time.perf_counter()
        comm.allreduce_sum(buffer)
        stats = comm.stats
        stats["allreduce_seconds"] += time.perf_counter() - start
        stats["allreduce_calls"] += 1
        stats["allreduce_bytes"] += buffer.nbytes
        total = float(buffer[n])
        if not total > 0:
            raise DistributedError(f"{node.describe()}: the ranks saw {total:g} examples in "
                                   "all this step (every shard was empty)")
        buffer[:n] /= total
        outs = [buffer[a:b].reshape(s).astype(d, copy=False)
                for a, b, s, d in zip(starts, ends, shapes, out_dtypes)]
        if not on_host:
            outs = [xp.asarray(o) for o in outs]
        return (np.asarray(total, dtype=np.float64), *outs)
    return run


def check_same_graph(comm, fp: str, node) -> None:
    prints = [p.decode("ascii", "replace") for p in comm.allgather_bytes(fp.encode("ascii"))]
    if len(set(prints)) > 1:
        by_rank = ", ".join(f"rank {r}: {p[:12]}" for r, p in enumerate(prints))
        raise DistributedError(
            f"{node.describe()}: the ranks built different graphs for their gradients "
            f"(fingerprints {by_rank}); every rank must build the same model and optimizer")
    comm.verified.add(fp)
