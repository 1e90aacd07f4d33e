"""Reductions (sum, mean, max over axes) and add_n, the n-ary sum autodiff accumulates with."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType, fmt_shape, merge_dim
from .base import Op, apply, as_value, require_float, same_dtype
from .elementwise import broadcast_like, cast, divide, equal, multiply
from .shape import expand_dims


def _axis_attr(axis):
    """The user's axis as an attribute: None, or a tuple of ints (possibly negative)."""
    if axis is None:
        return None
    if isinstance(axis, (int, np.integer)):
        return (int(axis),)
    if isinstance(axis, (list, tuple)) and all(isinstance(a, (int, np.integer)) for a in axis):
        return tuple(int(a) for a in axis)
    raise TypeError(f"axis must be None, an int or a tuple of ints, got {axis!r}")


def reduced_axes(axis, rank: int) -> tuple:
    """Sorted non-negative axes that reducing over `axis` (None = all) touches at rank `rank`."""
    if axis is None:
        return tuple(range(rank))
    out = []
    for a in axis:
        if not -rank <= a < rank:
            raise ShapeError(f"axis {a} is out of range for rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise ShapeError(f"duplicate axis in {axis}")
    return tuple(sorted(out))


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _restore_reduced(g, axes, keepdims):
    """Re-insert the reduced axes of cotangent g as size-1 dims, so it broadcasts against x."""
    if keepdims:
        return g
    lead = 0
    while lead < len(axes) and axes[lead] == lead:  # leading axes: broadcasting restores them
        lead += 1
    for a in axes[lead:]:  # ascending: each insert lands at its final position
        g = expand_dims(g, a - lead)
    return g


class Reduce(Op):
    kernel_name = ""

    def __init__(self, axis=None, keepdims=False):
        self.axis = _axis_attr(axis)
        self.keepdims = bool(keepdims)

    def infer(self, x):
        if x.dtype == np.bool_:
            raise TypeError(f"cannot {self.name} a bool tensor (cast it first)")
        axes = reduced_axes(self.axis, x.rank)
        return TensorType(_reduced_shape(x.shape, axes, self.keepdims), x.dtype)

    def compute(self, xp, x):
        axes = reduced_axes(self.axis, x.ndim)
        out = getattr(xp, self.kernel_name)(x, axis=axes, keepdims=self.keepdims)
        return xp.asarray(out, dtype=x.dtype)  # numpy returns scalars for full reductions

    def flops(self, node):
        n = 1
        for d in node.inputs[0].shape:
            n *= d or 1
        return n


class ReduceSum(Reduce):
    name, kernel_name = "reduce_sum", "sum"

    def vjp(self, node, g):
        x = node.inputs[0]
        axes = reduced_axes(self.axis, x.type.rank)
        return [broadcast_like(_restore_reduced(g, axes, self.keepdims), x)]


class ReduceMean(Reduce):
    name, kernel_name = "reduce_mean", "mean"

    def infer(self, x):
        require_float(x, "reduce_mean input")
        return super().infer(x)

    def vjp(self, node, g):
        x = node.inputs[0]
        axes = reduced_axes(self.axis, x.type.rank)
        spread = broadcast_like(_restore_reduced(g, axes, self.keepdims), x)
        return [divide(spread, reduced_count(x, axes))]


class ReduceMax(Reduce):
    name, kernel_name = "reduce_max", "max"

    def compute(self, xp, x):
        if x.size == 0:   # as in TF: the max over nothing is the dtype's lowest value
            axes = reduced_axes(self.axis, x.ndim)
            low = -xp.inf if x.dtype.kind == "f" else xp.iinfo(x.dtype).min
            return xp.full(_reduced_shape(x.shape, axes, self.keepdims), low, dtype=x.dtype)
        return super().compute(xp, x)

    def vjp(self, node, g):
        x, y = node.inputs[0], node.outputs[0]
        axes = reduced_axes(self.axis, x.type.rank)
        mask = cast(equal(x, _restore_reduced(y, axes, self.keepdims)), x.dtype)
        ties = apply(ReduceSum(axes, keepdims=True), [mask])  # ties share the gradient evenly
        return [multiply(_restore_reduced(g, axes, self.keepdims), divide(mask, ties))]


class ReducedCount(Op):
    """Number of elements of x along `axis` at run time, as a scalar of x's dtype."""
    name, differentiable = "reduced_count", False
    shape_inputs = (0,)   # (reads x's shape only: x may be a fed sequence left on the host)

    def __init__(self, axis):
        self.axis = tuple(axis)

    def infer(self, x):
        return TensorType((), x.dtype)

    def compute(self, xp, x):
        n = 1
        for a in self.axis:
            n *= x.shape[a]
        return xp.asarray(n, dtype=x.dtype)


def reduced_count(x, axes):
    """Element count of x over `axes`: a constant when static, else a runtime ReducedCount node."""
    dims = [x.shape[a] for a in axes]
    if all(d is not None for d in dims):
        return float(np.prod(dims, dtype=np.int64))
    return apply(ReducedCount(axes), [x])


class AddN(Op):
    """Sum of n tensors of one shape (no broadcasting), in one pass."""
    name = "add_n"

    def infer(self, *xs):
        dtype = same_dtype(self.name, *xs)
        ranks = {t.rank for t in xs}
        if len(ranks) > 1:
            raise ShapeError("inputs must have one shape, got "
                             + ", ".join(fmt_shape(t.shape) for t in xs))
        shape = list(xs[0].shape)
        try:
            for t in xs[1:]:
                shape = [merge_dim(a, b, "") for a, b in zip(shape, t.shape)]
        except ShapeError:  # the message lists every input, so it is built only when needed
            raise ShapeError("inputs must have one shape, got "
                             + ", ".join(fmt_shape(u.shape) for u in xs)) from None
        return TensorType(tuple(shape), dtype)

    def compute(self, xp, *xs):
        out = xp.add(xs[0], xs[1])  # a fresh buffer; the inputs are never written
        for x in xs[2:]:
            out += x
        return out

    fusible = True
    reuse_args = 2  # the emitted code reads the rest after writing its output

    def emit(self, res, args, out, ns, key, dtype=None, rank=None):
        first = f"xp.add({args[0]}, {args[1]}, out={out})" if out else f"xp.add({args[0]}, {args[1]})"
        return [f"{res} = {first}"] + [f"{res} += {a}" for a in args[2:]]

    def cexpr(self, args):
        return "(" + " + ".join(args) + ")"

    def vjp(self, node, g):
        return [g] * len(node.inputs)


# --- builders ------------------------------------------------------------------------------------
def reduce_sum(x, axis=None, keepdims=False, name=None):
    """Sum of x over `axis` (None = all axes; an int or tuple of ints); tf.reduce_sum."""
    return apply(ReduceSum(axis, keepdims), [x], name=name)


def reduce_mean(x, axis=None, keepdims=False, name=None):
    """Mean of x over `axis` (None = all axes); the count is taken at run time."""
    return apply(ReduceMean(axis, keepdims), [x], name=name)


def reduce_max(x, axis=None, keepdims=False, name=None):
    """Maximum of x over `axis`; the gradient is split evenly among tied maxima."""
    return apply(ReduceMax(axis, keepdims), [x], name=name)


def add_n(values, name=None):
    """Elementwise sum of a non-empty list of tensors of one shape and dtype (tf.add_n)."""
    values = [as_value(v) for v in values]
    if not values:
        raise ValueError("add_n needs at least one value")
    if len(values) == 1:
        return values[0]
    return apply(AddN(), values, name=name)


class ArgMax(Op):
    """Index of the largest entry along `axis` (int64, like TF); no gradient."""
    name = "argmax"
    differentiable = False

    def __init__(self, axis: int):
        self.axis = int(axis)

    def infer(self, x):
        axes = reduced_axes((self.axis,), x.rank)
        return TensorType(_reduced_shape(x.shape, axes, False), np.int64)

    def compute(self, xp, x):
        return xp.argmax(x, axis=self.axis)


def argmax(x, axis=-1, name=None):
    return apply(ArgMax(axis), [x], name=name)
