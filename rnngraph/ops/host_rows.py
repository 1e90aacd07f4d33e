"""A fed sequence a memory plan leaves in host memory (passes/host_sequences.py), or a loop
output written there that a later loop reads (passes/host_outputs.py: time axis 0, no perm).

  host_rows(x, time_axis, perm=None)  -> x with `time_axis` moved to the front: [T, ...], the
                                         way a loop reads a sequence input (dynamic_rnn's
                                         batch-major input transposed to time-major), its rows
                                         (axis 1) reordered by `perm` where given (dynamic_rnn's
                                         sort by sequence length)

Its value is that transpose (and row reordering). What differs is where it lives: the
runtime's kernel (runtime/fed_rows.py) leaves the fed array (or the loop output's host array)
in host memory and hands the loops reading it a handle that copies one row (or one chunk
block) to the device as a loop reads it, so a [B, T, ...] input, per-step target or earlier
loop's output costs the device a row, not T of them.
"""
from __future__ import annotations

from ..errors import ShapeError
from ..ir.types import TensorType, fmt_shape
from .base import Op, apply
from .rows import invert_permutation, permute_rows
from .shape import transpose


def time_major_perm(rank: int, time_axis: int) -> tuple:
    """The transpose permutation that moves `time_axis` to the front, the others in order."""
    return (time_axis,) + tuple(i for i in range(rank) if i != time_axis)


class HostRows(Op):
    """x with its time axis first (rows reordered by a second input, a permutation, where
    given); on the host under a memory plan, read row by row."""
    name = "host_rows"
    foldable = False

    def __init__(self, time_axis: int = 0):
        self.time_axis = int(time_axis)

    def infer(self, x, perm=None):
        if not 0 <= self.time_axis < x.rank:
            raise ShapeError(f"time_axis {self.time_axis} is out of range for "
                             f"{fmt_shape(x.shape)}")
        if perm is not None and (x.rank < 2 or perm.rank != 1 or perm.dtype.kind not in "iu"):
            raise ShapeError(f"perm must be an int vector reordering axis 1 of the time-major "
                             f"value, got {perm} for {fmt_shape(x.shape)}")
        order = time_major_perm(x.rank, self.time_axis)
        return TensorType(tuple(x.shape[p] for p in order), x.dtype)

    def compute(self, xp, x, perm=None):
        y = xp.transpose(x, time_major_perm(x.ndim, self.time_axis))
        return y if perm is None else xp.take(y, perm, axis=1)

    def aliases_input(self, node):
        # a view of the fed array (on the host under a plan: no device bytes); reordered rows
        # are a new array
        return 0 if len(node.inputs) == 1 else None

    def vjp(self, node, g):
        order = time_major_perm(node.inputs[0].type.rank, self.time_axis)
        if len(node.inputs) == 2:
            g = permute_rows(g, invert_permutation(node.inputs[1]), axis=1)
        back = transpose(g, tuple(order.index(i) for i in range(len(order))))
        return [back] + [None] * (len(node.inputs) - 1)

    def flops(self, node):
        return 0


def host_rows(x, time_axis: int, perm=None, name=None):
    """x with `time_axis` first and, given `perm`, its rows (axis 1 then) taken in that order;
    the node the host_sequences pass reads fed sequences through."""
    return apply(HostRows(time_axis), [x] if perm is None else [x, perm], name=name)
