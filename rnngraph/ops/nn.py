"""Neural-network ops: softmax, log_softmax, sparse softmax cross-entropy, one_hot."""
from __future__ import annotations

import numpy as np

from ..dtypes import as_dtype, is_integer
from ..errors import ShapeError
from ..ir.types import TensorType, fmt_shape, merge_dim
from ..ir.value import Value
from .base import Op, apply, as_value, check_rank, require_float
from .elementwise import exp, multiply, subtract
from .reduce import reduce_sum
from .shape import _axis_in, dim, expand_dims


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
    """Per-example -log softmax(logits)[label] for int labels [B] and logits [B, C]."""
    name = "sparse_softmax_cross_entropy"

    def infer(self, labels, logits):
        if not is_integer(labels.dtype):
            raise TypeError(f"labels must be integer class ids, got {labels.dtype}")
        require_float(logits, "logits")
        check_rank(labels, 1, "labels")
        check_rank(logits, 2, "logits")
        batch = merge_dim(labels.shape[0], logits.shape[0],
                          f"labels {fmt_shape(labels.shape)} and logits {fmt_shape(logits.shape)} "
                          "have different batch sizes")
        return TensorType((batch,), logits.dtype)

    def compute(self, xp, labels, logits):
        n_classes = logits.shape[1]
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
            raise ValueError(f"labels must be in [0, {n_classes}), got values in "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        lse = xp.log(xp.sum(xp.exp(shifted), axis=1))
        return lse - shifted[xp.arange(labels.shape[0]), labels]

    def vjp(self, node, g):
        labels, logits = node.inputs
        depth = logits.shape[1] if logits.shape[1] is not None else dim(logits, 1)
        target = one_hot(labels, depth, dtype=logits.dtype)
        return [None, multiply(expand_dims(g, 1), subtract(softmax(logits, 1), target))]


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
    """Per-example loss [B] from int `labels` [B] and unscaled `logits` [B, C] (TF1 names;
    pass both by keyword). Differentiable with respect to logits only."""
    if _sentinel is not None:
        raise ValueError("sparse_softmax_cross_entropy_with_logits takes keyword arguments only: "
                         "labels=..., logits=...")
    if labels is None or logits is None:
        raise ValueError("sparse_softmax_cross_entropy_with_logits needs labels= and logits=")
    return apply(SparseSoftmaxCrossEntropy(), [labels, logits], name=name)


def one_hot(indices, depth, dtype=np.float32, name=None):
    """One-hot encode int `indices` along a new last axis of size `depth` (an int, or a scalar
    int Value known only at run time)."""
    if isinstance(depth, Value):
        return apply(OneHot(None, dtype), [indices, depth], name=name)
    return apply(OneHot(depth, dtype), [as_value(indices)], name=name)
