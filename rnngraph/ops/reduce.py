"""Reductions (sum, mean, max over axes) and add_n, the n-ary sum autodiff accumulates with."""
from __future__ import annotations

import numpy as np

from ..dtypes import as_dtype
from ..errors import ShapeError, user_location
from ..ir.types import TensorType, fmt_shape, merge_dim
from .base import Op, apply, as_value, require_float, same_dtype
from .elementwise import broadcast_like, cast, divide, equal, exp, multiply, subtract
from .shape import expand_dims


def _axis_attr(axis):
    """The user's axis as an attribute: None, or a tuple of ints (possibly negative)."""
    if axis is None:
        return None
    if isinstance(axis, np.ndarray) and axis.ndim <= 1:
        axis = axis.tolist()
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, (bool, np.bool_)):
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
    """Mean over `axis`. Of an integer tensor, the integer mean as TF1 computes it: the sum in
    the input's dtype divided by the count, truncated toward zero (tf.reduce_mean([1, 0, 1, 0])
    is 0, of [-1, -2] is -1); no gradient then."""
    name, kernel_name = "reduce_mean", "mean"

    def infer(self, x):
        if x.dtype.kind not in "iu":
            require_float(x, "reduce_mean input")
        return super().infer(x)

    def compute(self, xp, x):
        if x.dtype.kind not in "iu":
            return super().compute(xp, x)
        axes = reduced_axes(self.axis, x.ndim)
        total = xp.sum(x, axis=axes, keepdims=self.keepdims, dtype=x.dtype)
        count = 1
        for a in axes:
            count *= x.shape[a]
        count = max(count, 1)   # (an empty reduction: the sum 0, as 0 / n)
        mean = xp.where(total < 0, -((-total) // count), total // count)
        return xp.asarray(mean, dtype=x.dtype)

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
        return _extreme_vjp(node, g, self.axis, self.keepdims)


def _extreme_vjp(node, g, axis, keepdims):
    """reduce_max/min's gradient: to the entries equal to the result, split evenly among ties
    (as TF1's)."""
    x, y = node.inputs[0], node.outputs[0]
    axes = reduced_axes(axis, x.type.rank)
    mask = cast(equal(x, _restore_reduced(y, axes, keepdims)), x.dtype)
    ties = apply(ReduceSum(axes, keepdims=True), [mask])  # ties share the gradient evenly
    return [multiply(_restore_reduced(g, axes, keepdims), divide(mask, ties))]


class ReduceMin(Reduce):
    name, kernel_name = "reduce_min", "min"

    def compute(self, xp, x):
        if x.size == 0:   # as in TF: the min over nothing is the dtype's largest value
            axes = reduced_axes(self.axis, x.ndim)
            high = xp.inf if x.dtype.kind == "f" else xp.iinfo(x.dtype).max
            return xp.full(_reduced_shape(x.shape, axes, self.keepdims), high, dtype=x.dtype)
        return super().compute(xp, x)

    def vjp(self, node, g):
        return _extreme_vjp(node, g, self.axis, self.keepdims)


class ReduceProd(Reduce):
    """Product over `axis`; the gradient is the product of the other entries of each slice,
    taken directly (prefix and suffix products), so zeros in x give exact gradients."""
    name, kernel_name = "reduce_prod", "prod"

    def vjp(self, node, g):
        x = node.inputs[0]
        axes = reduced_axes(self.axis, x.type.rank)
        others = apply(ReduceProdOthers(self.axis), [x])
        return [multiply(_restore_reduced(g, axes, self.keepdims), others)]


class ReduceProdOthers(Op):
    """For each entry of x, the product of the other entries of its slice over `axis` (the
    gradient of reduce_prod), from exclusive prefix and suffix products: no division."""
    name = "reduce_prod_others"

    def __init__(self, axis=None):
        self.axis = _axis_attr(axis)

    def infer(self, x):
        reduced_axes(self.axis, x.rank)
        return x

    def compute(self, xp, x):
        if x.size == 0:   # (no element: nothing to multiply; the reshapes below need one)
            return xp.zeros_like(x)
        axes = reduced_axes(self.axis, x.ndim)
        kept = [a for a in range(x.ndim) if a not in axes]
        moved = xp.transpose(x, kept + list(axes))
        lead = moved.shape[:len(kept)]
        flat = moved.reshape(lead + (-1,))
        ones = xp.ones(lead + (1,), dtype=x.dtype)
        before = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
        after = xp.flip(xp.cumprod(xp.flip(xp.concatenate([flat[..., 1:], ones], axis=-1),
                                           axis=-1), axis=-1), axis=-1)
        out = (before * after).reshape(moved.shape)
        return xp.ascontiguousarray(xp.transpose(out, [int(a) for a in
                                                        np.argsort(kept + list(axes))]))


class ReduceLogSumExp(Reduce):
    """log(sum(exp(x))) over `axis`, computed as max + log(sum(exp(x - max))) so large inputs
    do not overflow (the max taken as 0 where it is infinite, as TF1's); the gradient is the
    softmax of x over `axis`."""
    name = "reduce_logsumexp"

    def infer(self, x):
        require_float(x, "reduce_logsumexp input")
        return super().infer(x)

    def compute(self, xp, x):
        axes = reduced_axes(self.axis, x.ndim)
        if x.size == 0:
            return xp.full(_reduced_shape(x.shape, axes, self.keepdims), -xp.inf, dtype=x.dtype)
        m = xp.max(x, axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
        with np.errstate(divide="ignore"):   # log(0) = -inf where every entry is -inf
            out = xp.log(xp.sum(xp.exp(x - m), axis=axes, keepdims=True)) + m
        if not self.keepdims:
            out = xp.reshape(out, _reduced_shape(x.shape, axes, False))
        return xp.asarray(out, dtype=x.dtype)

    def vjp(self, node, g):
        x, y = node.inputs[0], node.outputs[0]
        axes = reduced_axes(self.axis, x.type.rank)
        soft = exp(subtract(x, _restore_reduced(y, axes, self.keepdims)))
        return [multiply(_restore_reduced(g, axes, self.keepdims), soft)]


class ReduceBool(Reduce):
    differentiable = False

    def infer(self, x):
        if x.dtype != np.bool_:
            raise TypeError(f"{self.name} needs a bool tensor, got {x.dtype}")
        axes = reduced_axes(self.axis, x.rank)
        return TensorType(_reduced_shape(x.shape, axes, self.keepdims), x.dtype)


class ReduceAny(ReduceBool):
    name, kernel_name = "reduce_any", "any"


class ReduceAll(ReduceBool):
    name, kernel_name = "reduce_all", "all"


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
def _reduce_args(what, axis, keepdims, reduction_indices, keep_dims):
    """axis and keepdims from TF1's arguments and their deprecated aliases (reduction_indices,
    keep_dims); both spellings at once is a ValueError naming the user's line, as in TF1."""
    if reduction_indices is not None:
        if axis is not None:
            raise ValueError(f"{what} at {user_location()}: cannot specify both 'axis' and "
                             "'reduction_indices'")
        axis = reduction_indices
    if keep_dims is not None:
        if keepdims is not None:
            raise ValueError(f"{what} at {user_location()}: cannot specify both 'keepdims' and "
                             "'keep_dims'")
        keepdims = keep_dims
    try:
        axis = _axis_attr(axis)
    except TypeError as exc:
        raise TypeError(f"{what} at {user_location()}: {exc}") from None
    return axis, bool(keepdims)


def _reduce(cls, x, axis, keepdims, name, reduction_indices, keep_dims):
    axis, keepdims = _reduce_args(cls.name, axis, keepdims, reduction_indices, keep_dims)
    return apply(cls(axis, keepdims), [x], name=name)


def reduce_sum(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
               keep_dims=None):
    """Sum of x over `axis` (None = all axes; an int or tuple of ints); tf.reduce_sum, with
    TF1's deprecated reduction_indices= and keep_dims=."""
    return _reduce(ReduceSum, input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_mean(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
                keep_dims=None):
    """Mean of x over `axis` (None = all axes); the count is taken at run time."""
    return _reduce(ReduceMean, input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_max(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
               keep_dims=None):
    """Maximum of x over `axis`; the gradient is split evenly among tied maxima."""
    return _reduce(ReduceMax, input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_min(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
               keep_dims=None):
    """Minimum of x over `axis`; the gradient is split evenly among tied minima."""
    return _reduce(ReduceMin, input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_prod(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
                keep_dims=None):
    """Product of x over `axis`; the gradient is exact where x holds zeros."""
    return _reduce(ReduceProd, input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_logsumexp(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
                     keep_dims=None):
    """log(sum(exp(x))) over `axis`, computed stably (large inputs do not overflow)."""
    return _reduce(ReduceLogSumExp, input_tensor, axis, keepdims, name, reduction_indices,
                   keep_dims)


def reduce_any(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
               keep_dims=None):
    """Logical or of a bool tensor over `axis` (no gradient)."""
    return _reduce(ReduceAny, input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_all(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
               keep_dims=None):
    """Logical and of a bool tensor over `axis` (no gradient)."""
    return _reduce(ReduceAll, input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


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
    kernel_name = "argmax"

    def __init__(self, axis: int):
        self.axis = int(axis)

    def infer(self, x):
        if x.dtype == np.bool_:
            raise TypeError(f"cannot {self.name} a bool tensor (cast it first)")
        axes = reduced_axes((self.axis,), x.rank)
        return TensorType(_reduced_shape(x.shape, axes, False), np.int64)

    def compute(self, xp, x):
        return xp.asarray(getattr(xp, self.kernel_name)(x, axis=self.axis), dtype=xp.int64)


class ArgMin(ArgMax):
    """Index of the smallest entry along `axis` (int64, like TF); no gradient."""
    name, kernel_name = "argmin", "argmin"


def _arg(cls, x, axis, name, dimension, output_type):
    what = cls.name
    if dimension is not None:
        if axis is not None:
            raise ValueError(f"{what} at {user_location()}: cannot specify both 'axis' and "
                             "'dimension'")
        axis = dimension
    if axis is None:
        axis = 0   # TF1: tf.argmax(x) reduces axis 0
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"{what} at {user_location()}: axis must be an int, got {axis!r}")
    try:
        out_dtype = as_dtype(output_type)
    except (TypeError, ValueError):
        out_dtype = None
    if out_dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise TypeError(f"{what} at {user_location()}: output_type must be int32 or int64, "
                        f"got {output_type!r}")
    out = apply(cls(axis), [x], name=name)
    return out if out_dtype == np.int64 else cast(out, np.int32)


def argmax(input, axis=None, name=None, dimension=None, output_type=np.int64):  # noqa: A002
    """Index of the largest entry of x along `axis` (tf.argmax: axis None means 0; dimension=
    is TF1's deprecated alias; output_type int64 or int32)."""
    return _arg(ArgMax, input, axis, name, dimension, output_type)


def argmin(input, axis=None, name=None, dimension=None, output_type=np.int64):  # noqa: A002
    """Index of the smallest entry of x along `axis` (tf.argmin; as argmax)."""
    return _arg(ArgMin, input, axis, name, dimension, output_type)
