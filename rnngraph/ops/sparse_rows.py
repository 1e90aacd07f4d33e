"""select_rows: a tensor's rows at integer ids taken from another (a sparse optimizer update).

  select_rows(new, old, ids_1, ..., ids_k)  ->  old, with each row whose index occurs in any of
                                                the ids taken from new instead

TF1 applies the gradient of an embedding lookup (an IndexedSlices) with its sparse kernels
(sparse_apply_momentum, sparse_apply_rms_prop...): only the rows looked up in the batch are
updated, their repeated ids summed once. rnngraph's gradient of a gather is the dense
[vocab, dim] sum (gather_grad), so the optimizers compute the dense update and keep it on the
looked-up rows only: `select_rows(dense update, variable, ids)` (train/optimizers.py). Ids are
checked to lie in [0, rows): an id outside raises InvalidArgumentError, as TF1's kernels do.
"""
from __future__ import annotations

import numpy as np

from ..dtypes import is_integer
from ..errors import ShapeError
from ..ir.types import TensorType
from .base import Op, apply, as_value
from .fill import check_ids


class SelectRows(Op):
    """old with the rows at the ids (every input after the first two) taken from new."""
    name = "select_rows"
    differentiable = False   # (an optimizer's update: nothing differentiates through it)

    def infer(self, new, old, *ids):
        if old.rank == 0:
            raise ShapeError("select_rows: the tensors must have rank >= 1, got a scalar")
        if new.dtype != old.dtype or new.rank != old.rank or any(
                a is not None and b is not None and a != b for a, b in zip(new.shape, old.shape)):
            raise ShapeError(f"select_rows: new {new} and old {old} must have one type")
        if not ids:
            raise TypeError("select_rows: give at least one tensor of ids")
        for t in ids:
            if not is_integer(t.dtype):
                raise TypeError(f"select_rows: ids must be integers, got {t.dtype}")
        return TensorType(old.shape, old.dtype)

    def compute(self, xp, new, old, *ids):
        at = xp.concatenate([xp.reshape(i, (-1,)).astype(np.int64) for i in ids])
        check_ids(xp, at, old.shape[0], "select_rows")
        out = old.copy()
        out[at] = new[at]
        return out


def select_rows(new, old, ids, name=None):
    """`old` with the rows whose index occurs in `ids` (an int tensor of any shape, or a list
    of them) taken from `new` (same type); a new tensor."""
    ids = list(ids) if isinstance(ids, (list, tuple)) else [ids]
    return apply(SelectRows(), [as_value(new), as_value(old)] + [as_value(i) for i in ids],
                 name=name)
