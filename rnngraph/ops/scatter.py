"""scatter_add_rows: rows added into a tensor at integer indices (an embedding's gradient summed
one step at a time).

  scatter_add_rows(acc, indices, updates)  ->  acc with updates[i] added to row indices[i]
                                               (repeated indices accumulate), tf.scatter_add
                                               on a tensor rather than a variable

`updates` has shape indices.shape + acc.shape[1:]. The sink_gather pass (passes/sink_gather.py)
makes one per step of a backward loop: the embedding matrix's gradient is then a carried
[vocab, dim] accumulator that each step adds its batch's rows to, instead of a [T, batch, dim]
stack of input gradients that gather_grad scatters once after the loop.

`in_place` (a declared attribute, printed and saved) says the node may write into `acc`'s buffer
and return it: its output is then that buffer (the memory model counts it as a view of `acc`).
The pass sets it only where nothing else reads `acc`: a loop's carried accumulator, whose
initial value is an `accumulator_zeros` node made for it and read by that loop alone (an op
that passes never merge or fold, so the buffer stays that loop's after a save and a reload).
"""
from __future__ import annotations

from ..dtypes import is_integer
from ..errors import ShapeError
from ..ir.types import TensorType
from .base import Op, apply, as_value
from .fill import _scatter_add, check_ids, gather


class ScatterAddRows(Op):
    """acc with each row of `updates` added at its index along axis 0."""
    name = "scatter_add_rows"

    def __init__(self, in_place: bool = False):
        self.in_place = bool(in_place)

    def infer(self, acc, indices, updates):
        if acc.rank == 0:
            raise ShapeError("scatter_add_rows: acc must have rank >= 1, got a scalar")
        if not is_integer(indices.dtype):
            raise TypeError(f"scatter_add_rows: indices must be integers, got {indices.dtype}")
        if updates.dtype != acc.dtype:
            raise TypeError(f"scatter_add_rows: updates ({updates.dtype}) and acc ({acc.dtype}) "
                            "must have one dtype")
        want = tuple(indices.shape) + tuple(acc.shape[1:])
        if updates.rank != len(want) or any(
                a is not None and b is not None and a != b for a, b in zip(updates.shape, want)):
            raise ShapeError(f"scatter_add_rows: updates must have shape indices.shape + "
                             f"acc.shape[1:] = {want}, got {updates.shape}")
        return TensorType(acc.shape, acc.dtype)

    def compute(self, xp, acc, indices, updates):
        check_ids(xp, indices, acc.shape[0], "scatter_add_rows")
        out = acc if self.in_place else acc.copy()
        return _scatter_add(xp, out, indices, updates)

    def aliases_input(self, node):
        """In place: the output is acc's buffer (memory/simulate.py's view rule)."""
        return 0 if self.in_place else None

    def flops(self, node) -> int:
        upd = node.inputs[2].shape
        n = 1
        for d in upd:
            n *= d or 1
        return n

    def vjp(self, node, g):
        return [g, None, gather(g, node.inputs[1])]


class AccumulatorZeros(Op):
    """zeros shaped like x: a new buffer that one in-place accumulator (a scatter_add_rows with
    `in_place`, carried through a loop) owns. Each node makes its own buffer at run time:
    passes never merge two of them (cse) or fold one into a constant (read-only, shared)."""
    name = "accumulator_zeros"
    foldable = False
    mergeable = False   # (passes/simplify.py's cse)
    differentiable = False

    def infer(self, x):
        return TensorType(x.shape, x.dtype)

    def compute(self, xp, x):
        return xp.zeros(x.shape, x.dtype)


def scatter_add_rows(acc, indices, updates, name=None):
    """acc plus each row of `updates` at its index in `indices` (repeated indices add up);
    updates has shape indices.shape + acc.shape[1:]. A new tensor: acc is not changed."""
    return apply(ScatterAddRows(), [as_value(acc), as_value(indices), as_value(updates)],
                 name=name)
