"""Ops on variable-length batches: validating sequence_length, reversing rows within length,
checking that a streamed per-step value has its loop's steps."""
from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError, ShapeError, user_location
from ..ir.types import TensorType
from .base import Op, apply, as_value


class CheckSequenceLength(Op):
    """Pass `lengths` through after checking 0 <= lengths[i] <= max_time at run time."""
    name = "check_sequence_length"
    foldable = False
    differentiable = False

    def infer(self, lengths, max_time, batch):
        if lengths.rank != 1:
            raise ShapeError(f"sequence_length must be a vector, got {lengths}")
        return lengths


class CheckSteps(Op):
    """x passed through (a view) after checking at run time that `fed` has as many rows
    (axis 0) as `like`: a time-major per-step target that passes/stream_outputs.py made a
    sequence input of a loop must have the loop's steps (`like`: the sequence that gives the
    loop its length), as the whole-tensor op it replaced would have required; the loops alone
    would read its first steps and leave the rest. fed and like are read for their shapes
    only (either may be left on the host)."""
    name = "check_steps"
    foldable = False
    differentiable = False
    shape_inputs = (1, 2)

    def infer(self, x, fed, like):
        if fed.rank < 1 or like.rank < 1:
            raise ShapeError(f"check_steps needs fed and like of rank >= 1, got {fed} and "
                             f"{like}")
        return x

    def compute(self, xp, x, fed, like):
        if fed.shape[0] != like.shape[0]:
            raise InvalidArgumentError(f"a per-step value has {fed.shape[0]} steps, the loop "
                                       f"reading it runs over {like.shape[0]}")
        return x

    def aliases_input(self, node):
        return 0   # (a view: memory plans see no copy)

    def flops(self, node):
        return 0


class ReverseSequence(Op):
    """Reverse the first lengths[b] entries along seq_axis of each batch row b (tf.reverse_sequence)."""
    name = "reverse_sequence"

    def __init__(self, seq_axis: int, batch_axis: int):
        self.seq_axis, self.batch_axis = int(seq_axis), int(batch_axis)

    def infer(self, x, lengths):
        if x.rank < 2 or lengths.rank != 1:
            raise ShapeError(f"needs x of rank >= 2 and a lengths vector, got {x} and {lengths}")
        return x

    def check(self, where: str, x, lengths) -> None:
        """Each length must lie in [0, size of seq_axis], one per batch row, as TF1 checks
        (NumPy would index out of bounds, or past the row): InvalidArgumentError naming
        `where` (the node)."""
        steps, batch = x.shape[self.seq_axis], x.shape[self.batch_axis]
        lens = np.asarray(lengths.get() if hasattr(lengths, "get") else lengths).reshape(-1)
        if lens.shape[0] != batch:
            raise InvalidArgumentError(
                f"{where} failed: seq_lengths has {lens.shape[0]} entries but x has {batch} rows "
                f"along batch_axis {self.batch_axis}")
        bad = np.nonzero((lens < 0) | (lens > steps))[0]
        if bad.size:
            i = int(bad[0])
            raise InvalidArgumentError(
                f"{where} failed: seq_lengths[{i}] = {int(lens[i])} is not in [0, {steps}] "
                f"(the size of seq_axis {self.seq_axis})")

    def compute(self, xp, x, lengths):
        tm = xp.moveaxis(x, (self.seq_axis, self.batch_axis), (0, 1))
        T = tm.shape[0]
        t = xp.arange(T)[:, None]
        lens = xp.asarray(lengths)[None, :]
        src = xp.where(t < lens, lens - 1 - t, t)  # [T, B]: reversed inside the length
        out = tm[src, xp.arange(tm.shape[1])[None, :]]
        return xp.moveaxis(out, (0, 1), (self.seq_axis, self.batch_axis))

    def vjp(self, node, g):
        return [reverse_sequence(g, node.inputs[1], self.seq_axis, self.batch_axis), None]


def check_sequence_length(lengths, max_time, batch, name=None):
    """lengths, after checking at run time: one per batch row, each in [0, max_time]."""
    return apply(CheckSequenceLength(),
                 [lengths, as_value(max_time, np.int32), as_value(batch, np.int32)], name=name)


def _deprecated_alias(what, new, old, new_name, old_name):
    if old is None:
        return new
    if new is not None:
        raise ValueError(f"{what} at {user_location()}: cannot specify both '{new_name}' and "
                         f"'{old_name}'")
    return old


def reverse_sequence(input, seq_lengths, seq_axis=None, batch_axis=None, name=None,  # noqa: A002
                     seq_dim=None, batch_dim=None):
    """`input` with the first seq_lengths[b] entries along `seq_axis` reversed in each row b
    along `batch_axis` (tf.reverse_sequence; seq_dim= and batch_dim= are TF1's deprecated
    names). seq_axis defaults to 1 and batch_axis to 0."""
    seq_axis = _deprecated_alias("reverse_sequence", seq_axis, seq_dim, "seq_axis", "seq_dim")
    batch_axis = _deprecated_alias("reverse_sequence", batch_axis, batch_dim, "batch_axis",
                                   "batch_dim")
    seq_axis = 1 if seq_axis is None else seq_axis
    batch_axis = 0 if batch_axis is None else batch_axis
    return apply(ReverseSequence(seq_axis, batch_axis), [input, as_value(seq_lengths, np.int32)],
                 name=name)
