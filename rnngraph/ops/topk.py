"""tf.nn.top_k and tf.nn.moments.

top_k(x, k) is two ops: `top_k_indices` (the positions of the k largest entries along the last
axis, largest first; equal entries in the order of their positions, as TF1's kernel gives them;
int32, no gradient) and `gather_last` (x's entries at those positions: the values). The gradient
of gather_last scatters the cotangent back to the picked positions (`gather_last_grad`), so the
values' gradient reaches exactly the entries top_k selected. One definition serves NumPy and
CuPy (`compute(xp, ...)`).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import InvalidArgumentError, ShapeError, located
from ..ir.types import TensorType, fmt_shape
from ..ir.value import Value
from .base import Op, apply, as_value
from .elementwise import cast, square, subtract
from .misc import identity, stop_gradient
from .reduce import reduce_mean
from .shape import squeeze


def _rows(xp, x, idx):
    """(row numbers, flat index array) for picking idx's positions in the last axis of x."""
    k = idx.shape[-1] if idx.ndim else 1
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    return xp.arange(rows)[:, None], idx.reshape(rows, k)


class TopKIndices(Op):
    """The positions of the k largest entries along the last axis, largest first; ties: the
    lower position first. int32; no gradient (positions are not differentiable)."""
    name = "top_k_indices"
    differentiable = False

    def __init__(self, k=1):
        self.k = int(k)

    def infer(self, x):
        if x.rank < 1:
            raise ShapeError(f"input must have rank >= 1, got {fmt_shape(x.shape)}")
        if self.k < 0:
            raise ShapeError(f"k must be >= 0, got {self.k}")
        n = x.shape[-1]
        if n is not None and n < self.k:
            raise ShapeError(f"input must have at least k={self.k} columns, got "
                             f"{fmt_shape(x.shape)}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"input must be a real number type, got {x.dtype}")
        return TensorType(x.shape[:-1] + (self.k,), np.int32)

    def compute(self, xp, x):
        if x.shape[-1] < self.k:
            raise InvalidArgumentError(f"top_k: input must have at least k={self.k} columns, "
                                       f"got shape {list(x.shape)}")
        # descending with ties in position order: a stable ascending sort of the reversed
        # last axis, read from its end (no negation: exact for every int and float dtype)
        n = x.shape[-1]
        flipped = x[..., ::-1]
        order = np.argsort(flipped, axis=-1, kind="stable") if xp is np else \
            xp.argsort(flipped, axis=-1)   # (CuPy's argsort is a stable sort)
        picked = order[..., ::-1][..., :self.k]
        return xp.ascontiguousarray((n - 1) - picked).astype(np.int32)

    def flops(self, node):
        x = node.inputs[0]
        n = 1
        for d in x.shape:
            n *= d or 1
        return n * max(1, int(np.log2(max(2, x.shape[-1] or 2))))


class GatherLast(Op):
    """x's entries at the positions `idx` of its last axis (idx: x's leading shape + [k])."""
    name = "gather_last"

    def infer(self, x, idx):
        if idx.rank != x.rank or not np.issubdtype(idx.dtype, np.integer):
            raise ShapeError(f"indices must be an int tensor of x's rank, got {idx} for "
                             f"{fmt_shape(x.shape)}")
        return TensorType(idx.shape, x.dtype)

    def compute(self, xp, x, idx):
        rows, flat = _rows(xp, x, idx)
        return x.reshape(rows.shape[0], x.shape[-1])[rows, flat].reshape(idx.shape)

    def vjp(self, node, g):
        x, idx = node.inputs
        return [apply(GatherLastGrad(), [g, idx, x]), None]


class GatherLastGrad(Op):
    """zeros shaped like x with g added at the positions idx of the last axis."""
    name = "gather_last_grad"
    shape_inputs = (2,)

    def infer(self, g, idx, x):
        return TensorType(x.shape, g.dtype)

    def compute(self, xp, g, idx, x):
        out = xp.zeros(x.shape, dtype=g.dtype)
        rows, flat = _rows(xp, x, idx)
        view = out.reshape(rows.shape[0], x.shape[-1])
        view[rows, flat] = g.reshape(flat.shape)   # (top_k's positions in a row are distinct)
        return out

    def vjp(self, node, gg):
        _, idx, _ = node.inputs
        return [apply(GatherLast(), [gg, idx]), None, None]

    def flops(self, node):
        return 0


@located
def top_k(input, k=1, sorted=True, name=None):  # noqa: A002 (TF's argument names)
    """tf.nn.top_k: (values, indices) of the k largest entries along the last axis, largest
    first; equal values in the order of their positions. `k` is a Python int; `sorted` is
    accepted (the result is always sorted, which TF1 allows for sorted=False too)."""
    if isinstance(k, Value):
        raise TypeError("top_k: k must be an int known when the graph is built, got a tensor")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"top_k: k must be an int, got {k!r}")
    if k < 0:
        raise ValueError(f"top_k: k must be >= 0, got {k}")
    if not isinstance(sorted, (bool, np.bool_)):
        raise TypeError(f"top_k: sorted must be a bool, got {sorted!r}")
    x = as_value(input)
    indices = apply(TopKIndices(k), [x], name=None if name is None else f"{name}_indices")
    values = apply(GatherLast(), [x, indices], name=name)
    return values, indices


@located
def moments(x, axes, shift=None, name=None, keep_dims=None, keepdims=None):
    """tf.nn.moments: (mean, variance) of x over `axes` (a list of ints); keep_dims keeps the
    reduced axes with size 1. As TF1, the variance is the mean of squared differences from the
    mean with the mean's gradient stopped (the two give the same gradient), and float16 input
    is computed in float32 and cast back. `shift` is unused (as in TF1)."""
    del shift
    if keep_dims is not None and keepdims is not None and bool(keep_dims) != bool(keepdims):
        raise ValueError("moments: cannot specify both 'keep_dims' and 'keepdims'")
    keep = bool(keepdims if keepdims is not None else keep_dims)
    if isinstance(axes, Value):
        raise TypeError("moments: axes must be a list of ints known when the graph is built, "
                        "got a tensor")
    if isinstance(axes, numbers.Integral):
        axes = [axes]
    axes = [int(a) for a in axes]
    x = as_value(x)
    y = cast(x, np.float32) if x.dtype == np.float16 else x
    mean = reduce_mean(y, axis=axes, keepdims=True)
    variance = reduce_mean(square(subtract(y, stop_gradient(mean))), axis=axes, keepdims=True)
    if not keep:
        mean, variance = squeeze(mean, axes), squeeze(variance, axes)
    if x.dtype == np.float16:
        mean, variance = cast(mean, np.float16), cast(variance, np.float16)
    if name is not None:
        mean, variance = identity(mean, name=f"{name}/mean"), identity(variance,
                                                                        name=f"{name}/variance")
    return mean, variance
