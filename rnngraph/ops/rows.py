"""Ops that reorder a batch by sequence length, so a loop can run each step on the rows still
active (see ops/loop_rows.py): after sorting by length, descending, the rows active at step t
are a prefix whose size is the count of lengths > t.

  sort_by_length(lengths)       -> perm: the rows ordered longest first (stable for ties)
  invert_permutation(perm)      -> inv: perm[inv[i]] == i, to restore the user's order
  permute_rows(x, perm, axis)   -> x taken at perm along `axis` (gradient: the inverse permute)
  sequence_mask(lengths, T)     -> [T, batch] bool, mask[t, b] = t < lengths[b] (time-major)
"""
from __future__ import annotations

import numpy as np

from ..dtypes import is_integer
from ..errors import InvalidArgumentError, ShapeError
from ..ir.types import TensorType
from .base import Op, apply, as_value


def _lengths_vector(t: TensorType, what: str) -> None:
    if t.rank != 1 or not is_integer(t.dtype):
        raise ShapeError(f"{what} must be an int vector [batch], got {t}")


class SortByLength(Op):
    """Row order by decreasing length; rows of equal length keep their order."""
    name, differentiable = "sort_by_length", False

    def infer(self, lengths):
        _lengths_vector(lengths, "lengths")
        return TensorType(lengths.shape, np.int32)

    def compute(self, xp, lengths):
        # a stable sort of the negated lengths: longest first, ties in input order
        return xp.argsort(-lengths.astype(np.int64), kind="stable").astype(np.int32)


class InvertPermutation(Op):
    name, differentiable = "invert_permutation", False

    def infer(self, perm):
        _lengths_vector(perm, "perm")
        return TensorType(perm.shape, np.int32)

    def compute(self, xp, perm):
        inv = xp.empty_like(perm, dtype=np.int32)
        inv[perm] = xp.arange(perm.shape[0], dtype=np.int32)
        return inv


class PermuteRows(Op):
    """x reordered along `axis` by a permutation; its vjp applies the inverse permutation (a
    gather, where the general gather's vjp would scatter-add)."""
    name = "permute_rows"
    foldable = False

    def __init__(self, axis: int = 0):
        self.axis = int(axis)

    def infer(self, x, perm):
        _lengths_vector(perm, "perm")
        if not 0 <= self.axis < x.rank:
            raise ShapeError(f"axis {self.axis} is out of range for {x}")
        n = x.shape[self.axis] if x.shape[self.axis] is not None else perm.shape[0]
        shape = list(x.shape)
        shape[self.axis] = n
        return TensorType(tuple(shape), x.dtype)

    def check(self, where: str, x, perm) -> None:
        """x has as many rows along `axis` as perm has entries: InvalidArgumentError naming
        `where` (the node) otherwise."""
        if x.shape[self.axis] != perm.shape[0]:
            raise InvalidArgumentError(
                f"{where}: shape {tuple(x.shape)} has {x.shape[self.axis]} rows along axis "
                f"{self.axis} but the batch has {perm.shape[0]} (one per entry of the sequence "
                "lengths); inputs, initial state and sequence_length must agree on the batch "
                "size")

    def compute(self, xp, x, perm):
        return xp.take(x, perm, axis=self.axis)

    def vjp(self, node, g):
        perm = node.inputs[1]
        return [permute_rows(g, invert_permutation(perm), self.axis), None]


class SequenceMask(Op):
    """Time-major validity mask [T, batch]: mask[t, b] = t < lengths[b]."""
    name, differentiable = "sequence_mask", False

    def infer(self, lengths, max_time):
        _lengths_vector(lengths, "lengths")
        if max_time.rank != 0 or not is_integer(max_time.dtype):
            raise ShapeError(f"max_time must be an int scalar, got {max_time}")
        return TensorType((None,) + lengths.shape, np.bool_)

    def compute(self, xp, lengths, max_time):
        return xp.arange(int(max_time), dtype=lengths.dtype)[:, None] < lengths[None, :]


def sort_by_length(lengths, name=None):
    return apply(SortByLength(), [as_value(lengths)], name=name)


def invert_permutation(perm, name=None):
    return apply(InvertPermutation(), [as_value(perm)], name=name)


def permute_rows(x, perm, axis=0, name=None):
    return apply(PermuteRows(axis), [as_value(x), as_value(perm)], name=name)


def sequence_mask(lengths, max_time, name=None):
    return apply(SequenceMask(), [as_value(lengths), as_value(max_time, np.int32)], name=name)
