"""Neural-network ops: softmax, log_softmax, sparse softmax cross-entropy, one_hot."""
from __future__ import annotations

import numpy as np

from ..dtypes import as_dtype, is_integer
from ..errors import ShapeError, user_location
from ..ir.types import TensorType, fmt_shape
from ..ir.value import Value
from .base import Op, apply, as_value, require_float
from .elementwise import add, exp, multiply, subtract
from .reduce import reduce_sum
from .shape import _axis_in, dim, expand_dims, transpose


class _AlongAxis(Op):
    """Shared by softmax and log_softmax: float logits, normalised along `axis`."""

    def __init__(self, axis: int = -1):
        self.axis = int(axis)

    def infer(self, x):
        require_float(x, "logits")
        _axis_in(self.axis, x.rank)
        return x


class Softmax(_AlongAxis):
    name = "softmax"

    def compute(self, xp, x):
        e = xp.exp(x - xp.max(x, axis=self.axis, keepdims=True))  # shifted: exp never overflows
        e /= xp.sum(e, axis=self.axis, keepdims=True)
        return e

    def vjp(self, node, g):
        y = node.outputs[0]
        dot = reduce_sum(multiply(g, y), axis=self.axis, keepdims=True)
        return [multiply(y, subtract(g, dot))]


class LogSoftmax(_AlongAxis):
    name = "log_softmax"

    def compute(self, xp, x):
        shifted = x - xp.max(x, axis=self.axis, keepdims=True)
        shifted -= xp.log(xp.sum(xp.exp(shifted), axis=self.axis, keepdims=True))
        return shifted

    def vjp(self, node, g):
        y = node.outputs[0]
        total = reduce_sum(g, axis=self.axis, keepdims=True)
        return [subtract(g, multiply(exp(y), total))]


class SparseSoftmaxCrossEntropy(Op):
    """Per-example -log softmax(logits)[label] for int labels of any shape S and logits of
    shape S + [C] (C classes on the last axis); the result has shape S (TF1's rule)."""
    name = "sparse_softmax_cross_entropy"

    def infer(self, labels, logits):
        if not is_integer(labels.dtype):
            raise TypeError(f"labels must be integer class ids, got {labels.dtype}")
        require_float(logits, "logits")
        if logits.rank < 1:
            raise ShapeError("logits must have rank >= 1 (classes on the last axis), got shape "
                             f"{fmt_shape(logits.shape)}")
        want = fmt_shape(logits.shape[:-1])
        mismatch = (f"labels {fmt_shape(labels.shape)} and logits {fmt_shape(logits.shape)} "
                    f"do not match: labels' shape must be logits' shape without its last "
                    f"(class) axis, {want}")
        if labels.rank != logits.rank - 1:
            raise ShapeError(f"{mismatch}; labels have rank {labels.rank}, not "
                             f"{logits.rank - 1}")
        shape = []
        for axis, (a, b) in enumerate(zip(labels.shape, logits.shape)):
            if a is not None and b is not None and a != b:
                raise ShapeError(f"{mismatch}; dim {axis} is {a} in labels and {b} in logits")
            shape.append(b if a is None else a)
        return TensorType(tuple(shape), logits.dtype)

    def compute(self, xp, labels, logits):
        if tuple(labels.shape) != tuple(logits.shape[:-1]):   # dims the types left unknown
            raise ShapeError(f"labels {list(labels.shape)} and logits {list(logits.shape)} do "
                             "not match: labels' shape must be logits' shape without its last "
                             "(class) axis")
        n_classes = logits.shape[-1]
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
            raise ValueError(f"labels must be in [0, {n_classes}), got values in "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        if not labels.size:   # nothing to reduce (and a max over zero classes has no value)
            return xp.zeros(labels.shape, logits.dtype)
        # any rank: one row of classes per label, [N, C], then back to the labels' shape
        rows = logits.reshape(labels.size, n_classes)
        shifted = rows - xp.max(rows, axis=1, keepdims=True)
        lse = xp.log(xp.sum(xp.exp(shifted), axis=1))
        picked = shifted[xp.arange(labels.size), labels.reshape(labels.size)]
        return (lse - picked).reshape(labels.shape)

    def vjp(self, node, g):
        labels, logits = node.inputs
        last = logits.type.rank - 1
        depth = logits.shape[last] if logits.shape[last] is not None else dim(logits, last)
        target = one_hot(labels, depth, dtype=logits.dtype)
        return [None, multiply(expand_dims(g, -1), subtract(softmax(logits, -1), target))]


class OneHot(Op):
    """one_hot(indices[, depth]): 1 at index, 0 elsewhere, along a new last axis. Indices out of
    [0, depth) give an all-zero row (as in TF). A runtime depth comes as a second input."""
    name, differentiable = "one_hot", False

    def __init__(self, depth, dtype):
        self.depth = None if depth is None else int(depth)
        self.dtype = as_dtype(dtype).name

    def infer(self, indices, *depth):
        if not is_integer(indices.dtype):
            raise TypeError(f"indices must be integers, got {indices.dtype}")
        if depth and (depth[0].rank != 0 or not is_integer(depth[0].dtype)):
            raise TypeError(f"depth must be an int or a scalar int tensor, got {depth[0]}")
        if self.depth is not None and self.depth < 0:
            raise ShapeError(f"depth must be >= 0, got {self.depth}")
        return TensorType(indices.shape + (self.depth,), self.dtype)

    def compute(self, xp, indices, *depth):
        n = self.depth if self.depth is not None else int(depth[0])
        return (indices[..., None] == xp.arange(n)).astype(self.dtype)


# --- builders ------------------------------------------------------------------------------------
def softmax(logits, axis=-1, name=None):
    """exp(logits) normalised along `axis`, computed stably."""
    return apply(Softmax(axis), [logits], name=name)


def log_softmax(logits, axis=-1, name=None):
    """logits - logsumexp(logits, axis), computed stably."""
    return apply(LogSoftmax(axis), [logits], name=name)


def sparse_softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None,
                                             name=None):
    """Per-example loss from int `labels` and unscaled `logits` (TF1 names; pass both by
    keyword). labels have any shape S (e.g. [B], or [B, T] for a sequence model) and logits
    have shape S + [C], C classes on the last axis; the result has shape S and the logits'
    dtype. Unknown (None) dims are checked at run time. A label outside [0, C) is a ValueError
    when the graph runs. Differentiable with respect to logits only."""
    if _sentinel is not None:
        raise ValueError("sparse_softmax_cross_entropy_with_logits takes keyword arguments only: "
                         "labels=..., logits=...")
    if labels is None or logits is None:
        raise ValueError("sparse_softmax_cross_entropy_with_logits needs labels= and logits=")
    return apply(SparseSoftmaxCrossEntropy(), [labels, logits], name=name)


def one_hot(indices, depth, on_value=None, off_value=None, axis=None, dtype=None, name=None):
    """One-hot encode int `indices` along a new axis (`axis`, default the last) of size `depth`
    (an int, or a scalar int Value known only at run time): on_value (default 1) at the index,
    off_value (default 0) elsewhere (tf.one_hot). dtype defaults to on_value's or off_value's
    dtype when given, else float32."""
    if isinstance(on_value, (type, np.dtype)) and dtype is None:   # one_hot(x, n, rg.float64):
        on_value, dtype = None, on_value                             # rnngraph's older order
    given = [v for v in (on_value, off_value) if v is not None]
    if dtype is None:
        dtypes = {as_value(v).dtype for v in given} if any(
            isinstance(v, Value) for v in given) else {np.asarray(v).dtype for v in given}
        if len(dtypes) > 1:
            raise TypeError(f"one_hot at {user_location()}: on_value and off_value have "
                            f"different dtypes {sorted(str(d) for d in dtypes)}")
        dtype = dtypes.pop() if dtypes else np.float32
        if dtype == np.float64 and not any(isinstance(v, Value) for v in given):
            dtype = np.float32   # (Python floats: float32, as constants are)
        if dtype == np.int64 and not any(isinstance(v, Value) for v in given):
            dtype = np.int32
    if isinstance(depth, Value):
        out = apply(OneHot(None, dtype), [indices, depth], name=name if not given else None)
    else:
        out = apply(OneHot(depth, dtype), [as_value(indices)],
                    name=name if not given else None)
    if given:
        on = as_value(1 if on_value is None else on_value, dtype=dtype)
        off = as_value(0 if off_value is None else off_value, dtype=dtype)
        if on.type.rank or off.type.rank:
            raise ShapeError(f"one_hot at {user_location()}: on_value and off_value must be "
                             "scalars")
        if on.dtype != out.dtype or off.dtype != out.dtype:
            raise TypeError(f"one_hot at {user_location()}: on_value/off_value dtypes "
                            f"{on.dtype}/{off.dtype} differ from dtype {out.dtype}")
        out = add(multiply(out, subtract(on, off)), off, name=name)
    if axis is not None and axis != -1:
        rank = out.type.rank
        if not -rank <= axis < rank:
            raise ShapeError(f"one_hot at {user_location()}: axis {axis} is out of range for a "
                             f"result of rank {rank}")
        axis %= rank
        out = transpose(out, list(range(axis)) + [rank - 1] + list(range(axis, rank - 1)))
    return out
