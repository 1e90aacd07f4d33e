"""Which of a loop body's ports are batch rows, so the loop may run a step on a prefix of them.

A loop with active rows (dynamic_rnn with sequence_length) gets, per step, the number of rows
still active; its rows are sorted so that those are a prefix. It may then feed its body only
that prefix of every *batched* carried value and sequence slice, leave the other rows of the
carried state as they are, and write zeros to the other rows of its per-step stacks. That is
exactly what the body's own masking (where(active, new, old), where(active, out, 0)) does to
those rows, so running the prefix is an optimisation the kernel may take or decline.

Batched ports are the ones whose leading dimension is unknown (None) in the body: dynamic_rnn
builds such bodies with the batch dimension left open. To check the convention, the body's types
are inferred again with that dimension set to a sentinel size: a result is batched when the
sentinel leads its shape, unbatched when it does not occur; anything else declines.

`strict` (the forward body, checked when dynamic_rnn builds the loop) also demands that rows
never mix: every node reading a batched value produces batched values only, so running a prefix
cannot change the rows it keeps. The gradient loop of such a body sums per-row contributions
(weight gradients), which is why it is checked only leniently.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import feature
from .fused import Fused

from ..ir.types import TensorType

SENTINEL = 1_000_003   # a batch size no real dimension equals

# a step runs on its active rows rounded up to a multiple of this (at most the batch): BLAS
# multiplies a multiple of 8 rows faster than fewer odd ones (benchmarks/rnn.py, padded S1
# LSTM: [k, 256] @ [256, 1024] took 71 us for k = 8, 119 us for k = 5); the extra rows are
# finished ones, which the body's masking keeps exactly as they were
ROW_ALIGN = 8


def row_align(xp, dtype) -> int:
    """The rounding for a loop computing in `dtype`: none where its per-step products are ours
    (float32 on the CPU, the numba backend's packed GEMM, when wanted), whose edge kernels take
    any number of rows at about its share of the cost (padded S1 LSTM: 58.9 ms against 60.2 rounded to 8); else
    ROW_ALIGN. It depends on the dtype only, so a loop and its gradient loop agree."""
    gemm = feature("packed_gemm")
    if xp is np and np.dtype(dtype) == np.float32 and gemm is not None and gemm.wanted():
        return 1
    return ROW_ALIGN


def active_width(counts, batch: int, align: int = ROW_ALIGN):
    """The rows a step with `counts` active rows runs on (array or int): rounded up to a
    multiple of `align`, at most `batch`; a single row stays one (a matrix-vector product:
    18 us against 59 us for 8 rows, same product)."""
    rounded = -(-counts // align) * align
    return np.minimum(np.where(counts == 1, 1, rounded), batch)


@dataclass(frozen=True)
class RowLayout:
    """Per port group, whether each port is batched (in the body's param/result order)."""
    carried: tuple
    sequence: tuple
    output: tuple
    residual: tuple


def _has(t: TensorType) -> bool:
    return SENTINEL in t.shape


def _leading(t: TensorType) -> bool:
    return t.rank >= 1 and t.shape[0] == SENTINEL and SENTINEL not in t.shape[1:]


def _open_leading(t: TensorType) -> bool:
    return t.rank >= 1 and t.shape[0] is None


def row_layout(body, strict: bool = False) -> RowLayout | None:
    """The body's batched ports, or None when the body does not follow the convention."""
    if body.results.get("cond"):
        return None  # a while-loop's condition could read any row
    params = body.params
    if any(_open_leading(p.type) for p in params.get("invariant", [])):
        return None  # an invariant that may hold batch rows would not be cut to the prefix
    types: dict = {}
    for role in ("carried", "sequence"):
        for p in params.get(role, []):
            t = p.type
            types[p] = TensorType((SENTINEL,) + t.shape[1:], t.dtype) if _open_leading(t) else t
    for node in body.nodes:
        op = node.op
        if op.name == "param":
            continue
        if op.subgraphs():
            return None
        ins = [types.get(v, v.type) for v in node.inputs]
        try:
            outs = op.retype(ins) if isinstance(op, Fused) else op.infer(*ins)
        except Exception:  # noqa: BLE001  the rows do not line up with some other size
            return None
        outs = [outs] if isinstance(outs, TensorType) else list(outs)
        if strict and any(_has(t) for t in ins) and not all(_leading(t) for t in outs):
            return None  # this node mixes rows (or drops the batch dimension)
        for v, t in zip(node.outputs, outs):
            types[v] = t

    def classify(vals):
        flags = []
        for v in vals:
            t = types.get(v, v.type)
            if _leading(t):
                flags.append(True)
            elif _has(t) or _open_leading(t):
                return None
            else:
                flags.append(False)
        return tuple(flags)

    groups = [classify(params.get("carried", [])), classify(params.get("sequence", [])),
              classify(body.results["output"]), classify(body.results["residual"])]
    if any(g is None for g in groups):
        return None
    if not any(groups[0]) and not any(groups[1]):
        return None  # nothing is batched: nothing to cut
    carried_out = classify(body.results["carried"])
    if carried_out != groups[0]:
        return None  # the next state must be batched exactly where the state is
    return RowLayout(*groups)
